"""summarize-from-feedback comparisons (Stiennon et al. 2020): queries, pairs, margins, SFT, by-post split."""

import copy
import functools
import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest

from rlhfkit.data import (
    DataError,
    PreferencePair,
    join_prompt_response,
    load_preferences,
    load_prompts,
    load_sft,
)
from rlhfkit.data.split import DataConfig, group_train_eval_split, load_split
from rlhfkit.data.tldr import (
    TLDRFormatError,
    confidence_margin,
    load_tldr,
    load_tldr_sft,
    render_query,
    tldr_pair,
    tldr_sft,
    truncate_words,
)


def row(post_id="t3_a", choice=0, confidence=3, worker="W1", policies=("sup4_ppo", "sup4_12b"), **info):
    """A TL;DR comparison modelled on the real rows."""
    return {
        "info": {
            "id": post_id,
            "post": info.get(
                "post", "I started dating a girl 3 weeks ago. We are different.\n\nNeed advice."
            ),
            "title": info.get("title", "Unsure if new relationship will work out"),
            "subreddit": info.get("subreddit", "relationships"),
        },
        "split": "valid2",
        "summaries": [
            {"text": " Dating a girl, unsure we are compatible.", "policy": policies[0], "note": "ok"},
            {"text": " Girl loves me, is it going to work out?", "policy": policies[1], "note": "ok"},
        ],
        "choice": choice,
        "worker": worker,
        "batch": "batch13",
        "extra": {"confidence": confidence},
    }


CNNDM = {
    "info": {
        "id": "54527cb6",
        "site": "dailymail",
        "title": "Max Clifford arrested",
        "article": "Max Clifford has been arrested.\n\nScotland Yard said a 71-year-old had been questioned.",
    },
    "split": "valid2",
    "summaries": [
        {"text": " Max Clifford arrested over further allegations.", "policy": "ref", "note": "-"},
        {"text": "Police have arrested Max Clifford.", "policy": "pretrain_6b_t.7", "note": None},
    ],
    "choice": 0,
    "worker": "M3ic",
    "batch": "batch0_cnndm",
    "extra": {"confidence": 4},
}


def write_jsonl(path, rows):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_query_is_the_papers_format():
    pair = tldr_pair(row())
    assert pair.prompt == (
        "SUBREDDIT: r/relationships\n"
        "TITLE: Unsure if new relationship will work out\n"
        "POST: I started dating a girl 3 weeks ago. We are different.\n\nNeed advice.\n"
        "TL;DR:"
    )
    assert pair.chosen == " Dating a girl, unsure we are compatible."  # kept byte for byte
    assert join_prompt_response(pair.prompt, pair.chosen) == pair.prompt + pair.chosen


def test_cnndm_query_has_the_article_and_no_subreddit():
    pair = tldr_pair(CNNDM)
    assert pair.prompt == (
        "ARTICLE: Max Clifford has been arrested.\n\nScotland Yard said a 71-year-old had been questioned."
        "\n\nTL;DR:"
    )
    assert (pair.group, pair.chosen, pair.rejected) == ("54527cb6", *(s["text"] for s in CNNDM["summaries"]))


def test_truncate_words():
    assert truncate_words("one two three", 13) == "one two three"
    assert truncate_words("one two three", 12) == "one two"  # "thre" is not a word
    assert truncate_words("one two three", 8) == "one two"  # the cut falls on a space
    assert truncate_words("one two\n\nthree", 10) == "one two"  # trailing whitespace goes too
    assert truncate_words("abcdefgh ij", 4) == "abcd"  # one long first word: cut inside it
    assert truncate_words("abc", 0) == ""


