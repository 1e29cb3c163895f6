"""Errors and reports for data loading.

Every problem found in a data file is a `DataError` that names where it is (path, line, field) and why.
Loaders either raise the first one, or (with ``skip_invalid=True``) record each as a `SkippedRecord` in
the `LoadReport`, so that nothing is ever dropped without being counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def reason_kind(reason: str) -> str:
    """The general kind of a reason: the text before its first ':' (``"malformed JSON: ..."`` -> ...).

    Reasons are written as ``"KIND"`` or ``"KIND: details"`` so that skips can be grouped by kind.
    """
    return reason.split(":", 1)[0].strip()


class DataError(ValueError):
    """A record (or a whole file) that cannot be used.

    Attributes:
        path: the file (or hub id) the record came from.
        line: 1-based line number in a JSONL file (row index + 1 elsewhere); None for file-level errors.
        field: the offending field of the record (``'chosen'``, ``'prompt'``, ...); None when not one field.
        reason: what is wrong, e.g. ``"empty response"``.
        row: in a CSV/TSV table, the 1-based data row (the header is not a row; a row can span lines),
            and `field` is then the column; None elsewhere.

    ``str(err)`` reads like ``data/x.jsonl:12: field 'chosen': empty response``, or for a table
    ``data/x.csv:13 (row 12): column 'instruction': empty prompt``, leaving out the parts that are None.
    """

    def __init__(
        self, path: str, line: int | None, field: str | None, reason: str, row: int | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        self.row = row
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        where += "" if self.row is None else f" (row {self.row})"
        kind = "field" if self.row is None else "column"
        what = self.reason if self.field is None else f"{kind} {self.field!r}: {self.reason}"
        return f"{where}: {what}"

    def __reduce__(self) -> tuple[Any, ...]:
        # keeps the error picklable (worker processes) despite the 5-argument constructor
        return (type(self), (self.path, self.line, self.field, self.reason, self.row))


class InvalidRecord(ValueError):
    """A bad record, before the loader knows where it is: `field` names the field at fault (None: the
    record as a whole); :func:`rlhfkit.data.reading.load_report` turns it into a DataError with the path
    and line."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class SkippedRecord:
    """A record left out by a loader running with ``skip_invalid=True``."""

    line: int
    field: str | None
    reason: str


@dataclass
class LoadReport:
    """What a loader read: the valid `records`, the `skipped` ones, and how many rows a ``data.filter``
    left out (`filtered`), with the file they came from."""

    path: str
    records: list = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    filtered: int = 0

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index):
        return self.records[index]

    def summary(self) -> str:
        """One line such as ``"data.jsonl: 1995 records, 5 skipped (5 × HH prompts differ)"``.

        Skips are grouped by the kind of their reason, most frequent first.
        """
        text = f"{self.path}: {len(self.records)} records, {len(self.skipped)} skipped"
        text += f", {self.filtered} left out by data.filter" if self.filtered else ""
        if not self.skipped:
            return text
        kinds = Counter(reason_kind(s.reason) for s in self.skipped)
        return text + " (" + ", ".join(f"{n} × {kind}" for kind, n in kinds.most_common()) + ")"
