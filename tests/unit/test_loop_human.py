"""The human labeler: a round's pairs become items in the feedback database, and the loop waits until people
have labelled them (SQLite; the "person" answers from inside the labeler's sleep between polls)."""

from __future__ import annotations

import pytest

from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.store import Store
from rlhfkit.loop.config import HumanConfig
from rlhfkit.loop.human import HumanLabeler

PAIRS = [
    {
        "prompt": "\n\nHuman: hi\n\nAssistant:",
        "response_a": " Hello!",
        "response_b": " Go away.",
        "selection_score": 0.1,
    },
    {
        "prompt": "\n\nHuman: 2+2?\n\nAssistant:",
        "response_a": " 5",
        "response_b": " 4",
        "selection_score": 0.2,
    },
    {
        "prompt": "\n\nHuman: ok\n\nAssistant:",
        "response_a": " Fine.",
        "response_b": " Fine!",
        "selection_score": 0.3,
    },
]
# what the person thinks of each pair: a better, b better, tie
WANTED = {" Hello!": "a", " 5": "b", " Fine.": "tie"}


def person(db: str, project: str, name: str):
    """A sleep() that, the first time it is called, has ``name`` label everything in their queue."""
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > 1:
            return
        store = Store.open(db)
        annotator = store.authenticate(store.add_annotator(project, name)).id
        while (task := store.queue.next_task(annotator)) is not None:
            want = WANTED[task.responses[task.display_order.index(0)]]  # the text at position 0 is a
            a_left = task.display_order[0] == 0  # response a is shown on the left (letter A)
            if want == "tie":
                judgement = Judgement("tie")
            else:
                judgement = Judgement("a_better" if (want == "a") == a_left else "b_better", "clear")
            store.queue.submit(annotator, task.item_id, judgement)
        store.close()

    return sleep, calls


def test_pairs_go_to_the_app_and_the_loop_waits_for_the_labels(tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    said: list[str] = []
    sleep, calls = person(db, "my-run", "alice")
    labeler = HumanLabeler(HumanConfig(db=db, poll_seconds=0.5), "my-run", say=said.append, sleep=sleep)
    records = labeler.label(2, PAIRS)

    assert calls == [0.5]  # polled, slept once (alice labelled), polled again and found all done
    assert [(r["response_a"], r["label"]) for r in records] == [
        (p["response_a"], WANTED[p["response_a"]]) for p in PAIRS
    ]
    assert {r["annotator"] for r in records} == {"alice"} and {r["round"] for r in records} == {2}
    assert all(r["gold_prob_a"] is None and r["flipped"] is None for r in records)
    assert "rlhfkit annotate serve --db" in said[0] and "project 'my-run'" in said[0]
    assert said[1:] == ["[rlhfkit] round 2: 0/3 pairs labelled", "[rlhfkit] round 2: 3/3 pairs labelled"]

    store = Store.open(db)
    items = store.items("my-run")
    assert len(items) == 3 and all(i.external_id.startswith("loop:my-run:round-02:") for i in items)
    assert [r.text for r in items[0].responses] == [" Hello!", " Go away."]  # a at position 0
    store.close()

    # asking again (a resumed loop) adds no items and returns the same labels without waiting
    again = HumanLabeler(HumanConfig(db=db), "my-run", say=said.append, sleep=sleep).label(2, PAIRS)
    assert again == records and calls == [0.5]
    assert len(Store.open(db).items("my-run")) == 3


def test_waiting_stops_after_the_timeout_naming_what_is_missing(tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    cfg = HumanConfig(db=db, project="hh", timeout_seconds=0.0, overlap=2)
    labeler = HumanLabeler(cfg, "run", say=lambda _: None, sleep=lambda _: None)
    with pytest.raises(TimeoutError, match=r"round 1: 0 of 3 pairs labelled in project 'hh'"):
        labeler.label(1, PAIRS)
    assert Store.open(db).project("hh").overlap == 2  # the loop created the project with its overlap