def test_long_post_is_cut_at_a_word_boundary_and_the_summary_never():
    words = [f"word{i}" for i in range(600)]  # 4.6k characters
    long = row(post=" ".join(words))
    for budget in (300, 777, 2000):
        pair = tldr_pair(long, max_query_chars=budget)
        assert len(pair.prompt) <= budget
        assert len(pair.prompt) > budget - len("word599 ")  # nothing more would fit
        assert pair.prompt.endswith("\nTL;DR:")
        post = pair.prompt.split("\nPOST: ", 1)[1].removesuffix("\nTL;DR:")
        assert post.split() == words[: len(post.split())]  # whole words, from the start
        assert pair.chosen == long["summaries"][0]["text"]
    short = tldr_pair(row(), max_query_chars=2000)
    assert "Need advice." in short.prompt  # a post that fits is not cut


def test_query_errors():
    with pytest.raises(TLDRFormatError, match="query too long") as info:
        render_query({"id": "x", "post": "p", "title": "t" * 100, "subreddit": "s"}, max_query_chars=100)
    assert info.value.field == "info.title"
    with pytest.raises(ValueError, match="max_query_chars"):
        render_query(row()["info"], max_query_chars=10)
    with pytest.raises(ValueError, match="max_query_chars"):
        load_tldr("unused.jsonl", max_query_chars=0)


@pytest.mark.parametrize(
    "choice,confidence,margin",
    [(0, 1, 1.0), (0, 2, 0.75), (0, 4, 0.25), (1, 6, 0.25), (1, 9, 1.0), (1, 5, 0.0)],
)
def test_choice_picks_chosen_and_confidence_gives_margin(choice, confidence, margin):
    r = row(choice=choice, confidence=confidence)
    texts = [s["text"] for s in r["summaries"]]
    pair = tldr_pair(r, margin_from_confidence=True)
    assert (pair.chosen, pair.rejected) == (texts[choice], texts[1 - choice])
    assert pair.margin == margin == confidence_margin(confidence)  # |confidence - 5| / 4
    assert tldr_pair(r).margin is None  # off by default
    assert pair.meta["chosen_policy"] == r["summaries"][choice]["policy"]


def test_worker_post_and_confidence_are_kept():
    pair = tldr_pair(row(post_id="t3_q", worker="Wx", confidence=2))
    assert pair.group == "t3_q"
    assert pair.meta == {
        "post_id": "t3_q",
        "worker": "Wx",
        "confidence": 2,
        "chosen_policy": "sup4_ppo",
        "rejected_policy": "sup4_12b",
    }
    assert pair.to_dict()["meta"]["worker"] == "Wx" and pair.to_dict()["group"] == "t3_q"
    assert "group" not in PreferencePair("p", "a", "b").to_dict()  # other formats unchanged
    hash(pair)  # meta takes no part in the hash


def test_empty_summary_is_kept_in_a_pair_not_as_sft_target():
    r = copy.deepcopy(CNNDM)
    r["summaries"][1]["text"] = ""  # as in some real CNN/DM rows: an empty model output that lost
    assert tldr_pair(r).rejected == ""
    r["choice"], r["extra"]["confidence"] = 1, 9
    with pytest.raises(TLDRFormatError, match="empty summary") as info:
        tldr_sft(r)
    assert info.value.field == "summaries[1].text"


def _without(r, *keys):
    r = copy.deepcopy(r)
    *parents, last = keys
    target = r
    for k in parents:
        target = target[k]
    del target[last]
    return r


def _with(r, value, *keys):
    r = copy.deepcopy(r)
    *parents, last = keys
    target = r
    for k in parents:
        target = target[k]
    target[last] = value
    return r


