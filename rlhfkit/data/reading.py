"""Reading raw records (JSON objects) from JSONL, JSON, Parquet, CSV/TSV (each gzipped or not) or a Hugging
Face Hub dataset.

`read_records` is the public entry point (also exported from `rlhfkit.data.loaders`); the loaders use
`iter_raw_records`, which hands back per-record problems as values instead of raising them, so that a
malformed line can be counted as skipped and reading can go on.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rlhfkit.data.errors import DataError, InvalidRecord, LoadReport, SkippedRecord
from rlhfkit.data.tables import Columns, read_table, table_delimiter

_GZIP_MAGIC = b"\x1f\x8b"
# "owner/name", "owner/name:split", "owner/name/some/data_files.jsonl.gz[:split]"
_HUB_ID_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?P<files>/[^:]+)?(?::(?P<split>[\w.\-\[\]%+]+))?$"
)
_FILE_SUFFIXES = (".jsonl", ".json", ".gz", ".parquet", ".csv", ".tsv", ".tab", ".txt")
_NO_COLUMNS = Columns()


def _hub_spec(path: str) -> tuple[str, str | None, str] | None:
    """``(name, data_files, split)`` if `path` looks like a hub dataset id, else None."""
    m = _HUB_ID_RE.match(path)
    if m is None:
        return None
    if m.group("files") is None and path.split(":", 1)[0].endswith(_FILE_SUFFIXES):
        return None  # "data/x.jsonl" is a missing local file, not a dataset called "x.jsonl"
    files = m.group("files")
    return m.group("name"), files[1:] if files else None, m.group("split") or "train"


def _as_object(path: str, line: int, value: Any) -> dict | DataError:
    if isinstance(value, dict):
        return value
    return DataError(path, line, None, f"not a JSON object: got {type(value).__name__}")


def _jsonl_lines(path: str, lines: Iterable[bytes]) -> Iterator[tuple[int, dict | DataError]]:
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            yield number, DataError(path, number, None, f"not UTF-8 text: {e.reason} at byte {e.start}")
            continue
        if not text.strip():
            continue  # blank lines are not records
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield number, DataError(path, number, None, f"malformed JSON: {e.msg} (column {e.colno})")
            continue
        yield number, _as_object(path, number, value)


def _read_json(path: str, data: bytes) -> Iterator[tuple[int, dict | DataError]]:
    """A ``.json`` file: a list of objects (line = index + 1), one object, or JSON Lines after all."""
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        # many ".json" files are really JSON Lines; read line by line for precise errors
        yield from _jsonl_lines(path, data.splitlines())
        return
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        yield index + 1, _as_object(path, index + 1, item)


def _read_parquet(path: str) -> Iterator[tuple[int, dict | DataError]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError(path, None, None, "reading Parquet needs pyarrow (pip install pyarrow)") from e
    for index, row in enumerate(pq.read_table(path).to_pylist()):
        yield index + 1, _as_object(path, index + 1, row)


def _read_hub(path: str, spec: tuple[str, str | None, str]) -> Iterator[tuple[int, dict | DataError]]:
    name, data_files, split = spec
    call = f"datasets.load_dataset({name!r}" + (f", data_files={data_files!r}" if data_files else "")
    call += f", split={split!r})"
    try:
        import datasets  # only here: the rest of rlhfkit.data needs nothing beyond the standard library

        kwargs = {"data_files": data_files} if data_files else {}
        dataset = datasets.load_dataset(name, split=split, **kwargs)
    except Exception as e:
        raise FileNotFoundError(
            f"{path!r}: no such local file or directory, and loading it as a Hugging Face Hub dataset "
            f"with {call} failed ({type(e).__name__}: {e})"
        ) from e
    for index, row in enumerate(dataset):
        yield index + 1, _as_object(path, index + 1, row)


def _read_file(path: str) -> Iterator[tuple[int, dict | DataError]]:
    with open(path, "rb") as f:
        magic = f.read(2)
    base = path[: -len(".gz")] if path.endswith(".gz") else path
    if base.endswith(".parquet"):
        yield from _read_parquet(path)
        return
    opener = gzip.open if magic == _GZIP_MAGIC or path.endswith(".gz") else open
    delimiter = table_delimiter(path)
    try:
        with opener(path, "rb") as f:
            if delimiter is not None:
                yield from read_table(path, f, delimiter)
            elif base.endswith(".json"):
                yield from _read_json(path, f.read())
            else:
                yield from _jsonl_lines(path, f)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(path, None, None, f"cannot read file: {type(e).__name__}: {e}") from e


def iter_raw_records(path: str | os.PathLike) -> Iterator[tuple[int, dict | DataError]]:
    """Like `read_records`, but per-record problems come back as `DataError` values, not raised.

    File-level problems (missing file, unreadable gzip) are still raised.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        yield from _read_file(path)
        return
    spec = _hub_spec(path)
    if spec is None:
        raise FileNotFoundError(f"no such data file: {path!r}")
    yield from _read_hub(path, spec)


