"""Importing labelled comparisons into a project: to be labelled again (relabel), or as control items.

Two formats; ``format="auto"`` picks one from the file's first row (`rlhfkit.data.tldr.is_tldr_row`):

- ``"tldr"``: summarize-from-feedback comparison rows (Stiennon et al. 2020, see `rlhfkit.data.tldr`)::

      {"info": {"id", "title", "post" | "article", "subreddit" | "site"},
       "summaries": [{"text", "policy"}, {"text", "policy"}], "choice": 0 | 1, "worker": "...",
       "extra": {"confidence": 1-9}}

  Each row is validated by `rlhfkit.data.tldr.tldr_pair`, so a bad row is the same `DataError` (path,
  line, field: ``info.post``, ``summaries[1].text``, ``choice``, ...) that ``rlhfkit reward`` gives for
  it. The item's prompt is the paper's query (`render_query`: what the export writes, and what the
  reward model trains on); its document, which the page shows, is the whole post (or article) with its
  title and source (``r/<subreddit>``, or the CNN/DM site); its responses are the two summaries, each
  with its ``policy`` as response metadata. An empty summary (some CNN/DM rows) is kept: it is a real
  judgement, and the page marks it as empty.
- ``"trl"``: preference pairs ``{"prompt", "chosen", "rejected"}`` (texts; the prompt may be chat
  messages), validated as item records (`rlhfkit.data.items.parse_item`; errors name ``prompt``,
  ``chosen`` or ``rejected``). Other columns are ignored.

**Items and keys.** One item per distinct comparison: the same post (or prompt) with the same two
responses, in either order, is one item, and every row that judged it is one of its original labels (a
pair judged by several labellers has several). The key is ``tldr:<post id>:<hash of the two texts>`` or
``trl:<hash of the prompt and the two texts>``: importing the same file again adds nothing, as
`Store.load_items` does for item files, and an item already in the project keeps its kind and labels.

**What annotators cannot see.** The responses' positions (their stored order, which exports use) are a
deterministic per-item shuffle of the two texts (one bit of a hash of the key), not the file's order: the
chosen response comes first in about half of the items, whatever the file does. Each annotator then sees
them in their own random order (`rlhfkit.feedback.queue`). The original labels (which position was
preferred, by which worker, how confidently) and the item's kind are stored with the item
(`tables.Item.original`) and never sent to annotators.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlhfkit.data.errors import InvalidRecord
from rlhfkit.data.items import InvalidItem, ItemRecord, ResponseRecord, check_text, parse_item
from rlhfkit.data.reading import load_report
from rlhfkit.data.records import Prompt
from rlhfkit.data.tldr import is_tldr_row, tldr_pair
from rlhfkit.feedback.views import ImportedItem, Original, OriginalLabel

KINDS = ("relabel", "control")
FORMATS = ("auto", "tldr", "trl")
# parse_item names a TRL row's responses by position; the row names them chosen and rejected
_TRL_FIELDS = {"responses[0]": "chosen", "responses[1]": "rejected", "responses": "chosen"}


@dataclass(frozen=True)
class Comparisons:
    """What `read_comparisons` read: the file, its format, how many rows, and the items they make
    (fewer than rows when a pair was judged in several rows)."""

    path: str
    format: str
    rows: int
    items: list[ImportedItem]


@dataclass(frozen=True)
class _Row:
    """One comparison row: `chosen` was preferred to `rejected` as a reply to `prompt`."""

    key: str
    prompt: Prompt
    chosen: ResponseRecord
    rejected: ResponseRecord
    worker: str | None = None
    confidence: int | None = None
    document: dict[str, str] | None = None
    meta: dict[str, Any] | None = None


def _digest(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


def tldr_row(row: dict) -> _Row:
    """One summarize-from-feedback row (see the module docstring).

    Raises:
        TLDRFormatError: a bad row (`rlhfkit.data.tldr`, "Errors").
        InvalidItem: text that cannot be stored (a NUL character, a lone surrogate), naming its field.
    """
    pair = tldr_pair(row)
    info = row["info"]
    is_post = info.get("post") is not None
    body = "post" if is_post else "article"
    document = {"text": check_text(info[body].strip(), f"info.{body}")}
    title = info.get("title")
    if isinstance(title, str) and title.strip():
        document["title"] = check_text(title.strip(), "info.title")
    source = f"r/{info['subreddit'].strip()}" if is_post else info.get("site")
    if isinstance(source, str) and source.strip():
        document["source"] = check_text(source.strip(), "info.subreddit" if is_post else "info.site")
    for i, summary in enumerate(row["summaries"]):
        check_text(summary["text"], f"summaries[{i}].text")
    meta = pair.meta or {}

    def response(text: str, policy: str | None) -> ResponseRecord:
        return ResponseRecord(text, {"policy": policy} if policy is not None else None)

    return _Row(
        key=f"tldr:{pair.group}:{_digest(sorted([pair.chosen, pair.rejected]))}",
        prompt=pair.prompt,
        chosen=response(pair.chosen, meta.get("chosen_policy")),
        rejected=response(pair.rejected, meta.get("rejected_policy")),
        worker=meta.get("worker"),
        confidence=meta.get("confidence"),
        document=document,
        meta={"post_id": pair.group},
    )


def trl_row(row: dict) -> _Row:
    """One TRL preference row ``{"prompt", "chosen", "rejected"}``.

    Raises:
        InvalidRecord: a missing or bad prompt, chosen or rejected (as `parse_item` finds it), naming it.
    """
    for field in ("prompt", "chosen", "rejected"):
        if row.get(field) is None:
            raise InvalidRecord(field, "missing field")
    try:
        item = parse_item({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]})
    except InvalidItem as err:
        field = err.field.split(" ")[0] if err.field else None
        raise InvalidRecord(_TRL_FIELDS.get(field, field), err.reason) from None
    chosen, rejected = item.responses
    return _Row(
        key=f"trl:{_digest([item.prompt, sorted([chosen.text, rejected.text])])}",
        prompt=item.prompt,
        chosen=chosen,
        rejected=rejected,
    )


def _item(key: str, rows: list[_Row], kind: str, format: str) -> ImportedItem:
    """The item of every row with this key: positions shuffled by the key, one label per row."""
    first = rows[0]
    responses = sorted((first.chosen, first.rejected), key=lambda r: r.text)
    if hashlib.sha256(key.encode("utf-8")).digest()[0] & 1:
        responses.reverse()
    texts = [r.text for r in responses]
    labels = []
    for row in rows:
        chosen = texts.index(row.chosen.text)
        labels.append(OriginalLabel(chosen, 1 - chosen, row.worker, row.confidence))
    record = ItemRecord(first.prompt, tuple(responses), key, first.meta, first.document)
    return ImportedItem(record, Original(kind, format, tuple(labels)))


def read_comparisons(path: str | os.PathLike, kind: str = "relabel", format: str = "auto") -> Comparisons:
    """Read a file of labelled comparisons (JSONL, JSONL.gz, JSON, Parquet) into imported items, all or
    nothing (see the module docstring).

    Args:
        kind: ``"relabel"`` (items to label again; the stats compare our labels with the original ones)
            or ``"control"`` (items with a known answer; the stats give each annotator's accuracy).
        format: ``"tldr"``, ``"trl"`` or ``"auto"`` (by the first row: `is_tldr_row`).
    Returns:
        `Comparisons`; its ``items`` in the order their first row comes in the file.
    Raises:
        DataError: (path, line, field) at the first malformed line or bad row; for a file without rows.
        FileNotFoundError: no such file.
        ValueError: an unknown `kind` or `format`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    chosen_format = [format]

    def choose(first: dict) -> Callable[[dict], _Row]:
        if format == "auto":
            chosen_format[0] = "tldr" if is_tldr_row(first) else "trl"
        return tldr_row if chosen_format[0] == "tldr" else trl_row

    report = load_report(path, choose, skip_invalid=False)
    by_key: dict[str, list[_Row]] = {}
    for row in report.records:
        by_key.setdefault(row.key, []).append(row)
    items = [_item(key, rows, kind, chosen_format[0]) for key, rows in by_key.items()]
    return Comparisons(report.path, chosen_format[0], len(report.records), items)
