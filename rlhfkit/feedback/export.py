"""Exports: trainable preference pairs (TRL ``{prompt, chosen, rejected, margin}`` JSONL) and raw labels.

Trainable pairs (`majority_pairs`). Each annotation is read as one outcome per pair of responses
(`judgements.pair_outcomes`: a K-way ranking expands into K(K-1)/2 pairs). Per pair, the outcome with the
most votes among the item's annotators wins; a tie in the vote count drops the pair (``no_majority``).
A winning ``">"``/``"<"`` becomes a `PreferencePair` whose margin is the mean Bradley-Terry margin of the
strengths of the votes for it (`judgements.MARGINS`). A winning ``"tie"`` or ``"both_bad"`` is left out
unless asked for; included, it becomes the pair in both orders with margin 0, which pulls the two
rewards together under the Bradley-Terry loss.

The file is read unchanged by `rlhfkit.data.load_preferences`, so by ``rlhfkit reward`` and ``rlhfkit dpo``.
Files are written atomically (temporary file, fsync, rename): a crash leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlhfkit.data.records import PreferencePair
from rlhfkit.feedback.judgements import MARGINS, pair_outcomes
from rlhfkit.feedback.views import AnnotationView, ItemView, SkipView

FORMATS = ("trl", "raw", "kto")  # kto: `rlhfkit.feedback.export_kto`


@dataclass
class ExportReport:
    """What an export wrote and what it left out (and why)."""

    items: int = 0  # items with at least one annotation
    annotations: int = 0
    pairs: int = 0  # records written
    ties_left_out: int = 0
    both_bad_left_out: int = 0
    no_majority: int = 0
    too_few_votes: int = 0
    identical_left_out: int = 0  # a pair of responses with the same text: no preference to learn
    rating_items_left_out: int = 0  # rated items (thumbs, Likert): no pair; `--format kto` writes them

    def summary(self) -> str:
        """One line for the terminal."""
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in asdict(self).items())


def majority_pairs(
    items: Iterable[ItemView],
    annotations: Iterable[AnnotationView],
    include_ties: bool = False,
    include_both_bad: bool = False,
    min_votes: int = 1,
) -> tuple[list[PreferencePair], ExportReport]:
    """Preference pairs decided by majority vote (see the module docstring), in item order.

    A response pair with fewer than `min_votes` votes is left out (``too_few_votes``), and so is a pair
    whose two responses have the same text (``identical_left_out``: chosen == rejected teaches nothing
    and only adds noise to the Bradley-Terry loss).
    """
    by_item: dict[int, list[AnnotationView]] = defaultdict(list)
    for a in annotations:
        by_item[a.item_id].append(a)
    report, pairs = ExportReport(), []
    for item in items:
        votes_of = by_item.get(item.id)
        if not votes_of:
            continue
        if item.question is not None:
            report.rating_items_left_out += 1
            continue
        report.items += 1
        report.annotations += len(votes_of)
        k = len(item.responses)
        votes: dict[tuple[int, int], Counter] = defaultdict(Counter)
        margins: dict[tuple[tuple[int, int], str], list[float]] = defaultdict(list)
        for a in votes_of:
            for pair, outcome in pair_outcomes(a.label, a.ranking, k).items():
                votes[pair][outcome] += 1
                if a.strength is not None:
                    margins[(pair, outcome)].append(MARGINS[a.strength])
        for (i, j), counter in sorted(votes.items()):
            ranked = counter.most_common()
            if sum(counter.values()) < min_votes:
                report.too_few_votes += 1
                continue
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                report.no_majority += 1
                continue
            outcome = ranked[0][0]
            texts = (item.responses[i].text, item.responses[j].text)
            if texts[0] == texts[1]:
                report.identical_left_out += 1
                continue
            if outcome in (">", "<"):
                chosen, rejected = texts if outcome == ">" else texts[::-1]
                m = margins[((i, j), outcome)]
                pairs.append(PreferencePair(item.prompt, chosen, rejected, sum(m) / len(m) if m else None))
            elif (outcome == "tie" and include_ties) or (outcome == "both_bad" and include_both_bad):
                pairs.append(PreferencePair(item.prompt, texts[0], texts[1], 0.0))
                pairs.append(PreferencePair(item.prompt, texts[1], texts[0], 0.0))
            elif outcome == "tie":
                report.ties_left_out += 1
            else:
                report.both_bad_left_out += 1
    report.pairs = len(pairs)
    return pairs, report


def raw_records(
    items: Iterable[ItemView], annotations: Iterable[AnnotationView], skips: Iterable[SkipView] = ()
) -> Iterator[dict[str, Any]]:
    """Every annotation, then every skip (``"label": "skipped"``), as JSON-ready dicts.

    Fields: ``item_id`` (the item's id in the file it came from), ``annotator``, ``created_at`` (ISO UTC),
    ``label``, ``strength``, ``note``, ``ranking`` (response positions, best first, or null),
    ``display_order`` (response positions as shown, left to right), ``duration_ms``, ``prompt``,
    ``responses`` (texts, by position) and ``response_meta`` (model and sampling settings, by position);
    for a rating item its ``question`` and each annotation's ``rating``; for an item that has them,
    ``document`` and ``original`` (an imported item's kind and original labels,
    `views.Original.to_json`, positions as in ``responses``).
    """
    by_id = {item.id: item for item in items}

    def base(item_id: int) -> dict[str, Any]:
        item = by_id[item_id]
        record = {
            "item_id": item.external_id,
            "prompt": item.prompt,
            "responses": [r.text for r in item.responses],
            "response_meta": [r.meta for r in item.responses],
        }
        if item.question is not None:
            record["question"] = item.question
        if item.document is not None:
            record["document"] = item.document
        if item.original is not None:
            record["original"] = item.original.to_json()
        return record

    for a in annotations:
        rated = {"rating": a.rating} if a.rating is not None else {}
        yield {
            **base(a.item_id),
            "annotator": a.annotator,
            "created_at": a.created_at.isoformat() + "Z",
            "label": a.label,
            "strength": a.strength,
            "note": a.note,
            "ranking": a.ranking,
            "display_order": a.display_order,
            "duration_ms": a.duration_ms,
            **rated,
        }
    for skip in skips:
        yield {
            **base(skip.item_id),
            "annotator": skip.annotator,
            "created_at": skip.skipped_at.isoformat() + "Z" if skip.skipped_at else None,
            "label": "skipped",
            "strength": None,
            "note": "",
            "ranking": None,
            "display_order": skip.display_order,
            "duration_ms": None,
        }


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write `records` as JSON Lines to `path` atomically; returns how many were written.

    Raises:
        OSError: the folder cannot be created or written (nothing is left at `path` then).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
