"""The KTO export: unpaired examples ``{"prompt", "completion", "label"}``, label true = desirable.

This is TRL's unpaired preference format, as the KTO loss (Ethayarajh et al. 2024, "KTO: Model Alignment
as Prospect Theoretic Optimization") reads it; ``rlhfkit kto`` reads it too. ``prompt`` is the item's
prompt as stored (a string, or chat messages ``[{"role", "content"}, ...]``), ``completion`` the
response text (a string), ``label`` a JSON boolean (`rlhfkit.data.records.UnpairedExample.to_dict`).

How each kind of item becomes examples, one per (prompt, completion) at most:

- **thumbs** items: the majority of the item's ratings; up is desirable, down undesirable. As many up as
  down is left out (``thumbs_even_left_out``).
- **likert** items: the mean score of the item's ratings on one axis (`axis`, default the question's
  first axis). A mean of at least `desirable` is desirable, at most `undesirable` undesirable; in
  between is left out (``likert_between_left_out``). The defaults are the middle of the scale plus and
  minus one half: on a 1-7 scale one rating of 5 or more is desirable, 3 or less undesirable, 4 is left
  out.
- **comparisons**: the pairs of the trainable export (`export.majority_pairs`, majority vote, ties and
  both-bad left out and counted there): each chosen response is desirable, each rejected one
  undesirable. A response that is chosen in one pair and rejected in another (the middle of a 3-way
  ranking) is left out (``comparison_conflicts_left_out``).

Every example left out is counted in the `KTOReport`, whose summary the CLI prints.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from rlhfkit.data.questions import THUMBS
from rlhfkit.data.records import UnpairedExample
from rlhfkit.feedback.export import ExportReport, majority_pairs
from rlhfkit.feedback.views import AnnotationView, ItemView


@dataclass
class KTOReport:
    """What the KTO export wrote and what it left out (and why)."""

    records: int = 0
    desirable: int = 0
    undesirable: int = 0
    rated_items: int = 0  # rating items with at least one rating
    thumbs_even_left_out: int = 0
    likert_between_left_out: int = 0
    from_comparisons: int = 0
    comparison_conflicts_left_out: int = 0
    comparisons: ExportReport = field(default_factory=ExportReport)

    def summary(self) -> str:
        """Two lines for the terminal: the KTO counts, then the comparisons' own export report."""
        counts = {k: v for k, v in asdict(self).items() if k != "comparisons"}
        head = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
        return f"{head}\ncomparisons: {self.comparisons.summary()}"


def _thresholds(
    question: dict[str, Any], desirable: float | None, undesirable: float | None
) -> tuple[float, float]:
    middle = (1 + question["scale"]) / 2
    high = middle + 0.5 if desirable is None else desirable
    low = middle - 0.5 if undesirable is None else undesirable
    if not low < high:
        raise ValueError(f"the undesirable threshold ({low}) must be below the desirable one ({high})")
    return high, low


def _axis(question: dict[str, Any], axis: str | None) -> str:
    if axis is None:
        return question["axes"][0]
    if axis not in question["axes"]:
        raise ValueError(
            f"--kto-axis {axis!r}: likert items asking for {', '.join(question['axes'])} have no such axis"
        )
    return axis


def kto_records(
    items: Iterable[ItemView],
    annotations: Iterable[AnnotationView],
    axis: str | None = None,
    desirable: float | None = None,
    undesirable: float | None = None,
) -> tuple[list[dict[str, Any]], KTOReport]:
    """KTO examples from a project's labels (see the module docstring): rating items first, in item
    order, then the comparisons' examples in the order of their pairs.

    Args:
        axis: the Likert axis whose score decides (None: each question's first axis).
        desirable / undesirable: a Likert mean at least / at most this is desirable / undesirable (None:
            the middle of the item's scale plus / minus 0.5).
    Raises:
        ValueError: `axis` is not an axis of some Likert item's question, or `undesirable` is not below
            `desirable`.
    """
    items, annotations = list(items), list(annotations)
    by_item: dict[int, list[AnnotationView]] = defaultdict(list)
    for a in annotations:
        by_item[a.item_id].append(a)
    report, records = KTOReport(), []

    def add(prompt: Any, completion: str, label: bool) -> None:
        records.append(UnpairedExample(prompt, completion, label).to_dict())

    for item in items:
        question, ratings = item.question, [a.rating for a in by_item.get(item.id, []) if a.rating]
        if question is None or not ratings:
            continue
        report.rated_items += 1
        text = item.responses[0].text
        if question["type"] == THUMBS:
            votes = Counter(r["thumbs"] for r in ratings)
            if votes["up"] == votes["down"]:
                report.thumbs_even_left_out += 1
            else:
                add(item.prompt, text, votes["up"] > votes["down"])
            continue
        name, (high, low) = _axis(question, axis), _thresholds(question, desirable, undesirable)
        mean = sum(r[name] for r in ratings) / len(ratings)
        if low < mean < high:
            report.likert_between_left_out += 1
        else:
            add(item.prompt, text, mean >= high)

    comparisons = [item for item in items if item.question is None]
    pairs, report.comparisons = majority_pairs(comparisons, annotations)
    labels: dict[tuple[str, str], set[bool]] = defaultdict(set)
    first: dict[tuple[str, str], Any] = {}
    for pair in pairs:
        for completion, label in ((pair.chosen, True), (pair.rejected, False)):
            key = (json.dumps(pair.prompt, sort_keys=True), completion)
            labels[key].add(label)
            first.setdefault(key, pair.prompt)
    for key, seen in labels.items():
        if len(seen) > 1:
            report.comparison_conflicts_left_out += 1
        else:
            add(first[key], key[1], seen.pop())
            report.from_comparisons += 1

    report.records = len(records)
    report.desirable = sum(r["label"] for r in records)
    report.undesirable = report.records - report.desirable
    return records, report
