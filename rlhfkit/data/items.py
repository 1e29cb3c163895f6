"""Items to annotate: a prompt with K >= 2 candidate responses, read from JSONL (or built in code).

An item record is a JSON object::

    {"id": "q17",                                   # optional; default: a hash of prompt + responses
     "prompt": "How do I ..." | [{"role": "user", "content": "..."}, ...],
     "responses": ["text", {"text": "text", "model": "runs/sft", "temperature": 0.7, ...}, ...],
     "meta": {...}}                                 # optional, kept with the item

A response may be a plain string or an object with ``text`` and any other keys, which are kept as that
response's metadata (the model and sampling settings, for generated items). A preference record
``{"prompt", "chosen", "rejected"}`` also works (two responses, to relabel an existing data set).
HH-style prompt strings (``"\\n\\nHuman: ...\\n\\nAssistant:"``) are shown on the page as turns.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rlhfkit.data.errors import DataError
from rlhfkit.data.reading import iter_raw_records
from rlhfkit.data.records import Prompt

MAX_RESPONSES = 8
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ResponseRecord:
    """One candidate response and what is known about how it was made."""

    text: str
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class ItemRecord:
    """A prompt with its K candidate responses; `external_id` names it in exports (None: content hash)."""

    prompt: Prompt
    responses: tuple[ResponseRecord, ...]
    external_id: str | None = None
    meta: dict[str, Any] | None = field(default=None, compare=False)

    def key(self) -> str:
        """`external_id`, or a stable hash of the prompt and response texts."""
        if self.external_id is not None:
            return self.external_id
        blob = json.dumps([self.prompt, [r.text for r in self.responses]], sort_keys=True)
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
        return record


class InvalidItem(ValueError):
    """An item record that cannot be used; `field` names the field at fault."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


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


def _checked(value: str, field: str) -> str:
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


def parse_item(record: dict[str, Any]) -> ItemRecord:
    """Validate one item record (see the module docstring).

    Raises:
        InvalidItem: (a ValueError whose ``field`` names the field at fault) for a missing, empty or
            wrongly typed prompt; fewer than 2 or more than `MAX_RESPONSES` responses; an empty or
            non-string response; an ``id`` that is not a string or integer; ``meta`` that is not an object;
            any text (prompt, response, id, metadata) with a NUL character or a lone surrogate.
    """
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
    if not 2 <= len(responses) <= MAX_RESPONSES:
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
    return ItemRecord(prompt, responses, external_id, meta)


def _check_texts(prompt: Prompt, responses: tuple[ResponseRecord, ...], external_id, meta) -> None:
    """Every text of an item is storable (:func:`text_problem`), metadata included."""
    turns = [prompt] if isinstance(prompt, str) else [m["content"] for m in prompt]
    for text in turns:
        _checked(text, "prompt")
    for i, response in enumerate(responses):
        _checked(response.text, f"responses[{i}]")
        if response.meta:
            _checked(json.dumps(response.meta, ensure_ascii=False, default=str), f"responses[{i}] metadata")
    if external_id is not None:
        _checked(external_id, "id")
    if meta:
        _checked(json.dumps(meta, ensure_ascii=False, default=str), "meta")


def read_items(path: str | os.PathLike) -> Iterator[ItemRecord]:
    """Yield the items of a JSONL / JSONL.gz / JSON file, validating each.

    Raises:
        DataError: (path, line, field) at the first malformed line or invalid item (see `parse_item`).
        FileNotFoundError: the file does not exist.
    """
    path = os.fspath(path)
    for line, record in iter_raw_records(path):
        if isinstance(record, DataError):
            raise record
        try:
            yield parse_item(record)
        except InvalidItem as err:
            raise DataError(path, line, err.field, err.reason) from None