BAD_ROWS = [
    ("no summaries", _without(row(), "summaries"), "summaries", "missing field"),
    ("one summary", _with(row(), [{"text": " a"}], "summaries"), "summaries", "not two summaries"),
    ("summary not object", _with(row(), ["a", "b"], "summaries"), "summaries[0]", "wrong type"),
    ("summary no text", _without(row(), "summaries", 1, "text"), "summaries[1].text", "missing field"),
    ("both empty", _with(row(), [{"text": ""}, {"text": " "}], "summaries"), "summaries", "empty summaries"),
    ("no choice", _without(row(), "choice"), "choice", "missing field"),
    ("choice 2", _with(row(), 2, "choice"), "choice", "out of range"),
    ("choice -1", _with(row(), -1, "choice"), "choice", "out of range"),
    ("choice true", _with(row(), True, "choice"), "choice", "out of range"),
    ("empty post", _with(row(), "  \n ", "info", "post"), "info.post", "empty post"),
    ("no post", _without(row(), "info", "post"), "info.post", "missing field"),
    ("empty article", _with(CNNDM, "", "info", "article"), "info.article", "empty article"),
    ("no info", _without(row(), "info"), "info", "missing field"),
    ("info not object", _with(row(), "t3_a", "info"), "info", "wrong type"),
    ("no id", _without(row(), "info", "id"), "info.id", "missing field"),
    ("no title", _without(row(), "info", "title"), "info.title", "missing field"),
    ("no subreddit", _without(row(), "info", "subreddit"), "info.subreddit", "missing field"),
    ("confidence 10", row(confidence=10), "extra.confidence", "out of range"),
    ("confidence contradicts", row(choice=0, confidence=7), "extra.confidence", "contradicts choice"),
    ("worker not string", row(worker=7), "worker", "wrong type"),
]


@pytest.mark.parametrize("name,bad,field,reason", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_row_is_a_named_error(tmp_path, name, bad, field, reason):
    path = write_jsonl(tmp_path / "cmp.jsonl", [row(), row(), bad, row()])
    for load in (load_tldr, functools.partial(load_preferences, format="tldr"), load_preferences, load_sft):
        with pytest.raises(DataError) as info:
            load(path)
        err = info.value
        assert (err.path, err.line, err.field) == (str(path), 3, field)
        assert err.reason.startswith(reason)
        assert str(err).startswith(f"{path}:3: field {field!r}: {reason}")
    report = load_tldr(path, skip_invalid=True)
    assert len(report) == 3
    assert [(s.line, s.field) for s in report.skipped] == [(3, field)]


def test_missing_confidence_is_an_error_only_for_the_margin(tmp_path):
    path = write_jsonl(tmp_path / "cmp.jsonl", [row(), _without(row(), "extra")])
    assert load_tldr(path)[1].meta["confidence"] is None
    with pytest.raises(DataError, match=r"cmp.jsonl:2: field 'extra.confidence': missing field"):
        load_tldr(path, margin_from_confidence=True)


def test_skip_invalid_counts_every_bad_row(tmp_path):
    rows = [row()] + [case[1] for case in BAD_ROWS] + ["{not json", row()]
    report = load_tldr(write_jsonl(tmp_path / "mixed.jsonl", rows), skip_invalid=True)
    assert len(report) == 2
    assert [s.line for s in report.skipped] == list(range(2, 2 + len(BAD_ROWS) + 1))
    assert [s.field for s in report.skipped] == [case[2] for case in BAD_ROWS] + [None]
    assert f"2 records, {len(BAD_ROWS) + 1} skipped (" in report.summary()
    with pytest.raises(DataError, match="no valid records"):
        load_tldr(write_jsonl(tmp_path / "bad.jsonl", [BAD_ROWS[0][1]]), skip_invalid=True)


def test_auto_format_and_every_loader_read_tldr_rows(tmp_path):
    path = write_jsonl(tmp_path / "cmp.jsonl", [row("t3_a"), row("t3_b", choice=1, confidence=8), CNNDM])
    pairs = load_preferences(path)  # auto: detected from the first row's keys
    assert [p.group for p in pairs] == ["t3_a", "t3_b", "54527cb6"]
    assert pairs[1].chosen == row()["summaries"][1]["text"]
    assert [p.prompt for p in load_prompts(path)] == [p.prompt for p in pairs]
    assert [p.group for p in load_prompts(path)] == [p.group for p in pairs]
    again = write_jsonl(tmp_path / "again.jsonl", [row("t3_a"), row("t3_a", worker="W2"), row("t3_b")])
    assert [p.group for p in load_prompts(again)] == ["t3_a", "t3_b"]  # a post is one prompt
    sft = load_sft(path)
    assert [(s.prompt, s.response, s.group) for s in sft] == [(p.prompt, p.chosen, p.group) for p in pairs]
    assert load_preferences(path, format="tldr").records == pairs.records
    trl_with_info = write_jsonl(
        tmp_path / "trl.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b", "info": 1}]
    )
    assert load_preferences(trl_with_info)[0].group is None  # a TRL record with an info column stays TRL


