"""HH-RLHF parsing: split exactness, message conversion, joining prompt and response."""

import json
import pickle

import pytest

from rlhfkit.data import (
    ASSISTANT_TAG,
    DataError,
    LoadReport,
    PreferencePair,
    PromptOnly,
    SFTExample,
    SkippedRecord,
    hh_to_messages,
    join_prompt_response,
    messages_to_hh,
    split_hh_dialogue,
)

MULTI = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:"


def test_split_keeps_responses_exactly_and_join_reproduces_dialogues():
    chosen = MULTI + " Sure, here you go.  Anything else?\n"
    rejected = MULTI + " No."
    prompt, c, r = split_hh_dialogue(chosen, rejected)
    assert prompt == MULTI
    assert c == " Sure, here you go.  Anything else?\n"
    assert r == " No."
    assert join_prompt_response(prompt, c) == chosen
    assert join_prompt_response(prompt, r) == rejected


def test_split_uses_last_assistant_tag_and_keeps_empty_reply():
    prompt, c, r = split_hh_dialogue(MULTI + " ", MULTI + " x")
    assert prompt.endswith("Human: c" + ASSISTANT_TAG)
    assert c == " "
    assert join_prompt_response(prompt, c) == MULTI + " "


def test_split_errors():
    with pytest.raises(ValueError, match="not an HH dialogue"):
        split_hh_dialogue("no tags here", MULTI + " x")
    with pytest.raises(ValueError, match=r"HH prompts differ: .* at character 10") as info:
        split_hh_dialogue("\n\nHuman: hi\n\nAssistant: a", "\n\nHuman: ho\n\nAssistant: b")
    assert info.value.field == "rejected"
    assert len(str(info.value)) < 200


def test_hh_to_messages():
    assert hh_to_messages(MULTI) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert hh_to_messages("  just a question ") == [{"role": "user", "content": "just a question"}]
    assert hh_to_messages("Human: hi\n\nAssistant:") == [{"role": "user", "content": "hi"}]
    assert hh_to_messages("Be kind.\n\nHuman: hi\n\nAssistant:") == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
    ]


def test_messages_to_hh_round_trip():
    assert messages_to_hh(hh_to_messages(MULTI)) == MULTI
    messages = [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    text = messages_to_hh(messages)
    assert text == "Be kind.\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant:"
    assert hh_to_messages(text) == messages
    assert messages_to_hh(messages[1:2], "yo") == "\n\nHuman: hi\n\nAssistant: yo"
    with pytest.raises(ValueError, match="unknown role"):
        messages_to_hh([{"role": "tool", "content": "x"}])


def test_join_prompt_response():
    assert join_prompt_response("Q:", "A") == "Q: A"
    assert join_prompt_response("Q:", " A") == "Q: A"
    assert join_prompt_response("Q: ", "A") == "Q: A"
    assert join_prompt_response("Write", "A") == "WriteA"
    assert (
        join_prompt_response([{"role": "user", "content": "hi"}], " yo \n")
        == "\n\nHuman: hi\n\nAssistant: yo"
    )


def test_records_to_dict_is_json():
    pair = PreferencePair([{"role": "user", "content": "hi"}], "a", "b", margin=1.5)
    assert json.loads(json.dumps(pair.to_dict())) == {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": "a",
        "rejected": "b",
        "margin": 1.5,
    }
    assert "margin" not in PreferencePair("p", "a", "b").to_dict()
    assert PromptOnly("p").to_dict() == {"prompt": "p"}
    assert SFTExample("p", "r").to_dict() == {"prompt": "p", "response": "r"}


def test_data_error_message_and_pickle():
    assert str(DataError("data/x.jsonl", 12, "chosen", "empty response")) == (
        "data/x.jsonl:12: field 'chosen': empty response"
    )
    assert str(DataError("x.jsonl", None, None, "no records")) == "x.jsonl: no records"
    assert str(DataError("x.jsonl", 3, None, "malformed JSON: oops")) == "x.jsonl:3: malformed JSON: oops"
    err = pickle.loads(pickle.dumps(DataError("x.jsonl", 3, "prompt", "empty prompt")))
    assert (err.path, err.line, err.field, err.reason) == ("x.jsonl", 3, "prompt", "empty prompt")
    assert isinstance(err, ValueError)


def test_load_report_summary():
    report = LoadReport(
        "data.jsonl",
        records=[1, 2, 3],
        skipped=[
            SkippedRecord(4, "rejected", "HH prompts differ: at character 3"),
            SkippedRecord(5, None, "malformed JSON: x"),
            SkippedRecord(9, "rejected", "HH prompts differ: at character 7"),
        ],
    )
    assert len(report) == 3
    assert report.summary() == "data.jsonl: 3 records, 3 skipped (2 × HH prompts differ, 1 × malformed JSON)"
    assert LoadReport("d.jsonl", [1]).summary() == "d.jsonl: 1 records, 0 skipped"


def test_import_pulls_in_no_heavy_dependency():
    import subprocess
    import sys

    code = (
        "import sys, rlhfkit.data; "
        "print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
