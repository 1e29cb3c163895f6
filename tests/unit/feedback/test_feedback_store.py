"""The store and its queue, on SQLite and on PostgreSQL: overlap, slots under concurrency, idempotence."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from rlhfkit.feedback.judgements import InvalidJudgement, Judgement
from rlhfkit.feedback.store import Conflict, NotFound
from rlhfkit.feedback.tables import Assignment

A_CLEAR = Judgement("a_better", "clear")


def label_everything(store, annotator_id, judgement=A_CLEAR) -> list[int]:
    done = []
    while (task := store.queue.next_task(annotator_id)) is not None:
        _, created = store.queue.submit(annotator_id, task.item_id, judgement)
        assert created
        done.append(task.item_id)
    return done


def test_projects_annotators_and_tokens(store):
    project = store.create_project("p", "Be kind.", overlap=3)
    assert (project.name, project.guidelines, project.overlap) == ("p", "Be kind.", 3)
    with pytest.raises(Conflict):
        store.create_project("p")
    with pytest.raises(ValueError, match="overlap"):
        store.create_project("q", overlap=0)
    token = store.add_annotator("p", "ann")
    who = store.authenticate(token)
    assert (who.role, who.name, who.project_id) == ("annotator", "ann", project.id)
    with pytest.raises(Conflict):
        store.add_annotator("p", "ann")
    with pytest.raises(NotFound):
        store.add_annotator("nope", "ann")
    admin = store.create_admin()
    assert store.authenticate(admin).role == "admin"
    with pytest.raises(Conflict):
        store.create_admin()
    new_admin = store.create_admin(replace=True)
    assert store.authenticate(admin) is None and store.authenticate(new_admin).role == "admin"
    assert store.authenticate("not a token") is None
    assert store.update_project("p", guidelines="New.", overlap=1).guidelines == "New."


def test_loading_the_same_items_twice_adds_nothing(store, pair_item):
    store.create_project("p")
    assert store.load_items("p", [pair_item(n) for n in range(5)], batch=2) == (5, 0)
    assert store.load_items("p", [pair_item(n) for n in range(7)]) == (2, 5)
    items = store.items("p")
    assert [i.external_id for i in items] == [f"q{n}" for n in range(7)]
    assert [r.text for r in items[0].responses] == ["q0 r0", "q0 r1"]


def test_each_item_goes_to_overlap_annotators_never_twice_to_one(store, seed):
    ids = seed(store, items=3, overlap=2, annotators=("a", "b", "c"))
    labelled = {name: label_everything(store, ids[name]) for name in ("a", "b", "c")}
    per_item = Counter(item for done in labelled.values() for item in done)
    assert set(per_item.values()) == {2}  # each of the 3 items twice: 6 labels
    assert sum(per_item.values()) == 6
    for done in labelled.values():
        assert len(done) == len(set(done))
    progress = store.queue.progress(ids["c"])
    assert (progress.pending, progress.available, progress.total_items) == (0, 0, 3)


def test_an_annotator_keeps_their_item_until_they_answer(store, seed):
    ids = seed(store)
    first = store.queue.next_task(ids["ann"])
    again = store.queue.next_task(ids["ann"])
    assert (again.item_id, again.display_order) == (first.item_id, first.display_order)
    assert sorted(first.display_order) == [0, 1]
    assert first.responses == [f"q{first.external_id[1:]} r{p}" for p in first.display_order]


def test_resubmission_changes_nothing_and_a_different_answer_conflicts(store, seed):
    ids = seed(store)
    task = store.queue.next_task(ids["ann"])
    first = store.queue.submit(ids["ann"], task.item_id, Judgement("a_better", "clear", note=" hi "))
    assert first[1] is True
    again = store.queue.submit(ids["ann"], task.item_id, Judgement("a_better", "clear", note="hi"))
    assert again == (first[0], False)
    with pytest.raises(Conflict, match="already labelled"):
        store.queue.submit(ids["ann"], task.item_id, Judgement("b_better", "clear"))
    assert len(store.annotations("p")) == 1
    stored = store.annotations("p")[0]
    assert stored.ranking == [task.display_order[0], task.display_order[1]]  # A (left) won
    assert (stored.display_order, stored.note) == (task.display_order, "hi")


def test_items_outside_your_queue_and_invalid_judgements_are_refused(store, seed):
    ids = seed(store)
    task = store.queue.next_task(ids["ann"])
    with pytest.raises(NotFound):
        store.queue.submit(ids["bob"], task.item_id, A_CLEAR)  # bob was never given it
    with pytest.raises(InvalidJudgement, match="strength"):
        store.queue.submit(ids["ann"], task.item_id, Judgement("a_better"))
    with pytest.raises(InvalidJudgement, match="ranking"):
        store.queue.submit(ids["ann"], task.item_id, Judgement("ranking", "clear", ("A", "A")))
    assert store.annotations("p") == []


def test_skip_gives_the_slot_to_someone_else_and_is_final(store, seed):
    ids = seed(store, items=1, overlap=1, annotators=("a", "b"))
    task = store.queue.next_task(ids["a"])
    assert store.queue.next_task(ids["b"]) is None  # the only slot is held by a
    store.queue.skip(ids["a"], task.item_id)
    store.queue.skip(ids["a"], task.item_id)  # twice is once
    assert store.queue.next_task(ids["a"]) is None  # never handed back to a
    assert store.queue.next_task(ids["b"]).item_id == task.item_id
    with pytest.raises(Conflict, match="skipped"):
        store.queue.submit(ids["a"], task.item_id, A_CLEAR)
    assert [(s.item_id, s.annotator) for s in store.skips("p")] == [(task.item_id, "a")]
    assert store.queue.progress(ids["a"]).skipped == 1


def test_concurrent_annotators_never_share_a_slot(store, seed):
    names = tuple(f"w{n}" for n in range(8))
    ids = seed(store, items=6, overlap=2, annotators=names)
    errors = []
    start = threading.Barrier(len(names))

    def work(name):
        try:
            start.wait()
            label_everything(store, ids[name])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    per_item = Counter(a.item_id for a in store.annotations("p"))
    assert sorted(per_item.values()) == [2] * 6
    pairs = [(a.item_id, a.annotator) for a in store.annotations("p")]
    assert len(pairs) == len(set(pairs))
    with store.engine.connect() as connection:
        taken = connection.execute(
            select(Assignment.item_id, Assignment.slot, func.count())
            .group_by(Assignment.item_id, Assignment.slot)
            .having(func.count() > 1)
        ).all()
    assert taken == []


def test_own_annotations_are_in_display_letters(store, seed):
    ids = seed(store, items=1, k=3)
    task = store.queue.next_task(ids["ann"])
    store.queue.submit(ids["ann"], task.item_id, Judgement("ranking", "strong", ("C", "A", "B")))
    (mine,) = store.queue.own_annotations(ids["ann"])
    assert (mine["label"], mine["ranking"], mine["strength"]) == ("ranking", ("C", "A", "B"), "strong")
    assert store.queue.own_annotations(ids["bob"]) == []
    stored = store.annotations("p")[0]
    order = task.display_order
    assert stored.ranking == [order[2], order[0], order[1]]


def _race(*calls) -> list:
    """Run the calls at the same moment, one thread each; returns each one's result or raised exception."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        start.wait()
        try:
            results[i] = call()
        except Exception as err:  # noqa: BLE001 - returned to the test
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_submit_and_skip_of_one_item_at_the_same_moment_exactly_one_wins(store, seed):
    """Two tabs: one submits, the other skips the same held item. Exactly one is accepted; the other is
    refused with a Conflict; the item then has one label and a free slot only if the skip won."""
    rounds = 12
    ids = seed(store, items=rounds, overlap=1, annotators=("ann",))
    for _ in range(rounds):
        task = store.queue.next_task(ids["ann"])
        submitted, skipped = _race(
            lambda t=task: store.queue.submit(ids["ann"], t.item_id, A_CLEAR),
            lambda t=task: store.queue.skip(ids["ann"], t.item_id),
        )
        outcomes = (not isinstance(submitted, Exception), not isinstance(skipped, Exception))
        assert sorted(outcomes) == [False, True], (submitted, skipped)
        loser = skipped if outcomes[0] else submitted
        assert isinstance(loser, Conflict), loser
    labels = Counter(a.item_id for a in store.annotations("p"))
    skips = {s.item_id for s in store.skips("p")}
    assert all(n == 1 for n in labels.values())
    assert not skips & set(labels)  # nobody both labelled and skipped an item
    assert len(labels) + len(skips) == rounds


