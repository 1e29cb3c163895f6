"""Items to annotate: a prompt with K >= 2 candidate responses to compare, or one response to rate, read
from JSONL (or built in code).

An item record is a JSON object::

    {"id": "q17",                                   # optional; default: a hash of prompt + responses
     "prompt": "How do I ..." | [{"role": "user", "content": "..."}, ...],
     "responses": ["text", {"text": "text", "model": "runs/sft", "temperature": 0.7, ...}, ...],
     "meta": {...},                                 # optional, kept with the item
     "document": {"title": "...", "text": "...", "source": "r/relationships"},   # optional, see below
     "question": {"type": "thumbs"}}                # optional, see below

A response may be a plain string or an object with ``text`` and any other keys, which are kept as that
response's metadata (the model and sampling settings, for generated items). A preference record
``{"prompt", "chosen", "rejected"}`` also works (two responses, to relabel an existing data set).
HH-style prompt strings (``"\\n\\nHuman: ...\\n\\nAssistant:"``) are shown on the page as turns.

**Documents.** An item whose responses are about a long text (summaries of a Reddit post or a news
article) carries it as ``document``: ``text`` (required, non-empty; paragraphs are separated by blank
lines), ``title`` and ``source`` (optional strings: ``"r/relationships"``, ``"cnn"``, a URL); no other
keys. The labelling page then shows the document (title, source and paragraphs, scrollable when long)
in place of the prompt. The prompt is still what exports and training use; it may be left out of a
record with a document, and is then the document's text (after its title and a blank line, if it has
one). An item without a document is read, keyed and stored exactly as before.

**Ratings.** An item with a ``question`` (`rlhfkit.data.questions`: ``{"type": "thumbs"}`` or
``{"type": "likert", "axes": [...], "scale": 7}``) asks annotators to rate its response instead of
comparing responses, and has exactly one response: a rating item with K > 1 responses is refused (make one
item per response, each with its own id). A file read with a default question (`read_items`'s
``question``, ``annotate load --question``) gives it to every record that has none of its own. The
question is part of the key, so the same response can be rated and compared in one project; an item
without one is keyed as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rlhfkit.data.errors import DataError, InvalidRecord
from rlhfkit.data.questions import InvalidQuestion, describe, parse_question
from rlhfkit.data.reading import iter_raw_records
from rlhfkit.data.records import Prompt

MAX_RESPONSES = 8
_ROLES = ("system", "user", "assistant")
DOCUMENT_KEYS = ("title", "text", "source")


@dataclass(frozen=True)
class ResponseRecord:
    """One candidate response and what is known about how it was made."""

    text: str
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class ItemRecord:
    """A prompt with its K candidate responses; `external_id` names it in exports (None: content hash).

    `document` (``{"text": str, "title"?: str, "source"?: str}`` or None) is the text the responses are
    about, shown to annotators in place of the prompt (see the module docstring). `question` (None: a
    comparison) is what annotators are asked, in the canonical form of `questions.parse_question`.
    """

    prompt: Prompt
    responses: tuple[ResponseRecord, ...]
    external_id: str | None = None
    meta: dict[str, Any] | None = field(default=None, compare=False)
    document: dict[str, str] | None = None
    question: dict[str, Any] | None = None

    def key(self) -> str:
        """`external_id`, or a stable hash of the prompt and response texts (and the document and the
        question, if any: the keys of items without them are what they always were)."""
        if self.external_id is not None:
            return self.external_id
        content: list[Any] = [self.prompt, [r.text for r in self.responses]]
        if self.document is not None:
            content.append(self.document)
        if self.question is not None:
            content.append({"question": self.question})
        blob = json.dumps(content, sort_keys=True)
        return "sha1:" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """The item as the JSON object :func:`parse_item` reads back (each response ``{"text", **meta}``)."""
        record: dict[str, Any] = {
            "prompt": self.prompt,
            "responses": [{**(r.meta or {}), "text": r.text} for r in self.responses],
        }
        if self.external_id is not None:
            record["id"] = self.external_id
        if self.meta:
            record["meta"] = self.meta
        if self.document is not None:
            record["document"] = self.document
        if self.question is not None:
            record["question"] = self.question
        return record


class InvalidItem(InvalidRecord):
    """An item record that cannot be used (a ValueError); `field` names the field at fault. As an
    `InvalidRecord`, loaders (`rlhfkit.data.reading.load_report`) report it with its path and line."""


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text in every database we support, or None when it can: a NUL
    character (PostgreSQL text cannot hold one) or a lone surrogate such as ``"\\ud800"`` (not valid
    Unicode: it has no UTF-8 encoding)."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def check_text(value: str, field: str) -> str:
    """`value`, if it can be stored (`text_problem`).

    Raises:
        InvalidItem: naming `field`, for a NUL character or a lone surrogate.
    """
    problem = text_problem(value)
    if problem:
        raise InvalidItem(field, problem)
    return value


def _prompt(value: Any) -> Prompt:
    if isinstance(value, str):
        if not value.strip():
            raise InvalidItem("prompt", "empty prompt")
        return value
    if isinstance(value, list) and value:
        for i, message in enumerate(value):
            if (
                not isinstance(message, dict)
                or message.get("role") not in _ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise InvalidItem(
                    "prompt", f"bad message: item {i} should be {{'role': ..., 'content': str}}"
                )
        return [{"role": m["role"], "content": m["content"]} for m in value]
    if value is None:
        raise InvalidItem("prompt", "missing field")
    raise InvalidItem(
        "prompt", f"wrong type: expected a string or a list of messages, got {type(value).__name__}"
    )


def _response(value: Any, where: str) -> ResponseRecord:
    meta = None
    if isinstance(value, dict):
        meta = {k: v for k, v in value.items() if k != "text"} or None
        value = value.get("text")
    if not isinstance(value, str):
        raise InvalidItem(
            where, f"wrong type: expected a string or {{'text': str, ...}}, got {type(value).__name__}"
        )
    if not value.strip():
        raise InvalidItem(where, "empty response")
    return ResponseRecord(value, meta)


def parse_document(value: Any) -> dict[str, str]:
    """Validate an item's ``document``: an object with a non-empty string ``text`` and optional string
    ``title`` and ``source`` (see the module docstring); returns it with only the keys given.

    Raises:
        InvalidItem: ``field`` ``"document"`` for a non-object or an unknown key, ``"document.<key>"`` for
            a missing or empty text, a value that is not a string, or text with a NUL character or a lone
            surrogate.
    """
    if not isinstance(value, dict):
        raise InvalidItem("document", f"wrong type: expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(DOCUMENT_KEYS))
    if unknown:
        keys = ", ".join(DOCUMENT_KEYS)
        raise InvalidItem("document", f"unknown key {unknown[0]!r}; a document has {keys}")
    document = {}
    for key in DOCUMENT_KEYS:
        if value.get(key) is None:
            continue
        if not isinstance(value[key], str):
            raise InvalidItem(
                f"document.{key}", f"wrong type: expected a string, got {type(value[key]).__name__}"
            )
        document[key] = check_text(value[key], f"document.{key}")
    if not document.get("text", "").strip():
        raise InvalidItem("document.text", "missing field" if "text" not in document else "empty text")
    return document


def document_prompt(document: dict[str, str]) -> str:
    """The prompt of an item that gives a document and no prompt: its title, a blank line, its text (the
    text alone without a title)."""
    title = document.get("title", "").strip()
    return f"{title}\n\n{document['text']}" if title else document["text"]


def parse_item(record: dict[str, Any], question: dict[str, Any] | None = None) -> ItemRecord:
    """Validate one item record (see the module docstring); `question` (a canonical question, or None)
    is the item's question when the record gives none.

    Raises:
        InvalidItem: (a ValueError whose ``field`` names the field at fault) for a missing, empty or
            wrongly typed prompt (a missing one is fine with a document); fewer than 2 or more than
            `MAX_RESPONSES` responses; an empty or non-string response; an ``id`` that is not a string or
            integer; ``meta`` that is not an object; a bad ``document`` (`parse_document`); a bad
            ``question`` (``question``, ``question.axes``, ...: `questions.parse_question`); a rating item
            with other than one response; any text (prompt, response, id, metadata) with a NUL character
            or a lone surrogate.
    """
    if record.get("question") is not None:
        try:
            question = parse_question(record["question"])
        except InvalidQuestion as err:
            raise InvalidItem(err.field, err.reason) from None
    document = parse_document(record["document"]) if record.get("document") is not None else None
    if document is not None and record.get("prompt") is None:
        prompt = document_prompt(document)
    else:
        prompt = _prompt(record.get("prompt"))
    if "responses" in record:
        raw = record["responses"]
        if not isinstance(raw, list):
            raise InvalidItem("responses", f"wrong type: expected a list, got {type(raw).__name__}")
        responses = tuple(_response(r, "responses") for r in raw)
    elif "chosen" in record and "rejected" in record:
        responses = (_response(record["chosen"], "chosen"), _response(record["rejected"], "rejected"))
    else:
        raise InvalidItem("responses", "missing field (expected 'responses', or 'chosen' and 'rejected')")
    if question is not None and len(responses) != 1:
        raise InvalidItem(
            "responses",
            f"a {describe(question)} rating is of one response, got {len(responses)}: make one item per "
            "response (each with its own id)",
        )
    if question is None and not 2 <= len(responses) <= MAX_RESPONSES:
        raise InvalidItem("responses", f"an item needs 2 to {MAX_RESPONSES} responses, got {len(responses)}")
    external_id = record.get("id")
    if external_id is not None:
        if isinstance(external_id, bool) or not isinstance(external_id, (str, int)):
            raise InvalidItem(
                "id", f"wrong type: expected a string or integer, got {type(external_id).__name__}"
            )
        external_id = str(external_id)
        if not external_id or len(external_id) > 200:
            raise InvalidItem("id", "an id is 1 to 200 characters long")
    meta = record.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise InvalidItem("meta", f"wrong type: expected an object, got {type(meta).__name__}")
    _check_texts(prompt, responses, external_id, meta)
    return ItemRecord(prompt, responses, external_id, meta, document, question)


def _check_texts(prompt: Prompt, responses: tuple[ResponseRecord, ...], external_id, meta) -> None:
    """Every text of an item is storable (:func:`text_problem`), metadata included."""
    turns = [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt]
    for text in turns:
        check_text(text, "prompt")
    for i, response in enumerate(responses):
        check_text(response.text, f"responses[{i}]")
        if response.meta:
            check_text(json.dumps(response.meta, ensure_ascii=False, default=str), f"responses[{i}] metadata")
    if external_id is not None:
        check_text(external_id, "id")
    if meta:
        check_text(json.dumps(meta, ensure_ascii=False, default=str), "meta")


def read_items(path: str | os.PathLike, question: dict[str, Any] | None = None) -> Iterator[ItemRecord]:
    """Yield the items of a JSONL / JSONL.gz / JSON file, validating each; `question` (canonical, see
    `questions.parse_question`) is the question of every record that does not give its own.

    Raises:
        DataError: (path, line, field) at the first malformed line or invalid item (see `parse_item`).
        FileNotFoundError: the file does not exist.
    """
    path = os.fspath(path)
    for line, record in iter_raw_records(path):
        if isinstance(record, DataError):
            raise record
        try:
            yield parse_item(record, question)
        except InvalidItem as err:
            raise DataError(path, line, err.field, err.reason) from None
