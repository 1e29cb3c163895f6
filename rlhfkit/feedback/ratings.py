"""Rating items: checking an annotator's answer against the item's question, and the ratings' statistics.

An item's question (`rlhfkit.data.questions`) is None for a comparison or a rating of its one response,
thumbs or Likert axes. `check_answer` decides what a submission must hold: a comparison takes a label
(`judgements.normalise`) and no rating; a rating item takes a rating and no label, strength or ranking.
A rating's annotation stores the question's type (``"thumbs"`` / ``"likert"``) as its label and the
rating itself in ``annotations.rating``.

Statistics (`rating_stats`), one row per *batch*, the rating items that share one question (one
``annotate load --question ...``, say):

- **thumbs**: the share of ratings that are up, with its 95% Wilson interval (ratings taken as
  independent draws; with overlap > 1 the ratings of one item are not, and the interval is a guide);
  per annotator the same.
- **likert**, per axis: the mean score with a 95% percentile-bootstrap interval that resamples items (a
  cluster bootstrap, `stats.bootstrap_ratio_ci`, so several ratings of one item count as one draw), and
  the distribution (how many ratings gave each score 1..scale); per annotator the mean per axis.
- Where items have two or more ratings, Krippendorff's alpha: nominal for thumbs, interval metric per
  Likert axis (`rlhfkit.stats`); None when undefined.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from rlhfkit.data.questions import (
    DEFAULT_SCALE,
    LIKERT,
    THUMBS,
    InvalidQuestion,
    check_rating,
    describe,
    parse_question,
)
from rlhfkit.feedback.judgements import InvalidJudgement, Judgement, clean_note, normalise
from rlhfkit.feedback.views import AnnotationView, ItemView
from rlhfkit.stats import bootstrap_ratio_ci, krippendorff_alpha, krippendorff_alpha_interval, wilson_interval


def check_answer(
    judgement: Judgement, question: Mapping[str, Any] | None, k: int
) -> tuple[Judgement, dict[str, Any] | None]:
    """The canonical judgement and rating of a submission about an item with `question` and `k` responses.

    Returns:
        ``(judgement, None)`` for a comparison (`judgements.normalise`); for a rating item
        ``(Judgement(question type, None, None, note, rating), rating)``.
    Raises:
        InvalidJudgement: naming the field: a rating sent for a comparison (``'rating'``) or a comparison
            without a label (``'label'``); a label, strength or ranking sent for a rating item; a rating
            that does not fit the question (``'rating'``, ``'rating.<axis>'``: `questions.check_rating`);
            a note over the limit; anything `judgements.normalise` refuses.
    """
    if question is None:
        if judgement.rating is not None:
            raise InvalidJudgement("field 'rating': this item compares its responses; send a label instead")
        if judgement.label is None:
            raise InvalidJudgement("field 'label': missing; this item compares its responses")
        return normalise(judgement, k), None
    for name in ("label", "strength", "ranking"):
        if getattr(judgement, name) is not None:
            raise InvalidJudgement(
                f"field {name!r}: this item asks for a {describe(question)} rating of one response; "
                f"send 'rating', not a {name}"
            )
    try:
        rating = check_rating(judgement.rating, question)
    except InvalidQuestion as err:
        raise InvalidJudgement(str(err)) from None
    return Judgement(question["type"], None, None, clean_note(judgement.note), rating), rating


def question_of(kind: str, axes: str | None = None, scale: int | None = None) -> dict[str, Any] | None:
    """The question of ``annotate load --question KIND [--axes A,B,...] [--scale N]``: None for
    ``compare``, else the canonical thumbs or likert question.

    Raises:
        ValueError: ``--axes`` or ``--scale`` without ``--question likert``, likert without ``--axes``,
            or bad axes or scale (naming the option).
    """
    if kind != LIKERT:
        if axes is not None or scale is not None:
            raise ValueError(f"--axes and --scale go with --question likert, not --question {kind}")
        return None if kind == "compare" else parse_question({"type": kind})
    if not axes:
        raise ValueError("--question likert needs --axes, e.g. --axes overall,accuracy,coverage,coherence")
    names = [name.strip() for name in axes.split(",")]
    try:
        return parse_question(
            {"type": LIKERT, "axes": names, "scale": DEFAULT_SCALE if scale is None else scale}
        )
    except InvalidQuestion as err:
        raise ValueError(f"--{err.field.split('.')[-1]}: {err.reason}") from None


def _batches(items: Iterable[ItemView]) -> dict[str, tuple[dict[str, Any], list[int]]]:
    """``{question as JSON: (question, [item ids])}`` of the rating items, in the order first seen."""
    out: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for item in items:
        if item.question is not None:
            key = json.dumps(item.question, sort_keys=True)
            out.setdefault(key, (item.question, []))[1].append(item.id)
    return out


def _share(up: int, n: int) -> dict[str, Any]:
    return {
        "ratings": n,
        "up": up,
        "down": n - up,
        "share_up": up / n if n else None,
        "ci95": wilson_interval(up, n),
    }


def _thumbs(ratings: list[AnnotationView]) -> dict[str, Any]:
    up = [a for a in ratings if a.rating["thumbs"] == "up"]
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    units: dict[tuple, dict[str, str]] = defaultdict(dict)
    for a in ratings:
        per[a.annotator][0] += a.rating["thumbs"] == "up"
        per[a.annotator][1] += 1
        units[(a.item_id,)][a.annotator] = a.rating["thumbs"]
    return {
        **_share(len(up), len(ratings)),
        "krippendorff_alpha": krippendorff_alpha(units)[0],
        "per_annotator": {who: _share(*per[who]) for who in sorted(per)},
    }


def _axis(ratings: list[AnnotationView], axis: str, scale: int, n_boot: int, seed: int) -> dict[str, Any]:
    scores = [a.rating[axis] for a in ratings]
    counts = Counter(scores)
    by_item: dict[int, dict[str, float]] = defaultdict(dict)
    for a in ratings:
        by_item[a.item_id][a.annotator] = float(a.rating[axis])
    mean = ci = None
    if scores:
        sums = [sum(v.values()) for v in by_item.values()]  # (items,) one cluster per item
        sizes = [len(v) for v in by_item.values()]
        mean, low, high = bootstrap_ratio_ci(sums, sizes, n_boot=n_boot, seed=seed)
        ci = (low, high)
    return {
        "n": len(scores),
        "mean": mean,
        "ci95": ci,
        "distribution": [counts.get(score, 0) for score in range(1, scale + 1)],
        "krippendorff_alpha": krippendorff_alpha_interval(by_item),
    }


def _likert(
    ratings: list[AnnotationView], question: dict[str, Any], n_boot: int, seed: int
) -> dict[str, Any]:
    per: dict[str, list[AnnotationView]] = defaultdict(list)
    for a in ratings:
        per[a.annotator].append(a)
    return {
        "ratings": len(ratings),
        "axes": {axis: _axis(ratings, axis, question["scale"], n_boot, seed) for axis in question["axes"]},
        "per_annotator": {
            who: {
                "ratings": len(mine),
                "means": {axis: sum(a.rating[axis] for a in mine) / len(mine) for axis in question["axes"]},
            }
            for who, mine in sorted(per.items())
        },
    }


def rating_stats(
    items: Iterable[ItemView], annotations: Iterable[AnnotationView], n_boot: int = 2000, seed: int = 0
) -> list[dict[str, Any]]:
    """The statistics of every batch of rating items (see the module docstring); JSON-ready, [] for a
    project without rating items.

    Returns:
        One row per batch: ``{"question", "name" (`questions.describe`), "items", "items_rated",
        "ratings", ...}`` and, for thumbs, ``"up", "down", "share_up", "ci95", "krippendorff_alpha",
        "per_annotator": {name: {"ratings", "up", "down", "share_up", "ci95"}}``; for likert, ``"axes":
        {axis: {"n", "mean", "ci95", "distribution": [count of 1, ..., count of scale],
        "krippendorff_alpha"}}, "per_annotator": {name: {"ratings", "means": {axis: mean}}}``. Means and
        shares are None (intervals too) without a rating.
    """
    ratings_of: dict[int, list[AnnotationView]] = defaultdict(list)
    for a in annotations:
        if a.rating is not None:
            ratings_of[a.item_id].append(a)
    rows = []
    for question, ids in _batches(items).values():
        ratings = [a for item_id in ids for a in ratings_of.get(item_id, [])]
        counts = {
            "question": question,
            "name": describe(question),
            "items": len(ids),
            "items_rated": sum(1 for item_id in ids if ratings_of.get(item_id)),
        }
        if question["type"] == THUMBS:
            rows.append({**counts, **_thumbs(ratings)})
        else:
            rows.append({**counts, **_likert(ratings, question, n_boot, seed)})
    return rows


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(ci) -> str:
    return "-" if not ci else f"{ci[0]:.3f}-{ci[1]:.3f}"


def rating_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The ``annotate stats`` table's lines on rating batches (none for a project without any)."""
    lines = []
    for row in rows:
        lines += [
            "",
            f"ratings, {row['name']}: {row['items']} items, {row['items_rated']} rated, "
            f"{row['ratings']} ratings",
        ]
        if row["question"]["type"] == THUMBS:
            lines.append(
                f"thumbs up {row['up']} of {row['ratings']} ({_num(row['share_up'])}, 95% Wilson CI "
                f"{_ci(row['ci95'])}); Krippendorff's alpha (nominal) {_num(row['krippendorff_alpha'])}"
            )
            lines.append(f"{'annotator':<20}{'ratings':>8}{'up':>6}{'share up':>10}  95% CI")
            for who, r in row["per_annotator"].items():
                lines.append(
                    f"{who[:19]:<20}{r['ratings']:>8}{r['up']:>6}{_num(r['share_up']):>10}  {_ci(r['ci95'])}"
                )
            continue
        scale = row["question"]["scale"]
        header = "".join(f"{score:>5}" for score in range(1, scale + 1))
        lines.append(f"{'axis':<14}{'n':>5}{'mean':>7}  {'95% CI':<13}{header}{'alpha':>8}")
        for axis, a in row["axes"].items():
            counts = "".join(f"{c:>5}" for c in a["distribution"])
            lines.append(
                f"{axis[:13]:<14}{a['n']:>5}{_num(a['mean'], 2):>7}  {_ci(a['ci95']):<13}{counts}"
                f"{_num(a['krippendorff_alpha']):>8}"
            )
        axes = list(row["axes"])
        lines.append(f"{'annotator':<20}{'ratings':>8}  mean " + ", ".join(axes))
        for who, r in row["per_annotator"].items():
            means = ", ".join(_num(r["means"][axis], 2) for axis in axes)
            lines.append(f"{who[:19]:<20}{r['ratings']:>8}  {means}")
    return lines