def test_parallel_next_calls_of_one_annotator_hold_one_item(store, seed):
    ids = seed(store, items=12, overlap=1, annotators=("ann",))
    for _ in range(8):
        tasks = _race(*[lambda: store.queue.next_task(ids["ann"]) for _ in range(10)])
        assert not [t for t in tasks if isinstance(t, Exception)]
        assert len({t.item_id for t in tasks}) == 1  # every call got the one item held
        store.queue.submit(ids["ann"], tasks[0].item_id, A_CLEAR)
    assert store.queue.progress(ids["ann"]).pending == 0


class _Clock:
    """A fake UTC clock that tests move by hand."""

    def __init__(self):
        from datetime import datetime

        self.now = datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self):
        return self.now

    def advance(self, **kw):
        from datetime import timedelta

        self.now += timedelta(**kw)


def test_a_claim_held_past_its_lease_goes_back_to_the_queue(store, seed):
    from datetime import timedelta

    ids = seed(store, items=1, overlap=1, annotators=("quiet", "busy"))
    clock = _Clock()
    store.queue.lease, store.queue.clock = timedelta(minutes=30), clock
    task = store.queue.next_task(ids["quiet"])
    assert store.queue.next_task(ids["busy"]) is None  # overlap 1: the only slot is held
    clock.advance(minutes=29)
    assert store.queue.next_task(ids["busy"]) is None  # still within the lease
    clock.advance(minutes=2)
    again = store.queue.next_task(ids["busy"])  # the lease ran out: the item is handed on
    assert again is not None and again.item_id == task.item_id
    with pytest.raises(Conflict, match="released"):  # the late submission is refused, clearly
        store.queue.submit(ids["quiet"], task.item_id, A_CLEAR)
    store.queue.submit(ids["busy"], task.item_id, A_CLEAR)
    assert [(a.item_id, a.annotator) for a in store.annotations("p")] == [(task.item_id, "busy")]
    store.queue.skip(ids["quiet"], task.item_id)  # skipping a released claim changes nothing
    assert store.skips("p") == []


