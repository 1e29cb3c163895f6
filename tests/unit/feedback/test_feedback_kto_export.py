"""``annotate export --format kto``: thumbs by majority, Likert by one axis against two thresholds,
comparisons as chosen (desirable) and rejected (undesirable), every example left out counted; checked
by hand against a small project, and end to end (load --question, rate, export) through the CLI into
the KTO loader."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from rlhfkit.cli import main
from rlhfkit.data import load_unpaired
from rlhfkit.data.items import ResponseRecord
from rlhfkit.data.records import UnpairedExample
from rlhfkit.feedback.export_kto import kto_records
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.views import AnnotationView, ItemView

THUMBS = {"type": "thumbs"}
LIKERT = {"type": "likert", "axes": ["overall", "accuracy"], "scale": 7}
CHAT = [{"role": "user", "content": "Pick a colour."}]
T0 = datetime(2026, 1, 1)


def item(item_id: int, question, *texts: str, prompt=None) -> ItemView:
    responses = [ResponseRecord(t) for t in texts]
    return ItemView(
        item_id, f"i{item_id}", prompt or f"prompt {item_id}", responses, None, None, None, question
    )


ITEMS = [
    item(1, THUMBS, "t up"),
    item(2, THUMBS, "t even"),
    item(3, THUMBS, "t down"),
    item(4, THUMBS, "t unrated"),
    item(5, LIKERT, "l high"),
    item(6, LIKERT, "l mid"),
    item(7, LIKERT, "l low"),
    item(8, LIKERT, "l four"),
    item(9, None, "P0", "P1", prompt=CHAT),
    item(10, None, "R0", "R1", "R2"),
    item(11, None, "same-ish", "same-ish too"),
]


def vote(n: int, item_id: int, who: str, label: str = "thumbs", ranking=None, strength=None, rating=None):
    order = list(range(len(ranking))) if ranking else [0]
    return AnnotationView(n, item_id, who, label, ranking, order, strength, "", T0, None, rating)


def thumbs(n, item_id, who, value):
    return vote(n, item_id, who, rating={"thumbs": value})


def likert(n, item_id, who, overall, accuracy):
    return vote(n, item_id, who, "likert", rating={"overall": overall, "accuracy": accuracy})


ANNOTATIONS = [
    thumbs(1, 1, "ann", "up"),
    thumbs(2, 1, "bob", "up"),
    thumbs(3, 1, "eve", "down"),  # 2 up, 1 down: desirable
    thumbs(4, 2, "ann", "up"),
    thumbs(5, 2, "bob", "down"),  # 1 to 1: left out
    thumbs(6, 3, "ann", "down"),
    likert(7, 5, "ann", 6, 2),
    likert(8, 6, "ann", 4, 5),
    likert(9, 6, "bob", 5, 6),  # overall mean 4.5, accuracy 5.5
    likert(10, 7, "ann", 3, 4),
    likert(11, 8, "ann", 4, 1),
    vote(12, 9, "ann", "a_better", [1, 0], "clear"),  # P1 over P0
    vote(13, 10, "ann", "ranking", [2, 0, 1], "strong"),  # R2 > R0 > R1
    vote(14, 11, "ann", "tie"),
]


def test_the_default_rule_by_hand():
    records, report = kto_records(ITEMS, ANNOTATIONS)
    # thumbs: item 1 up (2 of 3), item 2 even (left out), item 3 down, item 4 unrated.
    # likert, axis overall, 1-7: the middle is 4, desirable >= 4.5, undesirable <= 3.5:
    #   item 5: 6 -> true; item 6: (4 + 5) / 2 = 4.5 -> true; item 7: 3 -> false; item 8: 4 -> left out.
    # comparisons: item 9 gives P1 true, P0 false; item 10's ranking R2 > R0 > R1 gives the pairs
    #   R0 > R1, R2 > R0, R2 > R1: R2 only chosen (true), R1 only rejected (false), R0 both (left out);
    #   item 11 is a tie (left out by the pairs export, counted there).
    assert records == [
        {"prompt": "prompt 1", "completion": "t up", "label": True},
        {"prompt": "prompt 3", "completion": "t down", "label": False},
        {"prompt": "prompt 5", "completion": "l high", "label": True},
        {"prompt": "prompt 6", "completion": "l mid", "label": True},
        {"prompt": "prompt 7", "completion": "l low", "label": False},
        {"prompt": CHAT, "completion": "P1", "label": True},
        {"prompt": CHAT, "completion": "P0", "label": False},
        {"prompt": "prompt 10", "completion": "R1", "label": False},
        {"prompt": "prompt 10", "completion": "R2", "label": True},
    ]
    assert (report.records, report.desirable, report.undesirable) == (9, 5, 4)
    assert (report.rated_items, report.thumbs_even_left_out, report.likert_between_left_out) == (7, 1, 1)
    assert (report.from_comparisons, report.comparison_conflicts_left_out) == (4, 1)
    assert (report.comparisons.pairs, report.comparisons.ties_left_out) == (4, 1)
    assert "thumbs even left out 1, likert between left out 1" in report.summary()
    assert "\ncomparisons: items 3, annotations 3, pairs 4, ties left out 1" in report.summary()


def test_another_axis_and_thresholds():
    records, report = kto_records(ITEMS, ANNOTATIONS, axis="accuracy", desirable=5, undesirable=3)
    likert_rows = [(r["completion"], r["label"]) for r in records if r["completion"].startswith("l ")]
    # accuracy: item 5: 2 -> false; item 6: (5 + 6) / 2 = 5.5 -> true; item 7: 4 -> left out;
    # item 8: 1 -> false
    assert likert_rows == [("l high", False), ("l mid", True), ("l four", False)]
    assert report.likert_between_left_out == 1
    _, overall = kto_records(ITEMS, ANNOTATIONS, desirable=5, undesirable=3)
    assert overall.likert_between_left_out == 2  # overall: item 6 (4.5) and item 8 (4) are in between


def test_bad_axis_or_thresholds_are_refused():
    with pytest.raises(ValueError, match="--kto-axis 'style'.*have no such axis"):
        kto_records(ITEMS, ANNOTATIONS, axis="style")
    with pytest.raises(ValueError, match="must be below the desirable one"):
        kto_records(ITEMS, ANNOTATIONS, desirable=4, undesirable=4)


def test_load_rate_and_export_kto_through_the_cli_into_the_kto_loader(tmp_path, capsys):
    from rlhfkit.feedback.store import Store

    db = f"sqlite:///{tmp_path / 'f.db'}"
    items = tmp_path / "items.jsonl"
    lines = [
        {"id": "good", "prompt": "Say hi.", "responses": ["Hi!"]},
        {"id": "bad", "prompt": [{"role": "user", "content": "Say bye."}], "responses": ["No."]},
        {"id": "meh", "prompt": "Say hm.", "responses": ["Hm."]},
    ]
    items.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["annotate", "init", "--db", db]) == 0
    assert main(["annotate", "create-project", "p", "--db", db]) == 0
    load = ["annotate", "load", str(items), "--project", "p", "--db", db]
    assert main([*load, "--axes", "overall"]) == 2  # --axes without --question likert
    assert "--axes and --scale go with --question likert" in capsys.readouterr().err
    assert main([*load, "--question", "likert", "--axes", "overall,accuracy", "--scale", "5"]) == 0
    store = Store.open(db)
    assert {i.question["scale"] for i in store.items("p")} == {5}
    ann = store.authenticate(store.add_annotator("p", "ann")).id
    scores = {"good": (5, 4), "bad": (1, 2), "meh": (3, 5)}  # on 1-5: >= 3.5 desirable, <= 2.5 not
    while (task := store.queue.next_task(ann)) is not None:
        overall, accuracy = scores[task.external_id]
        store.queue.submit(
            ann, task.item_id, Judgement(None, rating={"overall": overall, "accuracy": accuracy})
        )
    out = tmp_path / "kto.jsonl"
    capsys.readouterr()
    assert (
        main(["annotate", "export", "--project", "p", "--db", db, "--format", "kto", "--output", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "records 2, desirable 1, undesirable 1, rated items 3" in printed
    assert "likert between left out 1" in printed  # "meh", overall 3, the middle of 1-5
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [True, False]
    loaded = load_unpaired(out, format="kto")
    assert list(loaded) == [
        UnpairedExample("Say hi.", "Hi!", True),
        UnpairedExample([{"role": "user", "content": "Say bye."}], "No.", False),
    ]
    axis = ["annotate", "export", "--project", "p", "--db", db, "--format", "kto", "--output", str(out)]
    assert main([*axis, "--kto-axis", "accuracy"]) == 0
    assert [json.loads(line)["completion"] for line in out.read_text().splitlines()] == ["Hi!", "No.", "Hm."]
    store.close()


def test_the_pairs_export_counts_rating_items_it_leaves_out():
    from rlhfkit.feedback.export import majority_pairs

    pairs, report = majority_pairs(ITEMS, ANNOTATIONS)
    assert report.rating_items_left_out == 7  # items 1-3 and 5-8 have ratings; item 4 has none
    assert len(pairs) == 4 and report.items == 3  # item 9's pair and item 10's three; item 11 a tie
