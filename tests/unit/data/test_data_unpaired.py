"""KTO's data: unpaired {prompt, completion, label} records, pairs taken apart, mismatched partners."""

from __future__ import annotations

import json

import pytest

from rlhfkit.data import DataError, PreferencePair, UnpairedExample, load_unpaired
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.data.unpaired import mismatched_partners, unpaired_examples

HH = "\n\nHuman: Hi\n\nAssistant:"


def _write(tmp_path, rows, name="kto.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_reads_strings_and_chat_messages(tmp_path):
    user = [{"role": "user", "content": "Hi"}]
    path = _write(
        tmp_path,
        [
            {"prompt": "Q: 2+2?", "completion": " 4", "label": True},
            {"prompt": user, "completion": [{"role": "assistant", "content": "Go away."}], "label": False},
            {
                "prompt": user,
                "completion": [*user, {"role": "assistant", "content": "Hello!"}],
                "label": True,
            },
        ],
    )
    records = load_unpaired(path).records
    assert records == [
        UnpairedExample("Q: 2+2?", " 4", True),
        UnpairedExample(user, "Go away.", False),
        UnpairedExample(user, "Hello!", True),
    ]
    assert records[0].to_dict() == {"prompt": "Q: 2+2?", "completion": " 4", "label": True}


@pytest.mark.parametrize(
    "row, field, reason",
    [
        ({"prompt": "p", "completion": "c"}, "label", "missing field"),
        (
            {"prompt": "p", "completion": "c", "label": 1},
            "label",
            "wrong type: expected true or false, got int",
        ),
        ({"prompt": "p", "completion": "c", "label": "yes"}, "label", "wrong type"),
        ({"prompt": "p", "completion": "  ", "label": True}, "completion", "empty response"),
        ({"completion": "c", "label": True}, "prompt", "missing field"),
        (
            {
                "prompt": [{"role": "user", "content": "a"}],
                "completion": [{"role": "user", "content": "b"}],
                "label": True,
            },
            "completion",
            "the last message should be the assistant's reply",
        ),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, row, field, reason):
    path = _write(tmp_path, [{"prompt": "ok", "completion": "fine", "label": True}, row])
    with pytest.raises(DataError) as info:
        load_unpaired(path, format="kto")
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)
    assert reason in info.value.reason
    assert f"{path}:2: field '{field}'" in str(info.value)
    report = load_unpaired(path, format="kto", skip_invalid=True)  # counted, never dropped silently
    assert len(report.records) == 1 and [(s.line, s.field) for s in report.skipped] == [(2, field)]


def test_pairs_stay_whole_through_the_split_and_come_apart_after(tmp_path, toy_preferences):
    report = load_unpaired(toy_preferences)
    assert all(isinstance(r, PreferencePair) for r in report.records)
    data = DataConfig(path=str(toy_preferences), eval_fraction=0.25, train_part="first_half")
    pairs, _ = load_split(data, lambda *a, **k: load_unpaired(*a, **k))
    same, _ = load_split(data, lambda *a, **k: load_unpaired(*a, format="trl", **k))
    assert pairs == same  # the split a reward model or DPO makes on this file
    examples = unpaired_examples(pairs)
    assert len(examples) == 2 * len(pairs)
    first = pairs[0]
    assert examples[:2] == [
        UnpairedExample(first.prompt, first.chosen, True),
        UnpairedExample(first.prompt, first.rejected, False),
    ]


def test_hh_pairs_are_read_with_format_hh(toy_hh_file):
    records = load_unpaired(toy_hh_file, format="hh").records
    assert records and all(isinstance(r, PreferencePair) for r in records)
    with pytest.raises(ValueError, match="format"):
        load_unpaired(toy_hh_file, format="pairs")


def test_mismatched_partners_have_another_prompt_and_cover_every_completion():
    pairs = [PreferencePair(f"{HH} {i}", f" good {i}", f" bad {i}") for i in range(5)]
    examples = unpaired_examples(pairs)  # chosen and rejected of a pair share a prompt
    partners = mismatched_partners(examples, seed=0)
    assert all(examples[j].prompt != examples[i].prompt for i, j in enumerate(partners))
    assert partners == mismatched_partners(examples, seed=0)  # fixed by the seed
    assert len(set(partners)) >= len(examples) - 2  # a shift of a shuffle: (nearly) each serves once
    with pytest.raises(ValueError, match="two different prompts"):
        mismatched_partners(unpaired_examples(pairs[:1]), seed=0)


def test_sft_on_a_kto_file_refuses_the_undesirable_completions_and_counts_them_when_skipping(tmp_path):
    from rlhfkit.data import load_sft

    rows = [
        {"prompt": "p1", "completion": " good", "label": True},
        {"prompt": "p2", "completion": " bad", "label": False},
    ]
    path = _write(tmp_path, rows)
    with pytest.raises(DataError, match=r"kto\.jsonl:2.*'label'.*not labelled desirable"):
        load_sft(path)
    report = load_sft(path, skip_invalid=True)
    assert [(r.prompt, r.response) for r in report.records] == [("p1", " good")]
    assert [(s.line, s.field) for s in report.skipped] == [(2, "label")]
