"""Rating questions on item records: what is accepted, the errors (file, line, field) for what is not,
the default question of a load, one response per rating item, keys, and the to_json round trip."""

from __future__ import annotations

import json

import pytest

from rlhfkit.data import DataError
from rlhfkit.data.items import InvalidItem, ItemRecord, ResponseRecord, parse_item, read_items
from rlhfkit.data.questions import InvalidQuestion, check_rating, describe, parse_question

AXES = ["overall", "accuracy", "coverage", "coherence"]
LIKERT = {"type": "likert", "axes": AXES, "scale": 7}


def test_questions_in_their_canonical_form():
    assert parse_question(None) is None
    assert parse_question({"type": "thumbs"}) == {"type": "thumbs"}
    assert parse_question({"type": "likert", "axes": AXES}) == LIKERT  # scale 7 by default
    assert parse_question({"type": "likert", "axes": ["x"], "scale": 5})["scale"] == 5
    assert describe(LIKERT) == "likert 1-7: overall, accuracy, coverage, coherence"
    assert describe({"type": "thumbs"}) == "thumbs" and describe(None) == "comparison"


@pytest.mark.parametrize(
    ("question", "field", "reason"),
    [
        ("thumbs", "question", "expected an object"),
        ({"type": "stars"}, "question.type", "expected one of thumbs, likert, got 'stars'"),
        ({"type": "thumbs", "axes": ["x"]}, "question", "unknown key 'axes'"),
        ({"type": "likert"}, "question.axes", "1 or more axes"),
        ({"type": "likert", "axes": []}, "question.axes", "1 or more axes"),
        ({"type": "likert", "axes": "overall"}, "question.axes", "as a list"),
        ({"type": "likert", "axes": ["over all"]}, "question.axes", "bad axis name 'over all'"),
        ({"type": "likert", "axes": ["a", "a"]}, "question.axes", "named twice"),
        ({"type": "likert", "axes": [f"a{n}" for n in range(13)]}, "question.axes", "at most 12"),
        ({"type": "likert", "axes": ["a"], "scale": 1}, "question.scale", "from 2 to 10, got 1"),
        ({"type": "likert", "axes": ["a"], "scale": 7.0}, "question.scale", "got a float"),
        ({"type": "likert", "axes": ["a"], "scale": True}, "question.scale", "got a bool"),
        ({"type": "likert", "axes": ["a"], "colour": 1}, "question", "unknown key 'colour'"),
    ],
)
def test_bad_questions_name_the_field(question, field, reason):
    with pytest.raises(InvalidQuestion, match=reason) as err:
        parse_question(question)
    assert err.value.field == field


def test_check_rating_keeps_the_question_axis_order():
    assert check_rating({"coherence": 1, "overall": 7, "coverage": 2, "accuracy": 3}, LIKERT) == {
        "overall": 7,
        "accuracy": 3,
        "coverage": 2,
        "coherence": 1,
    }
    assert check_rating({"thumbs": "down"}, {"type": "thumbs"}) == {"thumbs": "down"}


def test_a_rating_item_has_one_response_and_its_own_key():
    rated = parse_item({"prompt": "q", "responses": ["a"], "question": {"type": "thumbs"}})
    assert rated == ItemRecord("q", (ResponseRecord("a"),), question={"type": "thumbs"})
    likert = parse_item({"prompt": "q", "responses": ["a"], "question": {"type": "likert", "axes": AXES}})
    assert likert.question == LIKERT
    assert len({rated.key(), likert.key()}) == 2  # the same response, asked two things: two items
    pair = parse_item({"prompt": "q", "responses": ["a", "b"]})
    assert pair.question is None and pair.key() == ItemRecord("q", pair.responses).key()  # keys as before
    with pytest.raises(InvalidItem, match="a thumbs rating is of one response, got 2") as err:
        parse_item({"prompt": "q", "responses": ["a", "b"], "question": {"type": "thumbs"}})
    assert err.value.field == "responses"
    with pytest.raises(InvalidItem, match="2 to 8"):  # a comparison still needs two
        parse_item({"prompt": "q", "responses": ["a"]})


def test_to_json_round_trips_the_question():
    item = ItemRecord(
        [{"role": "user", "content": "q"}], (ResponseRecord("a", {"model": "m"}),), "x", None, None, LIKERT
    )
    assert item.to_json()["question"] == LIKERT
    assert parse_item(json.loads(json.dumps(item.to_json()))) == item


def test_read_items_gives_the_default_question_to_records_without_one(tmp_path):
    path = tmp_path / "items.jsonl"
    own = {"type": "likert", "axes": ["overall"], "scale": 5}
    path.write_text(
        json.dumps({"prompt": "q1", "responses": ["a"]})
        + "\n"
        + json.dumps({"prompt": "q2", "responses": ["b"], "question": own})
        + "\n"
    )
    first, second = read_items(path, {"type": "thumbs"})
    assert first.question == {"type": "thumbs"} and second.question == own


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"prompt": "q", "responses": ["a"], "question": {"type": "likert", "axes": ["ok", "no way"]}},
            r"items.jsonl:2: field 'question.axes': bad axis name 'no way'",
        ),
        (
            {"prompt": "q", "responses": ["a", "b"]},
            r"items.jsonl:2: field 'responses': a thumbs rating is of one response, got 2: make one item per",
        ),
    ],
)
def test_read_items_names_file_line_and_field(tmp_path, record, message):
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps({"prompt": "q", "responses": ["a"]}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=message):
        list(read_items(path, {"type": "thumbs"}))
