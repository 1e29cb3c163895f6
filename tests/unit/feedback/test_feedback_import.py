"""`annotate import`: summarize-from-feedback and TRL comparisons become document/pair items with their
original labels (relabel or control), all or nothing, keyed so that a second import adds nothing; the
original labels never reach annotators; the stats compare our labels with them (numbers by hand)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from rlhfkit.cli import main
from rlhfkit.data import DataError
from rlhfkit.data.items import InvalidItem, ItemRecord, ResponseRecord, parse_item
from rlhfkit.data.tldr import render_query
from rlhfkit.feedback.api import create_app
from rlhfkit.feedback.imports import read_comparisons
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.views import OriginalLabel
from rlhfkit.stats import wilson_interval

POST = "First paragraph of the post.\n\nSecond paragraph,\nwith a line break."


def tldr(post_id="t3_a", s0=" She said yes.", s1=" He asked her.", choice=0, worker="w1", confidence=3):
    return {
        "info": {"id": post_id, "title": "Should I ask?", "post": POST, "subreddit": "relationships"},
        "summaries": [{"text": s0, "policy": "ref"}, {"text": s1, "policy": "sup4"}],
        "choice": choice,
        "worker": worker,
        "extra": {"confidence": confidence},
        "split": "valid1",
    }


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_tldr_rows_become_document_items_one_per_pair_with_every_label(store, tmp_path):
    rows = [
        tldr(worker="w1", choice=0, confidence=2),
        # the same pair in the other order, judged by w2, who also preferred " She said yes."
        tldr(s0=" He asked her.", s1=" She said yes.", worker="w2", choice=1, confidence=8),
        tldr(post_id="t3_b", worker="w3", choice=1, confidence=7),
    ]
    read = read_comparisons(write(tmp_path / "c.jsonl", rows))
    assert (read.format, read.rows, len(read.items)) == ("tldr", 3, 2)
    store.create_project("p", overlap=1)
    assert store.import_items("p", read.items) == (2, 0)
    first, second = store.items("p")
    assert first.document == {"text": POST, "title": "Should I ask?", "source": "r/relationships"}
    assert first.prompt == render_query(rows[0]["info"])  # what exports write and the RM trains on
    assert first.external_id.startswith("tldr:t3_a:") and second.external_id.startswith("tldr:t3_b:")
    texts = [r.text for r in first.responses]
    assert sorted(texts) == [" He asked her.", " She said yes."]
    yes = texts.index(" She said yes.")
    assert first.original.kind == "relabel" and first.original.format == "tldr"
    assert first.original.labels == (
        OriginalLabel(yes, 1 - yes, "w1", 2),
        OriginalLabel(yes, 1 - yes, "w2", 8),
    )
    assert {r.meta["policy"] for r in first.responses} == {"ref", "sup4"}
    (label,) = second.original.labels
    assert [r.text for r in second.responses][label.chosen] == " He asked her." and label.worker == "w3"


def test_reimporting_the_same_file_adds_nothing_and_the_cli_says_so(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    path = write(tmp_path / "c.jsonl", [tldr(), tldr(post_id="t3_b")])
    assert main(["annotate", "init", "--db", db]) == 0
    assert main(["annotate", "create-project", "p", "--db", db]) == 0
    command = ["annotate", "import", str(path), "--project", "p", "--db", db]
    capsys.readouterr()
    assert main(command) == 0
    assert "2 tldr comparisons -> 2 relabel items: 2 added to 'p', 0 already there" in capsys.readouterr().out
    assert main([*command, "--as", "control"]) == 0  # same keys: nothing added, nothing changed
    assert "0 added to 'p', 2 already there" in capsys.readouterr().out
    from rlhfkit.feedback.store import Store

    store = Store.open(db)
    assert [i.original.kind for i in store.items("p")] == ["relabel", "relabel"]
    store.close()


BAD_ROWS = [
    ("tldr", {**tldr(), "info": {**tldr()["info"], "post": None}}, "info.post", "missing field"),
    ("tldr", tldr(choice=2), "choice", "out of range"),
    ("tldr", {**tldr(), "summaries": [{"text": " a"}, {"policy": "x"}]}, "summaries[1].text", "missing"),
    ("tldr", {**tldr(), "info": {**tldr()["info"], "title": "a\x00b"}}, "info.title", "NUL"),
    ("tldr", tldr(s1=" a\x00b"), "summaries[1].text", "NUL"),
    ("tldr", tldr(choice=1, confidence=2), "extra.confidence", "contradicts choice"),
    ("trl", {"prompt": "q", "chosen": "a"}, "rejected", "missing field"),
    ("trl", {"prompt": "q", "chosen": "a\x00", "rejected": "b"}, "chosen", "NUL"),
    ("trl", {"prompt": "", "chosen": "a", "rejected": "b"}, "prompt", "empty prompt"),
]


@pytest.mark.parametrize(("kind", "bad", "field", "reason"), BAD_ROWS)
def test_a_bad_row_is_named_by_file_line_and_field_and_nothing_is_written(
    sqlite_store, tmp_path, kind, bad, field, reason
):
    good = tldr() if kind == "tldr" else {"prompt": "q0", "chosen": "a", "rejected": "b"}
    path = write(tmp_path / "c.jsonl", [good, "", bad])  # a blank line still counts in line numbers
    with pytest.raises(DataError) as caught:
        read_comparisons(path, format="auto")
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), 3, field)
    assert reason in caught.value.reason
    sqlite_store.create_project("p", overlap=1)
    db = str(sqlite_store.engine.url)
    assert main(["annotate", "import", str(path), "--project", "p", "--db", db]) == 2
    assert sqlite_store.items("p") == []  # the good first row was not written either


def test_format_and_kind_are_checked(tmp_path):
    path = write(tmp_path / "c.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"c.jsonl:1: field 'info': missing field"):
        read_comparisons(path, format="tldr")  # a TRL row read as TL;DR: named, not guessed
    with pytest.raises(ValueError, match="kind must be one of relabel, control"):
        read_comparisons(path, kind="gold")
    with pytest.raises(DataError, match="no records"):
        read_comparisons(write(tmp_path / "empty.jsonl", []))


def test_trl_positions_are_a_deterministic_shuffle_not_the_files_order(tmp_path):
    rows = [{"prompt": f"question {n}?", "chosen": f"good {n}", "rejected": f"bad {n}"} for n in range(40)]
    path = write(tmp_path / "c.jsonl", rows)
    first, again = read_comparisons(path, kind="control"), read_comparisons(path, kind="control")
    assert first.format == "trl" and len(first.items) == 40
    chosen = [i.original.labels[0].chosen for i in first.items]
    assert chosen == [i.original.labels[0].chosen for i in again.items]  # the same every time
    assert 10 <= chosen.count(0) <= 30  # chosen first in some items, second in others
    for n, imported in enumerate(first.items):
        label = imported.original.labels[0]
        texts = [r.text for r in imported.item.responses]
        assert (texts[label.chosen], texts[label.rejected]) == (f"good {n}", f"bad {n}")
        assert imported.original.kind == "control" and imported.item.document is None


def test_annotators_never_see_the_original_labels(sqlite_store, tmp_path):
    sqlite_store.create_project("p", overlap=1)
    sqlite_store.import_items(
        "p", read_comparisons(write(tmp_path / "t.jsonl", [tldr(worker="secret-worker-7")])).items
    )
    rows = [
        {"prompt": "q", "chosen": "right answer", "rejected": "wrong answer", "worker": "secret-worker-8"}
    ]
    sqlite_store.import_items("p", read_comparisons(write(tmp_path / "c.jsonl", rows), kind="control").items)
    client = TestClient(create_app(sqlite_store))
    ann = {"Authorization": f"Bearer {sqlite_store.add_annotator('p', 'ann')}"}
    payloads = []
    while (reply := client.post("/api/next", headers=ann)).status_code == 200:
        task = reply.json()
        payloads.append(reply.text)
        assert set(task) == {"item_id", "turns", "document", "responses", "progress"}
        assert [set(r) for r in task["responses"]] == [{"letter", "text"}] * 2
        body = {"item_id": task["item_id"], "label": "a_better", "strength": "clear"}
        assert client.post("/api/annotations", json=body, headers=ann).status_code == 200
    payloads += [client.get("/api/me", headers=ann).text, client.get("/api/my/annotations", headers=ann).text]
    assert len(payloads) == 4
    document = json.loads(payloads[0])["document"]
    assert document == {"text": POST, "title": "Should I ask?", "source": "r/relationships"}
    for text in payloads:
        for secret in ("secret-worker", "relabel", "control", "confidence", "original", "chosen", "policy"):
            assert secret not in text, (secret, text)
    # the admin's raw export keeps them, with the document, for analysis
    admin = {"Authorization": f"Bearer {sqlite_store.create_admin()}"}
    raw = client.get("/api/admin/projects/p/export?format=raw", headers=admin).text.splitlines()
    first = json.loads(raw[0])
    assert first["document"] == document and first["original"]["labels"][0]["worker"] == "secret-worker-7"
    assert json.loads(raw[1])["original"]["kind"] == "control" and "document" not in json.loads(raw[1])


def _label_all(store, who: int, answers: dict[str, str]) -> None:
    """Label every item `who` is given: `answers` maps the item's prompt to the preferred response's
    text, or to "tie" / "both_bad"."""
    while (task := store.queue.next_task(who)) is not None:
        answer = answers[task.prompt]
        if answer in ("tie", "both_bad"):
            judgement = Judgement(answer)
        else:
            letter = "AB"[task.responses.index(answer)]
            judgement = Judgement("a_better" if letter == "A" else "b_better", "clear")
        store.queue.submit(who, task.item_id, judgement)


def test_stats_agreement_with_original_labels_by_hand(store, tmp_path, capsys):
    def pair(prompt, chosen, rejected, worker=None):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "worker": worker}

    relabel = [pair("R1", "x", "x2"), pair("R1", "x", "x2"), pair("R2", "y", "y2"), pair("R3", "z", "z2")]
    control = [pair("C1", "c1", "d1"), pair("C2", "c2", "d2")]
    store.create_project("p", overlap=2)
    store.import_items("p", read_comparisons(write(tmp_path / "r.jsonl", relabel)).items)
    store.import_items("p", read_comparisons(write(tmp_path / "c.jsonl", control), kind="control").items)
    store.load_items("p", [ItemRecord("plain", (ResponseRecord("p1"), ResponseRecord("p2")), "plain")])
    ids = {name: store.authenticate(store.add_annotator("p", name)).id for name in ("ann", "bob")}
    _label_all(
        store, ids["ann"], {"R1": "x", "R2": "tie", "R3": "both_bad", "C1": "c1", "C2": "c2", "plain": "p1"}
    )
    _label_all(store, ids["bob"], {"R1": "x2", "R2": "y", "R3": "z", "C1": "c1", "C2": "d2", "plain": "p2"})

    from rlhfkit.feedback.agreement import project_stats

    stats = project_stats(store.items("p"), store.annotations("p"), store.skips("p"), 2)
    relabelled, controls = stats["original_labels"]["relabel"], stats["original_labels"]["control"]
    # R1 has two original labels (both x): ann agrees twice, bob disagrees twice. R2: ann's tie and R3:
    # ann's both-bad are counted apart; bob agrees on both. Strict: agree 2 + 1 + 1 = 4 of 4 + 2 = 6.
    assert (relabelled["items"], relabelled["items_labelled"]) == (3, 3)
    assert {k: relabelled[k] for k in ("judgements", "agree", "disagree", "ties", "both_bad")} == {
        "judgements": 8,
        "agree": 4,
        "disagree": 2,
        "ties": 1,
        "both_bad": 1,
    }
    assert relabelled["rate"] == pytest.approx(4 / 6)
    # Wilson, p = 2/3, n = 6, z = 1.96: centre (p + z^2/12) / (1 + z^2/6),
    # half-width z * sqrt(p(1-p)/6 + z^2/144) / (1 + z^2/6)
    z, p = 1.96, 2 / 3
    centre = (p + z**2 / 12) / (1 + z**2 / 6)
    half = z * (p * (1 - p) / 6 + z**2 / 144) ** 0.5 / (1 + z**2 / 6)
    assert relabelled["ci95"] == pytest.approx((centre - half, centre + half))
    assert relabelled["ci95"] == pytest.approx(wilson_interval(4, 6))
    per = relabelled["per_annotator"]
    assert (per["ann"]["agree"], per["ann"]["disagree"], per["ann"]["rate"]) == (2, 0, 1.0)
    assert (per["ann"]["ties"], per["ann"]["both_bad"]) == (1, 1)
    assert (per["bob"]["agree"], per["bob"]["disagree"], per["bob"]["rate"]) == (2, 2, 0.5)
    # controls: ann right on C1 and C2 (2/2), bob right on C1 only (1/2); overall 3/4
    assert controls["items"] == 2 and (controls["agree"], controls["disagree"]) == (3, 1)
    assert controls["per_annotator"]["ann"]["rate"] == 1.0 and controls["per_annotator"]["bob"]["rate"] == 0.5
    assert controls["per_annotator"]["bob"]["ci95"] == pytest.approx(wilson_interval(1, 2))

    # the CLI (table and --json) and the API report the same numbers
    db = store.engine.url.render_as_string(hide_password=False)
    capsys.readouterr()
    assert main(["annotate", "stats", "--project", "p", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["original_labels"] == json.loads(
        json.dumps(stats["original_labels"])
    )
    assert main(["annotate", "stats", "--project", "p", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "relabel items: 3, 3 labelled; agree with the original label: 4 of 6 (0.667" in table
    assert "not counted: 1 tie, 1 both bad" in table
    assert "control items: 2, 2 labelled; correct: 3 of 4 (0.750" in table
    admin = {"Authorization": f"Bearer {store.create_admin()}"}
    api = TestClient(create_app(store)).get("/api/admin/projects/p/stats", headers=admin).json()
    assert api["original_labels"] == json.loads(json.dumps(stats["original_labels"]))


def test_a_project_without_imported_items_reports_none(sqlite_store, seed, capsys):
    seed(sqlite_store, items=2, annotators=())
    from rlhfkit.feedback.agreement import project_stats
    from rlhfkit.feedback.cli import format_stats

    stats = project_stats(sqlite_store.items("p"), [], [], 2)
    assert stats["original_labels"]["relabel"]["items"] == 0
    assert stats["original_labels"]["control"]["rate"] is None
    assert "relabel items" not in format_stats("p", stats)


def test_document_item_records():
    record = {"responses": ["a", "b"], "document": {"title": "T", "text": "one\n\ntwo", "source": "r/x"}}
    item = parse_item(record)
    assert item.prompt == "T\n\none\n\ntwo" and item.document == record["document"]
    assert parse_item(item.to_json()) == item
    plain = parse_item({"prompt": "q", "responses": ["a", "b"]})
    assert plain.document is None and "document" not in plain.to_json()
    # an item without a document keeps the key it always had: sha1 of [prompt, texts]
    import hashlib

    blob = json.dumps(["q", ["a", "b"]], sort_keys=True)
    assert plain.key() == "sha1:" + hashlib.sha1(blob.encode()).hexdigest()[:16]
    assert (
        parse_item({**record, "prompt": "q"}).key()
        != parse_item({**record, "prompt": "q", "document": None}).key()
    )
    for document, field in (
        ({"text": "t", "body": "b"}, "document"),
        ({"title": "t"}, "document.text"),
        ({"text": "  "}, "document.text"),
        ({"text": "t", "title": 3}, "document.title"),
        ({"text": "t\x00"}, "document.text"),
        ("text", "document"),
    ):
        with pytest.raises(InvalidItem) as caught:
            parse_item({"responses": ["a", "b"], "document": document})
        assert caught.value.field == field, document


def test_loaded_document_items_reach_the_page_and_old_items_have_none(sqlite_store, tmp_path):
    sqlite_store.create_project("p", overlap=1)
    path = write(
        tmp_path / "items.jsonl",
        [
            {"id": "d", "responses": ["a", "b"], "document": {"text": "the text"}},
            {"id": "q", "prompt": "q", "responses": ["a", "b"]},
        ],
    )
    assert main(["annotate", "load", str(path), "--project", "p", "--db", str(sqlite_store.engine.url)]) == 0
    client = TestClient(create_app(sqlite_store))
    ann = {"Authorization": f"Bearer {sqlite_store.add_annotator('p', 'ann')}"}
    documents = []
    while (reply := client.post("/api/next", headers=ann)).status_code == 200:
        documents.append(reply.json()["document"])
        client.post("/api/skip", json={"item_id": reply.json()["item_id"]}, headers=ann)
    assert documents == [{"text": "the text"}, None]
    assert [i.original for i in sqlite_store.items("p")] == [None, None]
