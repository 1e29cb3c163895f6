"""Item records: what is accepted, and the file/line/field of what is not."""

from __future__ import annotations

import json

import pytest

from rlhfkit.data import DataError
from rlhfkit.data.items import InvalidItem, ItemRecord, ResponseRecord, parse_item, read_items


def test_item_forms():
    item = parse_item(
        {"id": 7, "prompt": "hi", "responses": ["a", {"text": "b", "model": "m", "temperature": 0.7}]}
    )
    assert item == ItemRecord(
        "hi", (ResponseRecord("a"), ResponseRecord("b", {"model": "m", "temperature": 0.7})), "7"
    )
    pair = parse_item({"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"})
    assert [r.text for r in pair.responses] == ["a", "b"] and pair.external_id is None
    same = parse_item({"prompt": pair.prompt, "responses": ["a", "b"]})
    assert pair.key().startswith("sha1:") and pair.key() == same.key()  # the same content, the same key


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"responses": ["a", "b"]}, "prompt", "missing"),
        ({"prompt": " ", "responses": ["a", "b"]}, "prompt", "empty prompt"),
        ({"prompt": [{"role": "bot", "content": "x"}], "responses": ["a", "b"]}, "prompt", "bad message"),
        ({"prompt": "q"}, "responses", "missing"),
        ({"prompt": "q", "responses": ["a"]}, "responses", "2 to 8"),
        ({"prompt": "q", "responses": ["a"] * 9}, "responses", "2 to 8"),
        ({"prompt": "q", "responses": ["a", ""]}, "responses", "empty response"),
        ({"prompt": "q", "responses": ["a", 3]}, "responses", "wrong type"),
        ({"prompt": "q", "responses": ["a", "b"], "id": True}, "id", "wrong type"),
        ({"prompt": "q", "responses": ["a", "b"], "meta": []}, "meta", "wrong type"),
        ({"prompt": "q\x00", "responses": ["a", "b"]}, "prompt", "NUL"),
        ({"prompt": [{"role": "user", "content": "\ud800"}], "responses": ["a", "b"]}, "prompt", "surrogate"),
        ({"prompt": "q", "responses": ["a", "b\x00"]}, "responses[1]", "NUL"),
        (
            {"prompt": "q", "responses": ["a", {"text": "b", "model": "\ud800"}]},
            "responses[1] metadata",
            "surrogate",
        ),
        ({"prompt": "q", "responses": ["a", "b"], "id": "x\x00"}, "id", "NUL"),
        ({"prompt": "q", "responses": ["a", "b"], "meta": {"k": "\udfff"}}, "meta", "surrogate"),
    ],
)
def test_bad_items(record, field, reason):
    with pytest.raises(InvalidItem, match=reason) as err:
        parse_item(record)
    assert err.value.field == field


def test_read_items_names_the_line(tmp_path):
    path = tmp_path / "items.jsonl"
    good = json.dumps({"prompt": "q", "responses": ["a", "b"]})
    path.write_text(good + "\n" + json.dumps({"prompt": "q", "responses": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"items.jsonl:2: field 'responses': an item needs 2 to 8"):
        list(read_items(path))
    path.write_text(good + "\n{oops\n")
    with pytest.raises(DataError, match=r"items.jsonl:2: malformed JSON"):
        list(read_items(path))


def test_an_item_round_trips_through_its_json():
    item = ItemRecord(
        [{"role": "user", "content": "Hi"}],
        (ResponseRecord("Hello.", {"model": "m", "sample": 0}), ResponseRecord("Hey.")),
        "gen:1",
        {"source": "generate"},
    )
    again = parse_item(json.loads(json.dumps(item.to_json())))
    assert (
        again == item and again.meta == item.meta and again.responses[0].meta == {"model": "m", "sample": 0}
    )
