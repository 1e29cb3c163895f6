"""Label quality: pairwise agreement, Krippendorff's alpha and position bias, per project and per annotator.

The unit of analysis is one pair of responses of one item, ``(item, i, j)`` with positions ``i < j``;
each annotation gives every pair of its item one nominal value: ``">"``, ``"<"``, ``"tie"`` or
``"both_bad"`` (`judgements.pair_outcomes`). A K-way ranking thus counts as K(K-1)/2 pairs.

- **Pairwise agreement** and **Krippendorff's alpha** (nominal), overall and per annotator, as
  :mod:`rlhfkit.stats` defines them.
- **Position bias**: over every strict pairwise judgement, the share in which the response shown further
  left won (0.5 means none), with a 95% Wilson interval.
- **Agreement with the original labels** of imported items (`rlhfkit.feedback.imports`), per kind:
  ``relabel`` (how often our annotators agree with the data set's labellers) and ``control`` (each
  annotator's accuracy against a known answer). The unit is one (annotation, original label) pair of an
  item: our annotator's outcome for the two responses of the original label either **agrees** (the same
  response preferred) or **disagrees**; a **tie** or **both bad** is neither, since every original
  label is a strict preference: such answers are counted apart (``ties``, ``both_bad``) and left out of
  the rate, ``rate = agree / (agree + disagree)``, with its 95% Wilson interval. An item judged by several
  original labellers counts once per label (the rate is then the pairwise agreement between our labels
  and theirs), and pairs are not independent draws: the interval is a guide, not a test. A known answer
  made from an annotator's own label (`controls.controls_from_annotator`) is never checked against that
  annotator.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from rlhfkit.feedback.evaluation import evaluation_stats
from rlhfkit.feedback.judgements import left_won, pair_outcomes
from rlhfkit.feedback.ratings import rating_stats
from rlhfkit.feedback.views import AnnotationView, ItemView, Original, SkipView
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


def _tally(agree: int = 0, disagree: int = 0, ties: int = 0, both_bad: int = 0) -> dict:
    strict = agree + disagree
    return {
        "judgements": strict + ties + both_bad,
        "agree": agree,
        "disagree": disagree,
        "ties": ties,
        "both_bad": both_bad,
        "rate": agree / strict if strict else None,
        "ci95": wilson_interval(agree, strict),
    }


def original_agreement(items: Iterable[ItemView], annotations: Iterable[AnnotationView]) -> dict:
    """How our labels compare with imported items' original labels (see the module docstring).

    Returns:
        ``{"relabel": row, "control": row}``, each row ``{"items", "items_labelled", "judgements",
        "agree", "disagree", "ties", "both_bad", "rate", "ci95", "per_annotator": {name: same without
        the item counts}}``; ``rate`` and ``ci95`` are None without a strict judgement. ``judgements``
        counts (annotation, original label) pairs; for ``control`` the rate is the accuracy.
    """
    originals: dict[int, tuple[Original, int]] = {
        item.id: (item.original, len(item.responses)) for item in items if item.original is not None
    }
    counts: dict[str, dict[str, Counter]] = {kind: defaultdict(Counter) for kind in ("relabel", "control")}
    labelled: dict[str, set[int]] = {kind: set() for kind in counts}
    for a in annotations:
        if a.item_id not in originals:
            continue
        original, k = originals[a.item_id]
        outcomes = pair_outcomes(a.label, a.ranking, k)
        labelled[original.kind].add(a.item_id)
        for label in original.labels:
            if original.format == "annotator" and label.worker == a.annotator:
                continue  # a known answer made from this annotator's own label says nothing about them
            i, j = sorted((label.chosen, label.rejected))
            outcome = outcomes[(i, j)]
            if outcome in (">", "<"):
                key = "agree" if (outcome == ">") == (label.chosen == i) else "disagree"
            else:
                key = "ties" if outcome == "tie" else "both_bad"
            counts[original.kind][a.annotator][key] += 1
    out = {}
    for kind, per in counts.items():
        total = sum(per.values(), Counter())
        out[kind] = {
            "items": sum(1 for original, _ in originals.values() if original.kind == kind),
            "items_labelled": len(labelled[kind]),
            **_tally(**total),
            "per_annotator": {who: _tally(**per[who]) for who in sorted(per)},
        }
    return out


def project_stats(
    items: list[ItemView], annotations: list[AnnotationView], skips: list[SkipView], overlap: int
) -> dict:
    """Counts, agreement, alpha and position bias of a project, overall and per annotator, and the
    agreement with imported items' original labels (``"original_labels"``: `original_agreement`), and
    the statistics of rating items per batch (``"ratings"``: `ratings.rating_stats`), and the blind
    evaluation of policies against a baseline (``"evaluation"``: `evaluation.evaluation_stats`);
    JSON-ready."""
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
        "original_labels": original_agreement(items, annotations),
        "ratings": rating_stats(items, annotations),
        "evaluation": evaluation_stats(items, annotations),
    }
