"""Label quality: pairwise agreement, Krippendorff's alpha and position bias, per project and per annotator.

The unit of analysis is one pair of responses of one item, ``(item, i, j)`` with positions ``i < j``;
each annotation gives every pair of its item one nominal value: ``">"``, ``"<"``, ``"tie"`` or
``"both_bad"`` (`judgements.pair_outcomes`). A K-way ranking thus counts as K(K-1)/2 pairs.

- **Pairwise agreement**: over every unit and every two annotators who both labelled it, the share that
  gave the same value. Per annotator: over the pairs that include them.
- **Krippendorff's alpha** (nominal; Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"),
  over units with at least two values::

      alpha = 1 - D_o / D_e
      D_o = 1/n * sum_u 1/(m_u - 1) * sum_{a != b in u} [v_ua != v_ub]     (observed disagreement)
      D_e = 1/(n (n - 1)) * sum_{c != k} n_c n_k                          (expected by chance)

  with m_u the values in unit u, n = sum_u m_u, n_c the number of values equal to c. D_o is the mean,
  over every value, of the share of the other values in its unit that differ from it. Per annotator,
  D_o is that mean over the annotator's own values only, and D_e is the project's: alpha_a < alpha
  says the annotator disagrees with the others more than the average annotator does. Alpha is None
  when it is undefined (no unit with two values, or every value the same).
- **Position bias**: over every strict pairwise judgement, the share in which the response shown further
  left won (0.5 means none), with a 95% Wilson interval.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from rlhfkit.feedback.judgements import left_won, pair_outcomes
from rlhfkit.feedback.views import AnnotationView, ItemView, SkipView

Units = Mapping[tuple, Mapping[str, str]]  # unit -> {annotator: value}


def units_of(annotations: Iterable[AnnotationView], k_of: Mapping[int, int]) -> dict[tuple, dict[str, str]]:
    """``{(item_id, i, j): {annotator: value}}`` from annotations; `k_of` maps item id -> K."""
    units: dict[tuple, dict[str, str]] = defaultdict(dict)
    for a in annotations:
        for (i, j), value in pair_outcomes(a.label, a.ranking, k_of[a.item_id]).items():
            units[(a.item_id, i, j)][a.annotator] = value
    return dict(units)


def pairwise_agreement(units: Units) -> tuple[float | None, dict[str, float | None]]:
    """``(overall, {annotator: theirs})``: shares of agreeing annotator pairs (None where there are none)."""
    agree = total = 0
    mine: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for values in units.values():
        people = sorted(values)
        for x in range(len(people)):
            for y in range(x + 1, len(people)):
                same = int(values[people[x]] == values[people[y]])
                agree, total = agree + same, total + 1
                for who in (people[x], people[y]):
                    mine[who][0] += same
                    mine[who][1] += 1
    per = {who: a / t for who, (a, t) in mine.items()}
    return (agree / total if total else None), per


def krippendorff_alpha(units: Units) -> tuple[float | None, dict[str, float | None]]:
    """``(alpha, {annotator: alpha_a})``, nominal, as defined in the module docstring."""
    counts: Counter[str] = Counter()
    disagreement: dict[str, list[float]] = defaultdict(list)  # annotator -> D for each of their values
    for values in units.values():
        m = len(values)
        if m < 2:
            continue
        counts.update(values.values())
        for who, v in values.items():
            others = sum(1 for w, u in values.items() if w != who and u != v)
            disagreement[who].append(others / (m - 1))
    n = sum(counts.values())
    chance = sum(counts[c] * counts[k] for c in counts for k in counts if c != k)
    if n < 2 or chance == 0:
        return None, {who: None for who in disagreement}
    expected = chance / (n * (n - 1))
    observed = sum(sum(d) for d in disagreement.values()) / n
    per = {who: 1 - (sum(d) / len(d)) / expected for who, d in disagreement.items()}
    return 1 - observed / expected, per


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% for z = 1.96); None when n = 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


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