def read_records(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line, record)`` for every JSON object in `path`; `line` is 1-based.

    Reads JSON Lines (``.jsonl``, and gzip-compressed, recognised by its magic bytes or a ``.gz``
    suffix), ``.json`` (a list of objects, line = index + 1; a ``.json`` that is really JSON Lines is
    read as such), ``.parquet`` (needs pyarrow; line = row index + 1) and CSV / TSV tables (``.csv``,
    ``.tsv``, ``.tab``, gzipped or not; one record per row, keyed by the header, cells as text, line =
    the line the row starts on; see :mod:`rlhfkit.data.tables`). Blank lines are skipped and
    do not count as records, but they do count in line numbers. If `path` does not exist and looks like
    a Hugging Face Hub dataset id (``"owner/name"``, ``"owner/name:split"``, or
    ``"owner/name/path/in/repo.jsonl[:split]"`` for ``data_files``), it is loaded with
    ``datasets.load_dataset`` (split ``"train"`` unless given).

    Raises:
        DataError: for a malformed JSON line (``"malformed JSON: ..."``), a line that is not a JSON
            object, a table row that cannot be parsed or has the wrong number of cells
            (``"unreadable row: ..."``), a table without a header, text that is not UTF-8, or an
            unreadable (e.g. truncated gzip) file.
        FileNotFoundError: if `path` does not exist (the message names the path), or if it looked like
            a hub id and loading it failed (the message names both the local path and the hub call).
    """
    for line, item in iter_raw_records(path):
        if isinstance(item, DataError):
            raise item
        yield line, item


def load_report(
    path: str | os.PathLike,
    choose: Callable[[dict], Callable[[dict], Any]],
    skip_invalid: bool,
    empty: str = "no records",
    columns: Columns = _NO_COLUMNS,
) -> LoadReport:
    """Every record of `path`, parsed: ``choose(first row)`` picks the parser, which returns the record,
    None (a row that gives no record) or raises :class:`InvalidRecord`. A bad row or line is raised as a
    DataError (path, line, field; for a table also the row, and the column instead of the field), or
    counted in ``report.skipped`` with `skip_invalid`.

    `columns` maps fields to columns and filters rows first (:class:`rlhfkit.data.tables.Columns`):
    rows it leaves out are counted in ``report.filtered``, and an error on a mapped field names its
    column.

    Raises:
        DataError: see above; always for a mapped or filtered column that the table lacks, and for a
            file with no (valid) records (`empty`: the reason when there were rows but none gave a
            record; with a filter, how many rows it left out).
        FileNotFoundError: see :func:`iter_raw_records`.
    """
    path = os.fspath(path)
    table = table_delimiter(path) is not None
    report = LoadReport(path)
    parse: Callable[[dict], Any] | None = None
    rows = 0
    for row, (line, item) in enumerate(iter_raw_records(path), 1):
        if isinstance(item, DataError):
            error = DataError(path, line, None, item.reason, row) if table else item
        else:
            if rows == 0 and table:
                columns.check_header(path, item)
            rows += 1
            try:
                if not columns.keeps(item):
                    report.filtered += 1
                    continue
                record = columns.apply(item, table)
                parse = parse or choose(record)
                record = parse(record)
            except InvalidRecord as e:
                error = DataError(path, line, columns.column_of(e.field), e.reason, row if table else None)
            else:
                if record is not None:
                    report.records.append(record)
                continue
        if not skip_invalid:
            raise error
        report.skipped.append(SkippedRecord(line, error.field, error.reason))
    if not report.records:
        if report.skipped:
            first = report.skipped[0]
            raise DataError(
                path,
                None,
                None,
                f"no valid records: all {len(report.skipped)} were skipped "
                f"(first at line {first.line}: {first.reason})",
            )
        if report.filtered:
            raise DataError(path, None, None, f"no records: data.filter left out all {rows} rows")
        raise DataError(path, None, None, empty if rows else "no records")
    return report
