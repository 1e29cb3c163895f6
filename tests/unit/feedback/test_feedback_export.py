"""Majority-vote preference pairs, ranking expansion, tie flags, margins, atomic files, raw records."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from rlhfkit.data import load_preferences
from rlhfkit.data.items import ResponseRecord
from rlhfkit.feedback.export import majority_pairs, raw_records, write_jsonl
from rlhfkit.feedback.judgements import MARGINS
from rlhfkit.feedback.views import AnnotationView, ItemView, SkipView

PROMPT = [{"role": "user", "content": "Which is better?"}]


def item(item_id, k=2, prompt=PROMPT):
    return ItemView(
        item_id, f"q{item_id}", prompt, [ResponseRecord(f"r{i}", {"model": "m"}) for i in range(k)], None
    )


def vote(item_id, who, label, ranking=None, strength="clear", order=None):
    order = order or list(range(len(ranking) if ranking else 2))
    return AnnotationView(
        0, item_id, who, label, ranking, order, strength, "", datetime(2026, 1, 2, 3, 4, 5), 1200
    )


def test_majority_vote_decides_and_sets_the_margin():
    items = [item(1), item(2), item(3)]
    annotations = [
        # item 1: two say r1 wins (strong, slight), one says tie -> r1 over r0, margin mean(1, 1/3)
        vote(1, "x", "ranking", [1, 0], "strong"),
        vote(1, "y", "ranking", [1, 0], "slight"),
        vote(1, "z", "tie", None, None),
        # item 2: one each way -> no majority, left out
        vote(2, "x", "ranking", [0, 1]),
        vote(2, "y", "ranking", [1, 0]),
        # item 3: a single clear vote for r0
        vote(3, "x", "ranking", [0, 1], "clear"),
    ]
    pairs, report = majority_pairs(items, annotations)
    assert [(p.chosen, p.rejected) for p in pairs] == [("r1", "r0"), ("r0", "r1")]
    assert pairs[0].margin == pytest.approx((MARGINS["strong"] + MARGINS["slight"]) / 2)  # (1 + 1/3) / 2
    assert pairs[1].margin == pytest.approx(2 / 3)
    assert pairs[0].prompt == PROMPT
    assert (report.items, report.annotations, report.pairs, report.no_majority) == (3, 6, 2, 1)


def test_rankings_expand_into_every_pair():
    # ranking r2 > r0 > r1 gives (r2, r0), (r2, r1), (r0, r1), written in pair order (0,1), (0,2), (1,2)
    pairs, report = majority_pairs([item(1, k=3)], [vote(1, "x", "ranking", [2, 0, 1], "strong")])
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("r0", "r1", 1.0),
        ("r2", "r0", 1.0),
        ("r2", "r1", 1.0),
    ]
    assert report.pairs == 3


def test_ties_and_both_bad_are_left_out_unless_asked_for():
    items = [item(1), item(2)]
    annotations = [vote(1, "x", "tie", None, None), vote(2, "x", "both_bad", None, None)]
    pairs, report = majority_pairs(items, annotations)
    assert pairs == [] and (report.ties_left_out, report.both_bad_left_out) == (1, 1)
    pairs, _ = majority_pairs(items, annotations, include_ties=True)
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [("r0", "r1", 0.0), ("r1", "r0", 0.0)]
    pairs, _ = majority_pairs(items, annotations, include_ties=True, include_both_bad=True)
    assert len(pairs) == 4


def test_min_votes():
    pairs, report = majority_pairs([item(1)], [vote(1, "x", "ranking", [0, 1])], min_votes=2)
    assert pairs == [] and report.too_few_votes == 1


def test_export_reads_back_through_load_preferences(tmp_path):
    items = [item(1), item(2, prompt="\n\nHuman: hi\n\nAssistant:")]
    annotations = [vote(1, "x", "ranking", [1, 0]), vote(2, "x", "ranking", [0, 1], "strong")]
    pairs, _ = majority_pairs(items, annotations)
    path = tmp_path / "out" / "pairs.jsonl"
    assert write_jsonl(path, (p.to_dict() for p in pairs)) == 2
    assert set(json.loads(path.read_text().splitlines()[0])) == {"prompt", "chosen", "rejected", "margin"}
    loaded = load_preferences(path)
    assert list(loaded) == pairs


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [{"a": 1}])

    def broken():
        yield {"a": 2}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert path.read_text() == '{"a": 1}\n'  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]  # no temporary file left


def test_raw_records_keep_everything():
    items = [item(1)]
    annotations = [vote(1, "x", "b_better", [0, 1], "slight", order=[1, 0])]
    skips = [SkipView(1, "y", [0, 1], datetime(2026, 1, 2))]
    labelled, skipped = raw_records(items, annotations, skips)
    assert labelled == {
        "item_id": "q1",
        "prompt": PROMPT,
        "responses": ["r0", "r1"],
        "response_meta": [{"model": "m"}, {"model": "m"}],
        "annotator": "x",
        "created_at": "2026-01-02T03:04:05Z",
        "label": "b_better",
        "strength": "slight",
        "note": "",
        "ranking": [0, 1],
        "display_order": [1, 0],
        "duration_ms": 1200,
    }
    assert (skipped["label"], skipped["annotator"], skipped["ranking"]) == ("skipped", "y", None)


def test_a_pair_of_identical_responses_is_left_out_and_counted():
    same = ItemView(1, "q1", PROMPT, [ResponseRecord("same text"), ResponseRecord("same text")], None)
    votes = [vote(1, "x", "ranking", [0, 1]), vote(2, "x", "ranking", [0, 1])]
    pairs, report = majority_pairs([same, item(2)], votes)
    assert [(p.chosen, p.rejected) for p in pairs] == [("r0", "r1")]  # never chosen == rejected
    assert report.identical_left_out == 1 and report.pairs == 1
