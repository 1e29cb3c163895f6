"""ROUGE-L against the human references of summarize-from-feedback posts, worked out by hand: the score,
the references matched to the held-out prompts by post id, prompts without one left out and counted, no
ROUGE-L for other data, and the table lines."""

from __future__ import annotations

import json

import pytest

from rlhfkit.data.split import DataConfig
from rlhfkit.eval.evaluate import format_table
from rlhfkit.eval.rouge import human_references, mean_words, rouge_l, rouge_l_table

REF = "the cat sat on the mat"


def test_rouge_l_by_hand():
    # LCS of [the cat sat on the mat] and [the cat lay on a mat] is [the cat on mat]: P = R = 4/6
    assert rouge_l(REF, "the cat lay on a mat") == pytest.approx(2 / 3)
    # stemmed and lower-cased: [cat sit] against [the cat sit]: R = 2/2, P = 2/3, F1 = 2PR/(P+R) = 0.8
    assert rouge_l("Cats sitting", "the cat sits.") == pytest.approx(0.8)
    assert rouge_l(REF, REF) == 1.0
    assert rouge_l(REF, "") == 0.0
    assert rouge_l(REF, "dogs bark") == 0.0


def test_mean_words():
    assert mean_words([" one two", "three", ""]) == 1.0
    assert mean_words([]) == 0.0


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return DataConfig(path=str(path), format="tldr")


def test_references_are_matched_to_the_held_out_posts(tmp_path, tldr_row):
    data = _write(
        tmp_path / "tldr.jsonl",
        [
            tldr_row("p1", [(" a model summary", "sup1"), (" another", "sup2")]),
            tldr_row("p1", [(" a model summary", "sup1"), (" ref one", "ref")], worker="W2"),
            tldr_row("p1", [(" another", "sup2"), (" ref one, again", "ref")]),  # the first ref counts
            tldr_row("p2", [(" a model summary", "sup1"), (" another", "sup2")]),
            tldr_row("p3", [(" ref three", "ref"), (" another", "sup2")], choice=1),
            tldr_row("p4", [(" ref four", "ref"), (" another", "sup2")]),  # not held out
        ],
    )
    assert human_references(data, ["p1", "p2", "p3"]) == {"p1": " ref one", "p3": " ref three"}


def test_a_file_without_references_gives_none_and_other_data_no_rouge(tmp_path, tldr_row):
    data = _write(tmp_path / "tldr.jsonl", [tldr_row("p1", [(" a", "sup1"), (" b", "sup2")])])
    assert human_references(data, ["p1"]) == {}
    # prompts without a post id (TRL, HH, prompt files) are not summaries of posts: not even read
    assert human_references(DataConfig(path=str(tmp_path / "absent.jsonl")), [None, None]) is None


def test_rouge_table_by_hand():
    groups = ["p1", "p2", "p3"]
    references = {"p1": REF, "p3": "a dog barked"}  # p2 has none
    responses = {  # 2 samples per prompt, prompt-major
        "sft": [REF, "the cat lay on a mat", "x", "y", "a dog barked", "nothing"],
        "ppo": ["the cat lay on a mat", "dog", REF, REF, "a dog barked loudly", "a dog barked"],
    }
    table = rouge_l_table(groups, responses, references, "sft", samples_per_prompt=2, n_boot=500)
    # sft: p1 (1 + 2/3) / 2 = 5/6, p3 (1 + 0) / 2 = 1/2; mean 2/3
    sft = table["sft"]
    assert sft["rouge_l"] == pytest.approx(2 / 3)
    assert sft["n_rouge_prompts"] == 2  # p2 left out, although ppo copies the p1 reference there
    assert 1 / 2 <= sft["rouge_l_low"] <= sft["rouge_l"] <= sft["rouge_l_high"] <= 5 / 6
    assert "rouge_l_diff" not in sft  # the baseline
    # ppo: p1 (2/3 + 0) / 2 = 1/3; p3: "a dog barked loudly" P = 3/4, R = 1, F1 = 6/7, so (6/7 + 1) / 2
    # = 13/14; mean (1/3 + 13/14) / 2 = 53/84. Paired: p1 1/3 - 5/6 = -1/2, p3 13/14 - 1/2 = 3/7
    ppo = table["ppo"]
    assert ppo["rouge_l"] == pytest.approx(53 / 84)
    assert ppo["rouge_l_diff"] == pytest.approx((-1 / 2 + 3 / 7) / 2)
    assert -1 / 2 <= ppo["rouge_l_diff_low"] <= ppo["rouge_l_diff"] <= ppo["rouge_l_diff_high"] <= 3 / 7


def test_rouge_table_without_references_is_none_and_counted():
    table = rouge_l_table(["p1"], {"sft": ["a"], "ppo": ["b"]}, {}, "sft")
    assert table["sft"] == {"rouge_l": None, "rouge_l_low": None, "rouge_l_high": None, "n_rouge_prompts": 0}
    assert table["ppo"]["rouge_l_diff"] is None and table["ppo"]["n_rouge_prompts"] == 0


def test_rouge_table_rejects_unpaired_responses():
    with pytest.raises(ValueError, match="3 responses for 2 prompts x 1 samples"):
        rouge_l_table(["p1", "p2"], {"sft": ["a", "b", "c"]}, {"p1": "a"}, "sft")
    with pytest.raises(ValueError, match="baseline 'base'"):
        rouge_l_table(["p1"], {"sft": ["a"]}, {"p1": "a"}, "base")


def _summary(**extra):
    row = {"score": 0.0, "kl": 0.0, "length": 9.0, "mean_words": 7.5, "judges": {"r": {"score": 0.0}}}
    return {"prompts": 3, "baseline": "sft", "judges": {"r": {}}, "policies": {"sft": {**row, **extra}}}


def test_the_table_shows_words_and_rouge_or_says_there_is_none():
    plain = format_table(_summary())
    assert "words" in plain and "7.5" in plain and "ROUGE" not in plain  # not summaries of posts
    summary = _summary(rouge_l=0.25, rouge_l_low=0.2, rouge_l_high=0.3, n_rouge_prompts=2)
    summary["references"] = {"prompts": 2, "mean_words": 12.0}
    text = format_table(summary)
    assert "2 of 3 held-out prompts have one" in text and "0.250 [0.200, 0.300]" in text
    summary = _summary(rouge_l=None, rouge_l_low=None, rouge_l_high=None, n_rouge_prompts=0)
    summary["references"] = {"prompts": 0, "mean_words": None}
    assert "no held-out prompt has a human reference summary" in format_table(summary)
