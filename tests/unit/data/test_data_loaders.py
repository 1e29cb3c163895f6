"""Loaders: formats, file kinds, and a DataError naming path/line/field for each kind of bad record."""

import gzip
import json
import sys
import types

import pytest

from rlhfkit.data import (
    DataError,
    PreferencePair,
    PromptOnly,
    SFTExample,
    load_preferences,
    load_prompts,
    load_sft,
    read_records,
)

HH_PROMPT = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
HH = {"chosen": HH_PROMPT + " Fine, thanks.", "rejected": HH_PROMPT + " Go away."}
USER = {"role": "user", "content": "hi"}


def write_jsonl(path, rows):
    """Write rows (dicts, or raw strings for bad lines) as JSON Lines."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_trl_string_format(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "Q:", "chosen": " yes", "rejected": " no", "margin": 2},
            {"prompt": "R", "chosen": "a", "rejected": "b"},
        ],
    )
    report = load_preferences(path)
    assert report.records == [PreferencePair("Q:", " yes", " no", 2.0), PreferencePair("R", "a", "b")]
    assert report.skipped == [] and len(report) == 2 and report.path == str(path)


def test_trl_conversational_format(tmp_path):
    reply = {"role": "assistant", "content": "hello"}
    rows = [
        {"prompt": [USER], "chosen": [reply], "rejected": [{"role": "assistant", "content": "bye"}]},
        {
            "prompt": [USER],
            "chosen": [USER, reply],
            "rejected": [USER, {"role": "assistant", "content": "x"}],
        },
        {
            "chosen": [USER, reply],
            "rejected": [USER, {"role": "assistant", "content": "y"}],
        },  # implicit prompt
    ]
    report = load_preferences(write_jsonl(tmp_path / "c.jsonl", rows))
    assert [(r.prompt, r.chosen, r.rejected) for r in report.records] == [
        ([USER], "hello", "bye"),
        ([USER], "hello", "x"),
        ([USER], "hello", "y"),
    ]
    implicit_only = load_preferences(write_jsonl(tmp_path / "i.jsonl", rows[2:]))  # auto-detected as trl
    assert implicit_only.records[0].prompt == [USER]


def test_conversational_prefix_must_match_prompt(tmp_path):
    other = {"role": "user", "content": "other"}
    row = {"prompt": [USER], "chosen": [other, {"role": "assistant", "content": "a"}], "rejected": "b"}
    with pytest.raises(DataError) as info:
        load_preferences(write_jsonl(tmp_path / "c.jsonl", [row]))
    assert (info.value.line, info.value.field) == (1, "chosen")


def test_hh_format_split_is_exact(tmp_path):
    report = load_preferences(write_jsonl(tmp_path / "hh.jsonl", [HH]))
    pair = report.records[0]
    assert pair == PreferencePair(HH_PROMPT, " Fine, thanks.", " Go away.")
    assert pair.prompt + pair.chosen == HH["chosen"]


def test_gz_json_and_blank_lines(tmp_path):
    gz = tmp_path / "hh.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(json.dumps(HH) + "\n\n  \n" + json.dumps(HH) + "\n")
    assert [line for line, _ in read_records(gz)] == [1, 4]
    assert len(load_preferences(gz)) == 2
    hidden = tmp_path / "no_suffix.data"  # gzip recognised by its magic bytes
    hidden.write_bytes(gz.read_bytes())
    assert len(load_preferences(hidden)) == 2
    as_json = tmp_path / "hh.json"
    as_json.write_text(json.dumps([HH, HH, HH]))
    assert [line for line, _ in read_records(as_json)] == [1, 2, 3]


def test_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "hh.parquet"
    pq.write_table(pa.Table.from_pylist([HH, HH]), path)
    assert len(load_preferences(path)) == 2


BAD_CASES = [
    ("malformed", '{"chosen": "a", ', None, "malformed JSON"),
    ("not_object", "[1, 2]", None, "not a JSON object"),
    ("missing_rejected", {"prompt": "p", "chosen": "a"}, "rejected", "missing field"),
    ("missing_prompt", {"chosen": "a", "rejected": "b"}, "prompt", "missing field"),
    ("empty_response", {"prompt": "p", "chosen": "  \n", "rejected": "b"}, "chosen", "empty response"),
    (
        "empty_conv_response",
        {"prompt": [USER], "chosen": "a", "rejected": [{"role": "assistant", "content": ""}]},
        "rejected",
        "empty response",
    ),
    ("wrong_type", {"prompt": "p", "chosen": 3, "rejected": "b"}, "chosen", "wrong type"),
    (
        "bad_message",
        {"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"},
        "prompt",
        "bad message",
    ),
    (
        "bad_margin",
        {"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"},
        "margin",
        "not a finite number",
    ),
    (
        "bool_margin",
        {"prompt": "p", "chosen": "a", "rejected": "b", "margin": True},
        "margin",
        "not a finite number",
    ),
]


@pytest.mark.parametrize("name,bad,field,reason", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_trl_record_raises_data_error(tmp_path, name, bad, field, reason):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / f"{name}.jsonl", [good, good, bad, good])
    with pytest.raises(DataError) as info:
        load_preferences(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert err.reason.startswith(reason)
    field_part = f"field {field!r}: " if field else ""
    assert str(err).startswith(f"{path}:3: {field_part}{reason}")
    report = load_preferences(path, skip_invalid=True)
    assert len(report) == 3
    assert [(s.line, s.field) for s in report.skipped] == [(3, field)]


def test_hh_prompts_differ_and_missing_tag(tmp_path):
    differ = {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: ho\n\nAssistant: b"}
    no_tag = {"chosen": "just text", "rejected": HH["rejected"]}
    path = write_jsonl(tmp_path / "hh.jsonl", [HH, differ, HH, no_tag])
    with pytest.raises(DataError, match=r"hh.jsonl:2: field 'rejected': HH prompts differ") as info:
        load_preferences(path)
    assert info.value.line == 2
    report = load_preferences(path, skip_invalid=True)
    assert [(s.line, s.field) for s in report.skipped] == [(2, "rejected"), (4, "chosen")]
    assert report.summary() == f"{path}: 2 records, 2 skipped (1 × HH prompts differ, 1 × not an HH dialogue)"


def test_skip_invalid_counts_every_kind(tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    rows = [good] + [case[1] for case in BAD_CASES] + [good]
    report = load_preferences(write_jsonl(tmp_path / "mixed.jsonl", rows), skip_invalid=True)
    assert len(report) == 2
    assert [s.line for s in report.skipped] == list(range(2, 2 + len(BAD_CASES)))
    assert f"2 records, {len(BAD_CASES)} skipped (" in report.summary()


def test_format_is_decided_from_first_record_or_forced(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [HH])
    with pytest.raises(DataError, match="'prompt': missing field"):
        load_preferences(path, format="trl")
    with pytest.raises(ValueError, match="format must be"):
        load_preferences(path, format="csv")


def test_empty_file_and_all_invalid(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl: no records") as info:
        load_preferences(empty, skip_invalid=True)
    assert info.value.line is None
    bad = write_jsonl(tmp_path / "bad.jsonl", ["nope"])
    with pytest.raises(DataError, match="no valid records"):
        load_preferences(bad, skip_invalid=True)


def test_prompts_and_sft_from_hh_file(tmp_path):
    # a pair whose prompts differ is invalid for every loader, so all stages keep the same records
    differ = {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: ho\n\nAssistant: b"}
    path = write_jsonl(tmp_path / "hh.jsonl", [HH, differ])
    with pytest.raises(DataError, match=r"hh.jsonl:2: field 'rejected': HH prompts differ"):
        load_prompts(path)
    prompts = load_prompts(path, skip_invalid=True)
    assert prompts.records == [PromptOnly(HH_PROMPT)]
    assert [s.line for s in prompts.skipped] == [2]
    sft = load_sft(path, skip_invalid=True)
    assert sft.records == [SFTExample(HH_PROMPT, " Fine, thanks.")]
    assert [s.line for s in sft.skipped] == [2]


def test_prompts_and_sft_formats(tmp_path):
    rows = [
        {"prompt": "a"},
        {"prompt": [USER], "chosen": "x", "rejected": "y"},
    ]
    assert load_prompts(write_jsonl(tmp_path / "p.jsonl", rows)).records == [
        PromptOnly("a"),
        PromptOnly([USER]),
    ]
    rows = [
        {"prompt": "a", "response": "b"},
        {"prompt": "c", "completion": "d"},
        {"prompt": [USER], "completion": [{"role": "assistant", "content": "e"}]},
        {"prompt": "f", "chosen": "g", "rejected": "h"},
    ]
    assert [(r.prompt, r.response) for r in load_sft(write_jsonl(tmp_path / "s.jsonl", rows))] == [
        ("a", "b"),
        ("c", "d"),
        ([USER], "e"),
        ("f", "g"),
    ]


def test_prompts_and_sft_errors(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"prompt": "   "}, {"text": "x"}])
    with pytest.raises(DataError, match=r"p.jsonl:2: field 'prompt': empty prompt"):
        load_prompts(path)
    report = load_prompts(path, skip_invalid=True)
    assert [(s.line, s.field, s.reason) for s in report.skipped] == [
        (2, "prompt", "empty prompt"),
        (3, "prompt", "missing field"),
    ]
    path = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "a"}])
    with pytest.raises(DataError) as info:
        load_sft(path)
    assert (info.value.line, info.value.field) == (2, "response")


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_preferences(missing)
    with pytest.raises(FileNotFoundError, match="data/x.jsonl"):  # looks like a path, not a hub id
        load_preferences("data/x.jsonl")


def test_hub_id_is_loaded_lazily_with_datasets(monkeypatch):
    calls = []

    def load_dataset(name, split, **kwargs):
        calls.append((name, split, kwargs))
        if name == "someone/missing":
            raise ConnectionError("offline")
        return [HH, HH]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert len(load_preferences("someone/hh:test")) == 2
    assert len(load_preferences("someone/hh/harmless/train.jsonl.gz")) == 2
    assert calls == [
        ("someone/hh", "test", {}),
        ("someone/hh", "train", {"data_files": "harmless/train.jsonl.gz"}),
    ]
    with pytest.raises(FileNotFoundError) as info:
        load_preferences("someone/missing")
    message = str(info.value)
    assert "no such local file" in message and "load_dataset('someone/missing'" in message
