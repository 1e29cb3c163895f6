"""Label quality: pairwise agreement, Krippendorff's alpha and position bias, per project and per annotator.

The unit of analysis is one pair of responses of one item, ``(item, i, j)`` with positions ``i < j``;
each annotation gives every pair of its item one nominal value: ``">"``, ``"<"``, ``"tie"`` or
``"both_bad"`` (`judgements.pair_outcomes`). A K-way ranking thus counts as K(K-1)/2 pairs.

- **Pairwise agreement** and **Krippendorff's alpha** (nominal), overall and per annotator, as
  :mod:`rlhfkit.stats` defines them.
- **Position bias**: over every strict pairwise judgement, the share in which the response shown further
  left won (0.5 means none), with a 95% Wilson interval.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from rlhfkit.feedback.judgements import left_won, pair_outcomes
from rlhfkit.feedback.views import AnnotationView, ItemView, SkipView
from rlhfkit.stats import krippendorff_alpha, pairwise_agreement, wilson_interval


def units_of(annotations: Iterable[AnnotationView], k_of: Mapping[int, int]) -> dict[tuple, dict[str, str]]:
    """``{(item_id, i, j): {annotator: value}}`` from annotations; `k_of` maps item id -> K."""
    units: dict[tuple, dict[str, str]] = defaultdict(dict)
    for a in annotations:
        for (i, j), value in pair_outcomes(a.label, a.ranking, k_of[a.item_id]).items():
            units[(a.item_id, i, j)][a.annotator] = value
    return dict(units)


def position_bias(annotations: Iterable[AnnotationView]) -> dict:
    """How often the left response won: ``{"left_wins", "judgements", "rate", "ci95", "per_annotator"}``."""

    def summary(wins: int, n: int) -> dict:
        return {
            "left_wins": wins,
            "judgements": n,
            "rate": wins / n if n else None,
            "ci95": wilson_interval(wins, n),
        }

    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in annotations:
        if a.ranking is None:
            continue
        outcomes = left_won(a.ranking, a.display_order)
        tally[a.annotator][0] += sum(outcomes)
        tally[a.annotator][1] += len(outcomes)
    wins, n = sum(w for w, _ in tally.values()), sum(t for _, t in tally.values())
    out = summary(wins, n)
    out["per_annotator"] = {who: summary(w, t) for who, (w, t) in sorted(tally.items())}
    return out


def project_stats(
    items: list[ItemView], annotations: list[AnnotationView], skips: list[SkipView], overlap: int
) -> dict:
    """Counts, agreement, alpha and position bias of a project, overall and per annotator (JSON-ready)."""
    k_of = {item.id: len(item.responses) for item in items}
    units = units_of(annotations, k_of)
    agreement, agreement_per = pairwise_agreement(units)
    alpha, alpha_per = krippendorff_alpha(units)
    bias = position_bias(annotations)
    per_item = Counter(a.item_id for a in annotations)
    people: dict[str, dict] = defaultdict(lambda: {"labels": 0, "skips": 0, "by_label": Counter()})
    for a in annotations:
        people[a.annotator]["labels"] += 1
        people[a.annotator]["by_label"][a.label] += 1
    for skip in skips:
        people[skip.annotator]["skips"] += 1
    for who, row in people.items():
        row["by_label"] = dict(row["by_label"])
        row["agreement"] = agreement_per.get(who)
        row["alpha"] = alpha_per.get(who)
        row["left_win_rate"] = bias["per_annotator"].get(who, {}).get("rate")
    return {
        "items": len(items),
        "items_labelled": len(per_item),
        "items_complete": sum(1 for n in per_item.values() if n >= overlap),
        "overlap": overlap,
        "annotations": len(annotations),
        "skips": len(skips),
        "by_label": dict(Counter(a.label for a in annotations)),
        "pairwise_agreement": agreement,
        "krippendorff_alpha": alpha,
        "position_bias": {k: v for k, v in bias.items() if k != "per_annotator"},
        "annotators": {who: people[who] for who in sorted(people)},
    }
