"""Blind evaluation of policies: human win rates against the baseline, next to the reward-model judges'.

An **evaluation item** (`rlhfkit annotate evaluate`, :mod:`rlhfkit.eval.human_items`) is a comparison of
two responses to one prompt, the baseline's and a policy's: its meta is ``{"evaluation": {"baseline":
B, "policy": P}}`` and each response's meta names its ``policy`` and holds its judges' ``scores``
(``{judge: float}``). Items are grouped by ``(B, P)``; per group, over its labelled items:

- **Human win rate** of the policy. Each label is one outcome: 1 when the policy's response is
  preferred, 0 when the baseline's is, and **0.5 for a tie or both bad** (neither is better: ties and
  both-bad count half), so ``win_rate = (W + (T + X) / 2) / N`` with W policy wins, T ties, X both bad
  and N labels. ``tie_share = T / N`` and ``both_bad_share = X / N`` are shown beside it. Its 95%
  interval is the cluster bootstrap over items (`rlhfkit.stats.bootstrap_ratio_ci`: an item labelled
  twice is one draw, not two).
- **Agreement among annotators**, on the items with at least two labels, on the nominal outcome
  (policy, baseline, tie, both bad): pairwise agreement and Krippendorff's alpha (`rlhfkit.stats`).
- **Position bias**: over the strict labels, the share that picked the response shown on the left (0.5
  means none; each annotator's left-to-right order is drawn for them and recorded), with a 95% Wilson
  interval.
- Per **judge** (a key of the responses' ``scores``), on exactly the labelled items it scored: its win
  rate of the policy over the baseline (higher score wins, equal scores count half; 95% bootstrap
  interval over items, `rlhfkit.stats.win_rate`), and its **agreement with the annotators**: over the strict
  labels of items the judge scored apart, the share in which the annotator picked the response the judge
  scored higher, with a 95% Wilson interval (labels of one item are not independent draws: a guide).

An item whose meta says ``evaluation`` but whose two responses do not name its baseline and policy is
listed in ``unreadable_items``, never left out silently. Standard library and :mod:`rlhfkit.stats` only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from rlhfkit.feedback.judgements import left_won, pair_outcomes
from rlhfkit.feedback.views import AnnotationView, ItemView
from rlhfkit.stats import (
    bootstrap_ratio_ci,
    krippendorff_alpha,
    pairwise_agreement,
    wilson_interval,
)
from rlhfkit.stats import (
    win_rate as score_win_rate,
)

POLICY, BASELINE, TIE, BOTH_BAD = "policy", "baseline", "tie", "both_bad"
HALF = {POLICY: 1.0, BASELINE: 0.0, TIE: 0.5, BOTH_BAD: 0.5}  # a label's outcome for the win rate


def evaluation_positions(item: ItemView) -> tuple[str, str, int] | None:
    """``(baseline, policy, position of the policy's response)`` of an evaluation item, or None for an
    item that is not one (no ``evaluation`` in its meta).

    Raises:
        ValueError: the meta says ``evaluation`` but the item is not two responses naming its baseline
            and policy (`evaluation_stats` lists such items as unreadable).
    """
    evaluation = (item.meta or {}).get("evaluation")
    if evaluation is None:
        return None
    if not isinstance(evaluation, dict) or len(item.responses) != 2 or getattr(item, "question", None):
        raise ValueError(
            "an evaluation item compares two responses and has meta.evaluation {baseline, policy}"
        )
    baseline, policy = evaluation.get("baseline"), evaluation.get("policy")
    if not isinstance(baseline, str) or not isinstance(policy, str):
        raise ValueError(f"meta.evaluation names its baseline and policy as strings, not {evaluation!r}")
    names = [(r.meta or {}).get("policy") for r in item.responses]
    if names == [baseline, policy]:
        return baseline, policy, 1
    if names == [policy, baseline]:
        return baseline, policy, 0
    raise ValueError(f"responses name {names}, not the item's baseline {baseline!r} and policy {policy!r}")


def label_outcome(annotation: AnnotationView, policy_position: int) -> str:
    """What one label says about an evaluation item: ``"policy"``, ``"baseline"``, ``"tie"`` or
    ``"both_bad"``."""
    outcome = pair_outcomes(annotation.label, annotation.ranking, 2)[(0, 1)]
    if outcome in (">", "<"):
        first_won = outcome == ">"
        return POLICY if first_won == (policy_position == 0) else BASELINE
    return outcome


def _share(successes: int, n: int) -> dict:
    return {
        "n": n,
        "successes": successes,
        "rate": successes / n if n else None,
        "ci95": wilson_interval(successes, n),
    }


def response_scores(response) -> dict[str, float]:
    """A response's judge scores: the finite numbers of its meta's ``scores`` object (anything else, a
    missing object, a string, NaN, is no score: that judge did not score the item)."""
    scores = (response.meta or {}).get("scores")
    if not isinstance(scores, dict):
        return {}
    return {
        str(judge): float(value)
        for judge, value in scores.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _judge_row(judge: str, labelled: list[tuple[ItemView, int, list[str]]], n_boot: int, seed: int) -> dict:
    """One judge's verdict on the labelled items it scored, and its agreement with the annotators' labels."""
    policy_scores, baseline_scores, agree, strict = [], [], 0, 0
    for item, position, outcomes in labelled:
        scores = [response_scores(r).get(judge) for r in item.responses]
        if None in scores:
            continue
        mine, theirs = scores[position], scores[1 - position]
        policy_scores.append(mine)
        baseline_scores.append(theirs)
        if mine == theirs:
            continue  # the judge does not pick either: no agreement to count
        judged = POLICY if mine > theirs else BASELINE
        picks = [o for o in outcomes if o in (POLICY, BASELINE)]
        strict += len(picks)
        agree += sum(o == judged for o in picks)
    row = {"items": len(policy_scores), "win_rate": None, "ci95": None, "wins": 0, "ties": 0, "losses": 0}
    if policy_scores:
        won = score_win_rate(policy_scores, baseline_scores, n_boot, seed)
        row.update(
            win_rate=won.rate, ci95=[won.low, won.high], wins=won.wins, ties=won.ties, losses=won.losses
        )
    row["agreement_with_annotators"] = _share(agree, strict)
    return row


def _comparison(baseline: str, policy: str, entries: list, n_boot: int, seed: int) -> dict:
    """The row of one (baseline, policy) group; `entries` are ``(item, policy position, its labels)``."""
    labelled = [
        (item, position, [label_outcome(a, position) for a in labels])
        for item, position, labels in entries
        if labels
    ]
    counts = {key: sum(o.count(key) for _, _, o in labelled) for key in HALF}
    n = sum(counts.values())
    row = {
        "baseline": baseline,
        "policy": policy,
        "items": len(entries),
        "items_labelled": len(labelled),
        "labels": n,
        "policy_wins": counts[POLICY],
        "baseline_wins": counts[BASELINE],
        "ties": counts[TIE],
        "both_bad": counts[BOTH_BAD],
        "win_rate": None,
        "ci95": None,
        "tie_share": counts[TIE] / n if n else None,
        "both_bad_share": counts[BOTH_BAD] / n if n else None,
    }
    if labelled:
        wins = [sum(HALF[o] for o in outcomes) for _, _, outcomes in labelled]  # (items,)
        sizes = [len(outcomes) for _, _, outcomes in labelled]  # (items,)
        rate, low, high = bootstrap_ratio_ci(wins, sizes, n_boot, seed)
        row.update(win_rate=rate, ci95=[low, high])
    units = {
        item.id: {a.annotator: label_outcome(a, position) for a in labels}
        for item, position, labels in entries
        if len(labels) >= 2
    }
    row["agreement"] = {
        "items": len(units),
        "pairwise": pairwise_agreement(units)[0],
        "alpha": krippendorff_alpha(units)[0],
    }
    left = [left_won(a.ranking, a.display_order)[0] for _, _, labels in entries for a in labels if a.ranking]
    row["position_bias"] = _share(sum(left), len(left))
    judges = sorted({j for item, _, _ in labelled for r in item.responses for j in response_scores(r)})
    row["judges"] = {judge: _judge_row(judge, labelled, n_boot, seed) for judge in judges}
    return row


def evaluation_stats(
    items: Iterable[ItemView], annotations: Iterable[AnnotationView], n_boot: int = 2000, seed: int = 0
) -> dict:
    """Per (baseline, policy) group of evaluation items, the numbers of the module docstring.

    Returns:
        ``{"comparisons": [row, ...], "unreadable_items": [external id, ...]}``, JSON-ready, the rows in
        order of first appearance; a row is ``{"baseline", "policy", "items", "items_labelled", "labels",
        "policy_wins", "baseline_wins", "ties", "both_bad", "win_rate", "ci95": [low, high],
        "tie_share", "both_bad_share", "agreement": {"items", "pairwise", "alpha"}, "position_bias":
        {"n", "successes", "rate", "ci95"}, "judges": {name: {"items", "win_rate", "ci95", "wins",
        "ties", "losses", "agreement_with_annotators": {"n", "successes", "rate", "ci95"}}}}``; rates and
        intervals are None where nothing was labelled (or, for shares, nothing strict).
    """
    by_item: dict[int, list[AnnotationView]] = defaultdict(list)
    for a in annotations:
        by_item[a.item_id].append(a)
    groups: dict[tuple[str, str], list] = {}
    unreadable = []
    for item in items:
        try:
            found = evaluation_positions(item)
        except ValueError:
            unreadable.append(item.external_id)
            continue
        if found is not None:
            baseline, policy, position = found
            groups.setdefault((baseline, policy), []).append((item, position, by_item.get(item.id, [])))
    return {
        "comparisons": [_comparison(b, p, entries, n_boot, seed) for (b, p), entries in groups.items()],
        "unreadable_items": unreadable,
    }


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(rate: float | None, ci: list[float] | tuple[float, float] | None) -> str:
    return "-" if rate is None else f"{rate:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{rate:.3f}"


def evaluation_lines(stats: dict) -> list[str]:
    """The lines `rlhfkit annotate stats` prints for `evaluation_stats` output (none without evaluation
    items)."""
    lines = []
    for row in stats["comparisons"]:
        bias, agreement = row["position_bias"], row["agreement"]
        counts = f"{row['policy_wins']}/{row['ties']}/{row['both_bad']}/{row['baseline_wins']}"
        lines += [
            "",
            f"blind evaluation, {row['policy']} vs {row['baseline']}: {row['items']} items, "
            f"{row['items_labelled']} labelled, {row['labels']} labels",
            f"  {'judge':<12}{'items':>6}  {'policy win rate [95% CI]':<26}{'W/T/X/L':>14}{'ties':>7}"
            f"{'both bad':>9}  agreement with annotators [95% CI]",
            f"  {'annotators':<12}{row['items_labelled']:>6}  {_interval(row['win_rate'], row['ci95']):<26}"
            f"{counts:>14}{_num(row['tie_share']):>7}{_num(row['both_bad_share']):>9}",
        ]
        for judge, j in row["judges"].items():
            agree = j["agreement_with_annotators"]
            verdicts = f"{j['wins']}/{j['ties']}/-/{j['losses']}"
            lines.append(
                f"  {judge[:11]:<12}{j['items']:>6}  {_interval(j['win_rate'], j['ci95']):<26}"
                f"{verdicts:>14}{'':>16}  {_interval(agree['rate'], agree['ci95'])} (n={agree['n']})"
            )
        lines += [
            f"  annotator agreement on {agreement['items']} items with >= 2 labels: pairwise "
            f"{_num(agreement['pairwise'])}, Krippendorff's alpha {_num(agreement['alpha'])}",
            f"  position bias: left picked in {bias['successes']} of {bias['n']} strict labels "
            f"({_interval(bias['rate'], bias['ci95'])}; 0.5 = none)",
        ]
    if lines:
        lines += [
            "  (win rate: ties and both-bad count half; W/T/X/L: policy wins, ties, both bad, baseline wins;",
            "  95% intervals: win rates a bootstrap over the labelled items (a judge's: those it scored);",
            "  agreement with annotators and position bias: Wilson, over strict labels)",
        ]
    if stats["unreadable_items"]:
        shown = ", ".join(stats["unreadable_items"][:5])
        lines.append(
            f"{len(stats['unreadable_items'])} evaluation items left out: their responses do not name "
            f"their baseline and policy ({shown}{', ...' if len(stats['unreadable_items']) > 5 else ''})"
        )
    return lines