def test_sft_preferred_and_reference(tmp_path):
    ref_row = row("t3_r", choice=1, confidence=7, policies=("sup4_ppo", "ref"))
    ref_again = row("t3_r", choice=0, confidence=2, policies=("ref", "sup4_6b"), worker="W2")
    path = write_jsonl(tmp_path / "cmp.jsonl", [row("t3_a"), ref_row, ref_again, CNNDM])
    preferred = load_tldr_sft(path)
    assert [s.response for s in preferred] == [
        row()["summaries"][0]["text"],
        row()["summaries"][1]["text"],
        row()["summaries"][0]["text"],
        CNNDM["summaries"][0]["text"],
    ]
    assert [(s.prompt, s.response) for s in preferred] == [(s.prompt, s.response) for s in load_sft(path)]
    assert preferred[0].meta["worker"] == "W1" and preferred[1].meta["policy"] == "ref"
    refs = load_tldr_sft(path, target="ref")  # one per post that has a reference; t3_a has none
    assert [(s.group, s.response, s.meta["policy"]) for s in refs] == [
        ("t3_r", row()["summaries"][1]["text"], "ref"),
        ("54527cb6", CNNDM["summaries"][0]["text"], "ref"),
    ]
    with pytest.raises(DataError, match="no row has a summary with policy 'ref'"):
        load_tldr_sft(write_jsonl(tmp_path / "noref.jsonl", [row()]), target="ref")
    with pytest.raises(ValueError, match="target"):
        load_tldr_sft(path, target="best")


def test_data_section_options_reach_every_loader(tmp_path):
    long_post = "word " * 300
    ref_row = row("t3_r", choice=1, confidence=9, policies=("sup4_ppo", "ref"), post=long_post)
    path = write_jsonl(tmp_path / "cmp.jsonl", [row("t3_a", confidence=4), ref_row])
    data = DataConfig(
        path=str(path),
        format="tldr",
        eval_fraction=0.0,
        max_query_chars=300,
        margin_from_confidence=True,
        sft_target="ref",
    )
    pairs, _ = load_split(data, functools.partial(load_preferences, format=data.format))
    assert sorted(p.margin for p in pairs) == [0.25, 1.0]  # |4 - 5| / 4 and |9 - 5| / 4
    assert all(len(p.prompt) <= 300 for p in pairs) and max(len(p.prompt) for p in pairs) > 250
    sft, _ = load_split(data, load_sft)
    assert [(s.group, s.response) for s in sft] == [("t3_r", row()["summaries"][1]["text"])]
    prompts, _ = load_split(data, load_prompts)
    assert sorted(len(p.prompt) <= 300 for p in prompts) == [True, True]
    with pytest.raises(ValueError, match="max_query_chars"):
        DataConfig(max_query_chars=10)
    with pytest.raises(ValueError, match="sft_target"):
        DataConfig(sft_target="best")


def _posts(records):
    return {r.group for r in records}


def test_group_split_keeps_posts_on_one_side_and_is_deterministic():
    pairs = [tldr_pair(row(f"t3_{i}", worker=f"W{k}")) for i in range(200) for k in range(1 + i % 3)]
    train, eval_ = group_train_eval_split(pairs, 0.2, seed=0)
    assert len(train) + len(eval_) == len(pairs)
    assert not _posts(train) & _posts(eval_)
    assert 20 <= len(_posts(eval_)) <= 60  # 20% of 200 posts in expectation
    assert group_train_eval_split(pairs, 0.2, seed=0) == (train, eval_)
    assert _posts(group_train_eval_split(pairs, 0.2, seed=1)[1]) != _posts(eval_)
    # a post's side depends on the seed and the post alone: a subset of the posts splits the same way
    subset = [p for p in pairs if p.group.endswith(("1", "7"))]
    sub_train, sub_eval = group_train_eval_split(subset, 0.2, seed=0)
    assert _posts(sub_eval) == _posts(eval_) & _posts(subset)
    # small sets: at least one post on each side
    two = [tldr_pair(row("t3_x")), tldr_pair(row("t3_y"))]
    assert [len(side) for side in group_train_eval_split(two, 0.01, seed=0)] == [1, 1]
    assert group_train_eval_split(two, 0.0, seed=0)[1] == []
    with pytest.raises(ValueError, match="eval_fraction"):
        group_train_eval_split(two, 1.0, seed=0)


