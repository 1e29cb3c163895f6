"""Tables of your own: CSV and TSV files, and the column mapping and row filter of any record file.

A support team's data is usually a table, one conversation turn per row, with its own column names.
`read_table` reads CSV (``.csv``) or TSV (``.tsv``, ``.tab``), gzipped or not, into one record per row
(the header gives the keys; cells are text; a quoted cell may span lines). `Columns` says which column
holds which field the loaders expect (``prompt``, ``response``, ``chosen``, ``rejected``, ``system``,
``margin``) and which rows to keep, and `Columns.apply` turns one row into the record the loaders parse:

- a table's prompt cell is one user message (``[{"role": "user", "content": cell}]``), not an HH
  transcript, so that the policy's chat template and the reward model's dialogue text both read it as
  the customer's turn; a ``system`` column adds a leading system message;
- an empty ``margin`` cell is no margin, and a number in it is read as one.

Errors name the column, not the field it stands for: :meth:`Columns.column_of` maps a field back. The
row number (1 = the first row after the header) comes with the line the row starts on
(:class:`~rlhfkit.data.errors.DataError`). Imports nothing beyond the standard library.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlhfkit.data.errors import DataError, InvalidRecord
from rlhfkit.data.hh import hh_to_messages

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
FIELDS = ("prompt", "response", "completion", "chosen", "rejected", "system", "margin")
_MAX_CELL = 2**31 - 1  # responses can be long; csv's default limit is 128 KiB a cell


def table_delimiter(path: str) -> str | None:
    """The delimiter of a table file by its suffix (``.gz`` ignored), or None if it is not one."""
    base = path[: -len(".gz")] if path.endswith(".gz") else path
    return next((d for suffix, d in TABLE_SUFFIXES.items() if base.lower().endswith(suffix)), None)


def read_table(path: str, raw: Iterable[bytes], delimiter: str) -> Iterator[tuple[int, dict | DataError]]:
    """``(line, row)`` for each data row of a CSV/TSV byte stream: `line` is where the row starts (the
    header is line 1); a blank line is no row. A row whose number of cells differs from the header's,
    or that the csv module cannot parse, comes back as a DataError (``"unreadable row: ..."``).

    Raises:
        DataError: the text is not UTF-8, the header is missing, or it repeats or leaves out a name.
    """
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
    csv.field_size_limit(_MAX_CELL)
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(path, None, None, "no header row: the first line names the columns")
        names = [name.strip() for name in header]
        dupes = sorted({n for n in names if names.count(n) > 1 or not n})
        if dupes:
            raise DataError(path, 1, None, f"bad header: empty or repeated column names {dupes}")
        line = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield line, DataError(path, line, None, f"unreadable row: {e}")
                line = reader.line_num + 1
                continue
            start, line = line, reader.line_num + 1
            if not row or row == [""]:
                continue
            if len(row) != len(names):
                reason = f"unreadable row: {len(row)} cells, the header names {len(names)} columns"
                yield start, DataError(path, start, None, reason)
                continue
            yield start, dict(zip(names, row, strict=True))
    except UnicodeDecodeError as e:
        raise DataError(path, None, None, f"not UTF-8 text: {e.reason} at byte {e.start}") from e


@dataclass(frozen=True)
class Columns:
    """Which column holds each field (``fields``: field -> column) and which rows to keep (``filter``:
    column -> a value or a list of values; every condition must hold, values compared as text)."""

    fields: Mapping[str, str] = field(default_factory=dict)
    filter: Mapping[str, str | list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"data.fields: unknown field(s) {unknown}; the fields are {list(FIELDS)}")

    def column_of(self, name: str | None) -> str | None:
        """The column that field `name` is read from (`name` itself when it is not mapped)."""
        return self.fields.get(name, name) if name is not None else None

    def check_header(self, path: str, first: dict) -> None:
        """Raise a DataError if a mapped or filtered column is not in the table (its first row)."""
        wanted = [(f"data.fields.{f}", c) for f, c in self.fields.items()]
        wanted += [(f"data.filter.{c}", c) for c in self.filter]
        for key, column in wanted:
            if column not in first:
                have = ", ".join(first)
                reason = f"missing column {column!r}: {key} names it; the header has {have}"
                raise DataError(path, 1, None, reason)

    def keeps(self, row: dict) -> bool:
        """True if `row` passes every filter condition.

        Raises:
            InvalidRecord: a filtered column is missing from the row (a JSON record).
        """
        for column, wanted in self.filter.items():
            if column not in row:
                raise InvalidRecord(column, "missing field (named in data.filter)")
            allowed = [wanted] if isinstance(wanted, str) else wanted
            if str(row[column]) not in allowed:
                return False
        return True

    def apply(self, row: dict, table: bool) -> dict:
        """The record the loaders parse: each mapped field copied from its column; for a table row
        (`table`), the prompt cell as a user message and the margin cell as a number (see the module
        docstring). A non-empty system value becomes the prompt's first message."""
        record: dict[str, Any] = dict(row)
        for name, column in self.fields.items():
            record[name] = row.get(column)
        prompt = record.get("prompt")
        if table and isinstance(prompt, str) and prompt.strip():
            record["prompt"] = [{"role": "user", "content": prompt}]
        if table and isinstance(record.get("margin"), str):
            cell = record["margin"].strip()
            record["margin"] = None if not cell else _number(cell)
        system = record.pop("system", None)
        if isinstance(system, str) and system.strip() and record.get("prompt") is not None:
            prompt = record["prompt"]
            messages = prompt if isinstance(prompt, list) else hh_to_messages(prompt)
            record["prompt"] = [{"role": "system", "content": system}, *messages]
        return record


def _number(cell: str) -> float | str:
    try:
        return float(cell)
    except ValueError:
        return cell  # the loader names the field: "not a finite number"