def test_deactivation_refuses_the_token_and_releases_held_items(store, seed):
    ids = seed(store, items=2, overlap=1, annotators=("ann", "bob"))
    token = store.rotate_token("p", "ann")  # the seed's token is replaced ...
    assert store.authenticate(token).id == ids["ann"]
    task = store.queue.next_task(ids["ann"])
    assert store.set_active("p", "ann", False) == 1
    assert store.authenticate(token) is None
    with pytest.raises(NotFound):
        store.queue.next_task(ids["ann"])
    handed_on = [store.queue.next_task(ids["bob"]).item_id]
    store.queue.submit(ids["bob"], handed_on[0], A_CLEAR)
    handed_on.append(store.queue.next_task(ids["bob"]).item_id)
    assert task.item_id in handed_on  # the released item went to bob
    assert store.set_active("p", "ann", True) == 0
    assert store.authenticate(token).id == ids["ann"]
    old = token
    token = store.rotate_token("p", "ann")
    assert store.authenticate(old) is None and store.authenticate(token).id == ids["ann"]
    with pytest.raises(NotFound, match="no annotator named"):
        store.set_active("p", "nobody", False)


def test_loading_items_is_all_or_nothing(store, tmp_path):
    from rlhfkit.data import DataError
    from rlhfkit.data.items import read_items

    store.create_project("p", overlap=1)
    path = tmp_path / "items.jsonl"
    good = [json.dumps({"prompt": f"q{i}", "responses": ["a", "b"]}) for i in range(600)]
    path.write_text("\n".join(good + ['{"prompt": "q600", "responses": ["a"]}']) + "\n")
    with pytest.raises(DataError, match=r"items.jsonl:601: field .responses."):
        store.load_items("p", read_items(path))
    assert store.items("p") == []  # the 600 good items before the bad line were not written