def test_load_split_is_by_post_for_tldr(tmp_path):
    rows = [row(f"t3_{i}", worker=f"W{k}") for i in range(60) for k in range(1 + i % 4)]
    path = write_jsonl(tmp_path / "cmp.jsonl", rows)
    data = DataConfig(path=str(path), format="tldr", eval_fraction=0.25, split_seed=3)
    train, eval_ = load_split(data, functools.partial(load_preferences, format=data.format))
    assert len(train) + len(eval_) == len(rows)
    assert eval_ and not _posts(train) & _posts(eval_)
    assert load_split(data, functools.partial(load_preferences, format=data.format)) == (train, eval_)
    prompts_train, prompts_eval = load_split(data, load_prompts)  # every stage holds out the same posts
    assert _posts(prompts_eval) == _posts(eval_) and _posts(prompts_train) == _posts(train)
    assert len(prompts_train) == len(_posts(train))  # one prompt per post
    first, _ = load_split(replace(data, train_part="first_half"), functools.partial(load_preferences))
    second, _ = load_split(replace(data, train_part="second_half"), functools.partial(load_preferences))
    assert len(first) + len(second) == len(train) and len(first) >= (len(train) + 1) // 2
    assert not _posts(first) & _posts(second)  # proxy and judge halves share no post either
    capped, capped_eval = load_split(replace(data, max_train=5, max_eval=2), load_prompts)
    assert (len(capped), len(capped_eval)) == (5, 2)


def test_load_split_refuses_mixed_records(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [row(), {"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="mixed formats"):
        load_split(DataConfig(path=str(path)), load_prompts)


REAL = Path("/work/shared/data/tldr-comparisons")
TLDR_FILE, CNNDM_FILE = REAL / "tldr-comparisons.jsonl.gz", REAL / "cnndm-comparisons.jsonl.gz"


@pytest.mark.skipif(not TLDR_FILE.exists() or not CNNDM_FILE.exists(), reason=f"{REAL} not present")
def test_real_files():
    tldr = load_tldr(TLDR_FILE, margin_from_confidence=True)
    assert (len(tldr), len(_posts(tldr)), len({p.meta["worker"] for p in tldr})) == (1509, 861, 30)
    assert all(len(p.prompt) <= 2000 and p.prompt.startswith("SUBREDDIT: r/") for p in tldr)
    assert all(0.25 <= p.margin <= 1.0 for p in tldr)
    with gzip.open(TLDR_FILE, "rt", encoding="utf-8") as f:
        originals = [json.loads(line) for line in f]
    for pair, original in zip(tldr, originals, strict=True):
        assert pair.chosen == original["summaries"][original["choice"]]["text"]  # summaries never cut
    cnndm = load_preferences(CNNDM_FILE)
    assert (len(cnndm), len(_posts(cnndm))) == (437, 45)
    assert all(len(p.prompt) <= 2000 and p.prompt.startswith("ARTICLE: ") for p in cnndm)
    assert len(load_tldr_sft(CNNDM_FILE, target="ref")) == 45
    train, eval_ = group_train_eval_split(tldr.records, 0.1, seed=0)
    assert len(train) + len(eval_) == 1509 and not _posts(train) & _posts(eval_)
    assert 50 <= len(_posts(eval_)) <= 130  # about 86 of the 861 posts
