"""Control items and per-annotator quality: the mix rate (scripted and seeded draws), controls served to
every annotator whatever the overlap, the queue's guarantees with controls in it (SQLite and PostgreSQL),
known answers made from an annotator's labels, and control accuracy, agreement with the majority and the
flag on a constructed case computed by hand."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rlhfkit.cli import main
from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback import quality
from rlhfkit.feedback.api import create_app
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.quality import annotator_quality, majority_agreement
from rlhfkit.feedback.store import Conflict
from rlhfkit.feedback.tables import Item
from rlhfkit.feedback.views import AnnotationView, ImportedItem, ItemView, Original, OriginalLabel
from rlhfkit.stats import wilson_interval

A_CLEAR = Judgement("a_better", "clear")


class ScriptedDraws(random.Random):
    """`random()` returns the scripted draws in turn (shuffles still come from a seeded generator)."""

    def __init__(self, draws):
        super().__init__(0)
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)

    def getrandbits(self, k):  # defined, so that shuffles draw bits, not `random()` (random.Random's rule)
        return super().getrandbits(k)


def control(n: int) -> ImportedItem:
    """Control ``c<n>``: its response at position 0 is the known better one."""
    record = ItemRecord(f"control {n}?", (ResponseRecord(f"c{n} good"), ResponseRecord(f"c{n} bad")), f"c{n}")
    return ImportedItem(record, Original("control", "trl", (OriginalLabel(0, 1),)))


def project(store, pair_item, ordinary: int, controls: int, names=("ann",), **settings) -> dict[str, int]:
    store.create_project("p", overlap=settings.pop("overlap", 1), **settings)
    store.load_items("p", [pair_item(n) for n in range(ordinary)])
    store.import_items("p", [control(n) for n in range(controls)])
    return {name: store.authenticate(store.add_annotator("p", name)).id for name in names}


def serve_one(store, who) -> str | None:
    """Claim and label one item for `who`; returns its external id (None: the queue is empty)."""
    task = store.queue.next_task(who)
    if task is None:
        return None
    store.queue.submit(who, task.item_id, A_CLEAR)
    return task.external_id


def item_counts(store) -> dict[str, tuple[int, bool]]:
    with store._session() as s:
        return {i.external_id: (i.assigned, i.is_open) for i in s.scalars(select(Item))}


def test_the_mix_follows_the_draws_exactly(store, pair_item):
    """rate 0.3: a claim is a control when its draw is below 0.3 and a control is left."""
    ids = project(store, pair_item, ordinary=6, controls=3, control_rate=0.3)
    store.queue._rng = ScriptedDraws([0.1, 0.5, 0.29, 0.3, 0.9, 0.0, 0.2, 0.7, 0.6, 0.1])
    progress = store.queue.progress(ids["ann"])
    assert (progress.available, progress.total_items) == (9, 9)  # the controls count as items left
    served = [serve_one(store, ids["ann"]) for _ in range(10)]
    # 0.1 c0 | 0.5 q0 | 0.29 c1 | 0.3 q1 (not below) | 0.9 q2 | 0.0 c2 | 0.2 q3 (no control left) | 0.7 q4
    # | 0.6 q5 | 0.1: no ordinary item left, so the queue is empty (controls only go with ordinary work)
    assert served == ["c0", "q0", "c1", "q1", "q2", "c2", "q3", "q4", "q5", None]
    progress = store.queue.progress(ids["ann"])
    assert (progress.done, progress.available) == (9, 0)


def test_the_mix_rate_over_many_seeded_draws(sqlite_store, pair_item):
    """rate 0.2 over 250 claims with a seeded generator (deterministic: it cannot flake): the share of
    controls is within 0.05 of the rate (3 binomial standard deviations, sqrt(0.2 * 0.8 / 250) = 0.025)."""
    ids = project(sqlite_store, pair_item, ordinary=250, controls=250, control_rate=0.2)
    sqlite_store.queue._rng = random.Random(1234)
    served = [serve_one(sqlite_store, ids["ann"]) for _ in range(250)]
    share = sum(s.startswith("c") for s in served) / len(served)
    assert abs(share - 0.2) < 0.05, share


def test_mixed_in_controls_go_to_every_annotator_whatever_the_overlap(store, pair_item):
    ids = project(store, pair_item, ordinary=4, controls=2, names=("ann", "bob", "eve"), control_rate=1.0)
    rounds = [[serve_one(store, ids[name]) for name in ("ann", "bob", "eve")] for _ in range(4)]
    assert rounds == [["c0"] * 3, ["c1"] * 3, ["q0", "q1", "q2"], ["q3", None, None]]
    counts = item_counts(store)
    assert counts["c0"] == counts["c1"] == (0, True)  # a mixed-in control takes no slot and never closes
    assert all(counts[f"q{n}"] == (1, False) for n in range(4))  # overlap 1 for ordinary items
    labels = [(a.item_id, a.annotator) for a in store.annotations("p")]
    assert len(labels) == len(set(labels)) == 10


def test_at_rate_zero_controls_are_ordinary_items(store, pair_item):
    ids = project(store, pair_item, ordinary=1, controls=2, names=("ann", "bob"))
    served = [serve_one(store, ids[name]) for name in ("ann", "bob", "ann", "bob")]
    assert served == ["q0", "c0", "c1", None]  # each to one annotator (overlap 1), in load order


def test_the_queue_keeps_its_guarantees_with_controls(store, pair_item):
    """One item at a time, skips and expired leases leave a control's counts alone, nobody gets a
    control twice, and a late label on a released control is refused."""
    ids = project(store, pair_item, ordinary=3, controls=2, names=("ann", "bob"), control_rate=1.0)
    now = [datetime(2026, 1, 1)]
    store.queue.clock = lambda: now[0]
    held = store.queue.next_task(ids["ann"])
    assert held.external_id == "c0"
    assert [store.queue.next_task(ids["ann"]).item_id for _ in range(3)] == [held.item_id] * 3
    store.queue.skip(ids["ann"], held.item_id)
    assert store.queue.next_task(ids["ann"]).external_id == "c1"  # c0 never comes back to ann
    now[0] += timedelta(hours=2)  # ann's claim on c1 outlives the lease
    assert store.queue.next_task(ids["bob"]).external_id == "c0"  # and bob's claim releases it
    with pytest.raises(Conflict, match="released"):
        store.queue.submit(ids["ann"], store.items("p")[4].id, A_CLEAR)
    assert item_counts(store)["c0"] == item_counts(store)["c1"] == (0, True)
    assert store.queue.next_task(ids["ann"]).external_id == "q0"  # no control left for ann
    assert store.annotations("p") == []
    assert sorted((s.annotator, s.item_id) for s in store.skips("p")) == [("ann", store.items("p")[3].id)]


def test_a_control_looks_like_any_other_item_to_the_annotator(sqlite_store, pair_item):
    project(sqlite_store, pair_item, ordinary=1, controls=1, names=(), control_rate=0.5)
    token = sqlite_store.add_annotator("p", "ann")
    sqlite_store.queue._rng = ScriptedDraws([0.1, 0.9])
    client = TestClient(create_app(sqlite_store))
    headers = {"Authorization": f"Bearer {token}"}
    replies = []
    for _ in range(2):
        reply = client.post("/api/next", headers=headers)
        replies.append(reply)
        task = reply.json()
        body = {"item_id": task["item_id"], "label": "a_better", "strength": "clear"}
        assert client.post("/api/annotations", json=body, headers=headers).status_code == 200
    shown_control, shown_ordinary = (r.json() for r in replies)
    assert shown_control["turns"][0]["content"] == "control 0?"
    assert shown_control.keys() == shown_ordinary.keys()
    assert shown_control["progress"].keys() == shown_ordinary["progress"].keys()
    # "left" dropped by one for each label, control or not: 2 left, then 1
    assert [r.json()["progress"]["available"] + r.json()["progress"]["pending"] for r in replies] == [2, 1]
    for secret in ("control", "original", "kind", "trl", "chosen"):
        assert secret not in replies[0].text.replace("control 0?", "")
    same = {k: v for k, v in replies[0].headers.items() if k != "content-length"}
    assert same == {k: v for k, v in replies[1].headers.items() if k != "content-length"}


def test_an_annotators_labels_become_known_answers(store, pair_item, capsys):
    """`annotate controls --from gold`: gold's strict preferences become the known answers; ties are
    left out and counted; a second run changes nothing; gold is never checked against themselves."""
    store.create_project("p", overlap=1)
    store.load_items("p", [pair_item(0), pair_item(1), pair_item(2, k=3), pair_item(3)])
    ids = {name: store.authenticate(store.add_annotator("p", name)).id for name in ("gold", "bob")}
    store.queue._rng = random.Random(0)
    answers = {
        "q0": Judgement("b_better", "strong"),
        "q1": Judgement("tie"),
        "q2": Judgement("ranking", "clear", ("C", "A", "B")),
    }
    shown = {}
    for _ in range(3):
        task = store.queue.next_task(ids["gold"])
        shown[task.external_id] = task.display_order
        store.queue.submit(ids["gold"], task.item_id, answers[task.external_id])
    db = store.engine.url.render_as_string(hide_password=False)
    capsys.readouterr()
    assert main(["annotate", "controls", "--db", db, "--project", "p", "--from", "gold"]) == 0
    out = capsys.readouterr().out
    assert "2 items made controls, 0 already were" in out and "1 not a strict preference" in out
    by_key = {i.external_id: i for i in store.items("p")}
    # q0: B (shown at the right) won: the position shown second beat the one shown first
    left, right = shown["q0"]
    assert by_key["q0"].original == Original("control", "annotator", (OriginalLabel(right, left, "gold"),))
    # q2: C, A, B best first: every pair of the ranking is a known answer
    a, b, c = shown["q2"]
    expected = {(c, a), (c, b), (a, b)}
    assert {(x.chosen, x.rejected) for x in by_key["q2"].original.labels} == expected
    assert by_key["q1"].original is None and by_key["q3"].original is None
    assert main(["annotate", "controls", "--db", db, "--project", "p", "--from", "gold"]) == 0
    assert "0 items made controls, 2 already were" in capsys.readouterr().out
    assert main(["annotate", "controls", "--db", db, "--project", "p", "--from", "nobody"]) == 2
    assert "no annotator named 'nobody'" in capsys.readouterr().err

    # mixed in, the new controls go to bob although gold already filled their one slot
    assert main(["annotate", "create-project", "p", "--update", "--db", db, "--control-rate", "1"]) == 0
    assert "control rate 1, min control accuracy none" in capsys.readouterr().out
    served = []
    while (task := store.queue.next_task(ids["bob"])) is not None:
        served.append(task.external_id)
        store.queue.submit(
            ids["bob"],
            task.item_id,
            A_CLEAR if task.external_id != "q2" else Judgement("ranking", "clear", ("A", "B", "C")),
        )
    assert served == ["q0", "q2", "q3"]  # the two controls, then the one ordinary item left
    rows = quality.project_report(store, "p")["quality"]["annotators"]
    assert rows["gold"]["control"]["judgements"] == 0  # not checked against their own answers
    assert rows["bob"]["control"]["judgements"] == 1 + 3


# --- quality on a constructed case ---------------------------------------------------------------------


def _view(id_, k, original=None) -> ItemView:
    return ItemView(id_, f"i{id_}", "p", [ResponseRecord(f"r{n}") for n in range(k)], None, None, original)


KNOWN = Original("control", "trl", (OriginalLabel(0, 1),))  # position 0 is the better one
ITEMS = [_view(1, 2, KNOWN), _view(2, 2, KNOWN), _view(3, 2, KNOWN), _view(4, 2), _view(5, 3)]


def _label(n, item, who, label, ranking, order=None, ms=None) -> AnnotationView:
    order = order or list(range(len(ranking or [0, 1])))
    return AnnotationView(
        n, item, who, label, ranking, order, "clear" if ranking else None, "", datetime(2026, 1, 1), ms
    )


ANNOTATIONS = [
    # controls C1-C3 (items 1-3): ann right, right, tie; bob right, wrong, wrong
    _label(1, 1, "ann", "a_better", [0, 1], ms=3000),
    _label(2, 2, "ann", "a_better", [0, 1], ms=1000),
    _label(3, 3, "ann", "tie", None, [0, 1], ms=2000),
    _label(4, 1, "bob", "a_better", [0, 1], ms=4000),
    _label(5, 2, "bob", "b_better", [1, 0]),
    _label(6, 3, "bob", "b_better", [1, 0]),
    # M1 (item 4): all three prefer position 0 (ann was shown it on the right)
    _label(7, 4, "ann", "b_better", [0, 1], order=[1, 0], ms=6000),
    _label(8, 4, "bob", "a_better", [0, 1]),
    _label(9, 4, "eve", "a_better", [0, 1], ms=500),
    # M2 (item 5, K = 3): ann 0>1>2, bob 0>2>1, eve 2>1>0
    _label(10, 5, "ann", "ranking", [0, 1, 2]),
    _label(11, 5, "bob", "ranking", [0, 2, 1]),
    _label(12, 5, "eve", "ranking", [2, 1, 0]),
]


def test_agreement_with_the_majority_by_hand():
    # unit by unit, an annotator's strict value against the others' majority (an even split: no count)
    #   C1 (0,1): ann >, bob >          ann agree, bob agree
    #   C2 (0,1): ann >, bob <          ann disagree, bob disagree
    #   C3 (0,1): ann tie, bob <        ann not strict; bob vs {tie}: disagree
    #   M1 (0,1): all >                 ann, bob, eve agree
    #   M2 (0,1): ann >, bob >, eve <   ann vs {>, <} split, bob split, eve vs {>, >}: disagree
    #   M2 (0,2): ann >, bob >, eve <   the same: eve disagrees
    #   M2 (1,2): ann >, bob <, eve <   ann vs {<, <}: disagree; bob vs {>, <} split; eve split
    # ann 2 of 4, bob 2 of 4, eve 1 of 3
    assert majority_agreement(ITEMS, ANNOTATIONS) == {
        "ann": {"agree": 2, "judgements": 4, "rate": 0.5},
        "bob": {"agree": 2, "judgements": 4, "rate": 0.5},
        "eve": {"agree": 1, "judgements": 3, "rate": pytest.approx(1 / 3)},
    }


def test_control_accuracy_speed_bias_and_the_flag_by_hand(monkeypatch):
    people = [("ann", True), ("bob", True), ("eve", False), ("zoe", True)]
    rows = annotator_quality(ITEMS, ANNOTATIONS, [], people, min_control_accuracy=0.5)
    # control accuracy, a tie counting as a miss: ann 2 of 3 (C1, C2 right; C3 tie), bob 1 of 3
    assert {k: rows["ann"]["control"][k] for k in ("correct", "judgements")} == {
        "correct": 2,
        "judgements": 3,
    }
    assert rows["ann"]["control"]["accuracy"] == pytest.approx(2 / 3)
    assert rows["bob"]["control"]["accuracy"] == pytest.approx(1 / 3)
    assert rows["bob"]["control"]["ci95"] == pytest.approx(wilson_interval(1, 3))
    assert rows["eve"]["control"] == {"correct": 0, "judgements": 0, "accuracy": None, "ci95": None}
    # median seconds: ann 3, 1, 2, 6 -> 2.5; bob 4 (the others unmeasured); eve 0.5; zoe none
    assert [rows[w]["median_seconds"] for w in ("ann", "bob", "eve", "zoe")] == [2.5, 4.0, 0.5, None]
    # position bias: ann's strict pairs C1 (left won), C2 (left won), M1 (position 0 shown right: left
    # lost), M2 x3 (shown 0, 1, 2: left won each) -> 5 of 6
    assert rows["ann"]["position_bias"] == {"left_wins": 5, "judgements": 6, "rate": pytest.approx(5 / 6)}
    assert (rows["eve"]["active"], rows["zoe"]["labels"], rows["ann"]["labels"]) == (False, 0, 5)
    # fewer than MIN_CONTROL_JUDGEMENTS (5) control judgements: nobody is flagged yet
    assert not any(row["flagged"] for row in rows.values())
    monkeypatch.setattr(quality, "MIN_CONTROL_JUDGEMENTS", 3)
    rows = annotator_quality(ITEMS, ANNOTATIONS, [], people, min_control_accuracy=0.5)
    assert [w for w, row in rows.items() if row["flagged"]] == ["bob"]  # 1/3 < 0.5 <= 2/3
    rows = annotator_quality(ITEMS, ANNOTATIONS, [], people, min_control_accuracy=0.7)
    assert [w for w, row in rows.items() if row["flagged"]] == ["ann", "bob"]
    rows = annotator_quality(ITEMS, ANNOTATIONS, [], people, min_control_accuracy=None)
    assert not any(row["flagged"] for row in rows.values())


def test_stats_show_quality_and_export_leaves_flagged_labels_out(
    store, pair_item, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(quality, "MIN_CONTROL_JUDGEMENTS", 2)
    ids = project(store, pair_item, ordinary=2, controls=2, names=("ann", "bob"), overlap=2)
    db = store.engine.url.render_as_string(hide_password=False)
    assert (
        main(["annotate", "create-project", "p", "--update", "--db", db, "--min-control-accuracy", "0.6"])
        == 0
    )
    for name, right in (("ann", True), ("bob", False)):
        while (task := store.queue.next_task(ids[name])) is not None:
            good = task.external_id.startswith("q") or (task.responses[0].endswith("good") == right)
            store.queue.submit(ids[name], task.item_id, A_CLEAR if good else Judgement("b_better", "clear"))
    capsys.readouterr()
    assert main(["annotate", "stats", "--db", db, "--project", "p"]) == 0
    table = capsys.readouterr().out
    assert "flagged below 0.60 control accuracy with >= 2 control judgements" in table
    bob_line = next(line for line in table.splitlines() if line.startswith("bob") and "FLAGGED" in line)
    assert "0.000 of 2" in bob_line
    assert main(["annotate", "stats", "--db", db, "--project", "p", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["quality"]
    assert report["flagged"] == ["bob"] and report["annotators"]["ann"]["control"]["accuracy"] == 1.0

    out = tmp_path / "raw.jsonl"
    assert (
        main(["annotate", "export", "--db", db, "--project", "p", "--format", "raw", "--output", str(out)])
        == 0
    )
    assert "flagged annotators bob; --exclude-flagged leaves their labels out" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 8
    command = ["annotate", "export", "--db", db, "--project", "p", "--output", str(out), "--exclude-flagged"]
    assert main([*command, "--format", "raw"]) == 0
    assert "left out 4 labels of 1 flagged annotators (bob)" in capsys.readouterr().out
    assert {json.loads(line)["annotator"] for line in out.read_text().splitlines()} == {"ann"}
    assert main([*command, "--format", "trl"]) == 0
    assert "left out 4 labels" in capsys.readouterr().out and len(out.read_text().splitlines()) == 4


def test_settings_are_checked(store):
    with pytest.raises(ValueError, match="control rate is a share between 0 and 1"):
        store.create_project("p", control_rate=1.5)
    with pytest.raises(ValueError, match="minimum control accuracy"):
        store.create_project("p", min_control_accuracy=True)
    created = store.create_project("p", control_rate=0.1, min_control_accuracy=0.7)
    assert (created.control_rate, created.min_control_accuracy) == (0.1, 0.7)
    assert store.update_project("p", overlap=2).min_control_accuracy == 0.7  # left as it was
    assert store.update_project("p", min_control_accuracy=None).min_control_accuracy is None
    with pytest.raises(ValueError, match="control rate"):
        store.update_project("p", control_rate=float("nan"))
