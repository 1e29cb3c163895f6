"""What the feedback store hands out: its errors and plain, frozen records (no live database objects)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rlhfkit.data.items import ItemRecord, ResponseRecord


class FeedbackError(Exception):
    """Base class of the store's errors."""


class NotFound(FeedbackError, LookupError):
    """No such project, annotator or item (or the item is not in this annotator's queue)."""


class Conflict(FeedbackError):
    """The request contradicts what is stored: a name already taken, a different answer resubmitted, ..."""


class Busy(FeedbackError):
    """Too many concurrent claims for the same items; try again."""


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: ``role`` is ``"admin"`` or ``"annotator"``."""

    role: str
    id: int
    name: str
    project_id: int | None = None


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    name: str
    guidelines: str
    overlap: int
    created_at: datetime
    control_rate: float = 0.0  # the share of each annotator's queue that is control items
    min_control_accuracy: float | None = None  # annotators below it are flagged (None: nobody)


@dataclass(frozen=True)
class Task:
    """An item as one annotator sees it: responses in that annotator's display order (left to right),
    and the item's document (``{"text", "title"?, "source"?}``) or None. Never its original labels."""

    item_id: int
    external_id: str
    prompt: Any
    responses: list[str]
    display_order: list[int]
    document: dict[str, str] | None = None
    question: dict[str, Any] | None = None  # None: compare the responses; else a rating (data/questions.py)


@dataclass(frozen=True)
class Progress:
    """One annotator's counts: labelled, skipped, held now, still open to them, items in the project."""

    done: int
    skipped: int
    pending: int
    available: int
    total_items: int


@dataclass(frozen=True)
class OriginalLabel:
    """One label an imported comparison came with: the response at position `chosen` was preferred to
    the one at `rejected`, by `worker` (the original labeller's id, if known) with `confidence` (the
    summarize-from-feedback 1-9 scale, if given)."""

    chosen: int
    rejected: int
    worker: str | None = None
    confidence: int | None = None


@dataclass(frozen=True)
class Original:
    """An imported item's original labels (several when the same pair was judged in several rows).

    `kind` is ``"relabel"`` (to be labelled again; the stats give our annotators' agreement with these
    labels) or ``"control"`` (a known answer; the stats give each annotator's accuracy against it);
    `format` is the file format it came from (``"tldr"`` or ``"trl"``).
    """

    kind: str
    format: str
    labels: tuple[OriginalLabel, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"kind", "format", "labels": [{"chosen", "rejected", "worker", "confidence"}, ...]}``."""
        return {"kind": self.kind, "format": self.format, "labels": [vars(label) for label in self.labels]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Original:
        """The inverse of `to_json`."""
        return cls(data["kind"], data["format"], tuple(OriginalLabel(**label) for label in data["labels"]))


@dataclass(frozen=True)
class ImportedItem:
    """An item read from a labelled data set, with its original labels (`rlhfkit.feedback.imports`)."""

    item: ItemRecord
    original: Original


@dataclass(frozen=True)
class ItemView:
    id: int
    external_id: str
    prompt: Any
    responses: list[ResponseRecord]
    meta: dict | None
    document: dict[str, str] | None = None
    original: Original | None = None
    question: dict[str, Any] | None = None  # None: a comparison; else a rating (data/questions.py)


@dataclass(frozen=True)
class AnnotationView:
    """A stored annotation; `ranking` and `display_order` are response positions (see judgements.py)."""

    id: int
    item_id: int
    annotator: str
    label: str
    ranking: list[int] | None
    display_order: list[int]
    strength: str | None
    note: str
    created_at: datetime
    duration_ms: int | None
    rating: dict[str, Any] | None = None  # a rating item's answer (data/questions.py); None: a comparison


@dataclass(frozen=True)
class SkipView:
    item_id: int
    annotator: str
    display_order: list[int]
    skipped_at: datetime | None
