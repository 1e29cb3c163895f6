"""Rating items through the API: the task carries the question, the submit route takes a rating and
refuses what does not fit with a 422 naming the field (never a 500), resubmitting the same rating is
idempotent and a different one a conflict, tokens and queues are enforced as for comparisons; and the
ratings' statistics (share up with its Wilson interval, Likert means, distributions) in the API and the
CLI's stats table."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from rlhfkit.cli import main
from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.api import create_app

THUMBS = {"type": "thumbs"}
LIKERT = {"type": "likert", "axes": ["overall", "accuracy", "coverage", "coherence"], "scale": 7}
GOOD = {"overall": 6, "accuracy": 7, "coverage": 5, "coherence": 6}


def rated(n: int, question: dict, prefix: str) -> ItemRecord:
    return ItemRecord(
        f"{prefix} prompt {n}",
        (ResponseRecord(f"{prefix} response {n}", {"model": "secret"}),),
        f"{prefix}{n}",
        {"hidden": True},
        None,
        question,
    )


@pytest.fixture
def app(sqlite_store, pair_item):
    """Project "thumbs" (3 thumbs items, overlap 2), "likert" (2 Likert items, overlap 1, one comparison
    item after them), annotators ann and bob on each, eve on "other"."""
    store = sqlite_store
    store.create_project("thumbs", overlap=2)
    store.load_items("thumbs", [rated(n, THUMBS, "t") for n in range(3)])
    store.create_project("likert", overlap=1)
    store.load_items("likert", [rated(n, LIKERT, "l") for n in range(2)] + [pair_item(9)])
    tokens = {
        f"{who}@{p}": store.add_annotator(p, who) for p in ("thumbs", "likert") for who in ("ann", "bob")
    }
    store.create_project("other")
    tokens["eve"] = store.add_annotator("other", "eve")
    tokens["admin"] = store.create_admin()
    return TestClient(create_app(store)), tokens, store


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def submit(client, token, item_id, **body):
    return client.post("/api/annotations", json={"item_id": item_id, **body}, headers=auth(token))


def test_the_task_carries_the_question_and_one_response_and_no_metadata(app):
    client, tokens, _ = app
    task = client.post("/api/next", headers=auth(tokens["ann@likert"])).json()
    assert task["question"] == LIKERT
    assert task["responses"] == [{"letter": "A", "text": "l response 0"}]
    assert "secret" not in json.dumps(task) and "hidden" not in json.dumps(task)


def test_a_thumbs_rating_is_stored_once_and_a_different_one_conflicts(app):
    client, tokens, store = app
    ann = tokens["ann@thumbs"]
    task = client.post("/api/next", headers=auth(ann)).json()
    assert task["question"] == THUMBS
    first = submit(client, ann, task["item_id"], rating={"thumbs": "up"}, note=" fine ")
    assert first.status_code == 200 and first.json()["created"] is True
    again = submit(client, ann, task["item_id"], rating={"thumbs": "up"}, note="fine")
    assert again.status_code == 200 and again.json() == {**first.json(), "created": False}
    other = submit(client, ann, task["item_id"], rating={"thumbs": "down"}, note="fine")
    assert other.status_code == 409 and "cannot be changed" in other.json()["detail"]
    (annotation,) = store.annotations("thumbs")
    assert (annotation.label, annotation.rating, annotation.note) == ("thumbs", {"thumbs": "up"}, "fine")
    mine = client.get("/api/my/annotations", headers=auth(ann)).json()
    assert mine[0]["rating"] == {"thumbs": "up"} and mine[0]["label"] == "thumbs"


def test_a_likert_rating_in_another_key_order_is_the_same_rating(app):
    client, tokens, store = app
    ann = tokens["ann@likert"]
    item_id = client.post("/api/next", headers=auth(ann)).json()["item_id"]
    assert submit(client, ann, item_id, rating=GOOD).json()["created"] is True
    backwards = dict(reversed(list(GOOD.items())))
    assert submit(client, ann, item_id, rating=backwards).json()["created"] is False
    worse = submit(client, ann, item_id, rating={**GOOD, "coverage": 4})
    assert worse.status_code == 409
    assert [a.rating for a in store.annotations("likert")] == [GOOD]


LIKERT_422 = [
    ({}, "'rating': missing"),
    ({"rating": {**GOOD, "coverage": None}}, "'rating.coverage'"),
    ({"rating": {k: v for k, v in GOOD.items() if k != "coverage"}}, "'rating.coverage': missing"),
    ({"rating": {**GOOD, "overall": 8}}, "'rating.overall': an integer from 1 to 7, got 8"),
    ({"rating": {**GOOD, "overall": 0}}, "'rating.overall'"),
    ({"rating": {**GOOD, "overall": 5.0}}, "'rating.overall'"),
    ({"rating": {**GOOD, "overall": True}}, "'rating.overall'"),
    ({"rating": {**GOOD, "overall": "5"}}, "'rating.overall'"),
    ({"rating": {**GOOD, "style": 3}}, "'rating.style': unknown key"),
    ({"rating": {"thumbs": "up"}}, "'rating.thumbs': unknown key"),
    ({"rating": GOOD, "label": "a_better"}, "'label'"),
    ({"rating": GOOD, "strength": "clear"}, "'strength'"),
    ({"rating": GOOD, "ranking": ["A"]}, "'ranking'"),
    ({"rating": ["up"]}, "rating"),
    ({"rating": "up"}, "rating"),
]
THUMBS_422 = [
    ({"rating": {"thumbs": "sideways"}}, "'rating.thumbs': 'up' or 'down', got 'sideways'"),
    ({"rating": {"thumbs": "x" * 5000}}, "got a str"),  # the input is not echoed back
    ({"rating": {"thumbs": "up", "overall": 5}}, "'rating.overall': unknown key"),
    ({"rating": {}}, "'rating.thumbs': missing"),
    ({"label": "tie"}, "'label': this item asks for a thumbs rating"),
]


@pytest.mark.parametrize(
    ("project", "body", "field"),
    [("likert", *case) for case in LIKERT_422] + [("thumbs", *case) for case in THUMBS_422],
)
def test_a_rating_that_does_not_fit_the_item_is_422_naming_the_field(app, project, body, field):
    client, tokens, store = app
    ann = tokens[f"ann@{project}"]
    item_id = client.post("/api/next", headers=auth(ann)).json()["item_id"]
    reply = submit(client, ann, item_id, **body)
    assert reply.status_code == 422, reply.text
    assert field in reply.json()["detail"] and len(reply.text) < 500
    assert store.annotations(project) == []
    good = GOOD if project == "likert" else {"thumbs": "up"}
    assert submit(client, ann, item_id, rating=good).status_code == 200  # the item is still open to rate


def test_a_comparison_item_refuses_a_rating_and_needs_a_label(app):
    client, tokens, _ = app
    ann = tokens["ann@likert"]
    for _ in range(2):  # rate the two Likert items: the comparison comes last
        item_id = client.post("/api/next", headers=auth(ann)).json()["item_id"]
        assert submit(client, ann, item_id, rating=GOOD).status_code == 200
    task = client.post("/api/next", headers=auth(ann)).json()
    assert "question" not in task and len(task["responses"]) == 2
    with_rating = submit(client, ann, task["item_id"], label="tie", rating={"thumbs": "up"})
    assert with_rating.status_code == 422 and "'rating': this item compares" in with_rating.json()["detail"]
    no_label = submit(client, ann, task["item_id"])
    assert no_label.status_code == 422 and "'label': missing" in no_label.json()["detail"]
    assert submit(client, ann, task["item_id"], label="tie").status_code == 200


def test_no_token_is_401_and_another_annotators_item_is_404(app):
    client, tokens, store = app
    item_id = client.post("/api/next", headers=auth(tokens["ann@thumbs"])).json()["item_id"]
    body = {"item_id": item_id, "rating": {"thumbs": "up"}}
    assert client.post("/api/annotations", json=body).status_code == 401
    assert client.post("/api/annotations", json=body, headers=auth("wrong")).status_code == 401
    for other in ("bob@thumbs", "eve", "ann@likert"):  # never given this item, or another project's
        reply = client.post("/api/annotations", json=body, headers=auth(tokens[other]))
        assert reply.status_code == 404 and "not in your queue" in reply.json()["detail"]
    assert client.post("/api/annotations", json=body, headers=auth(tokens["admin"])).status_code == 403
    assert store.annotations("thumbs") == []


def rate_all(client, token, ratings):
    """Rate the annotator's queue in order, one rating each (None: skip)."""
    for rating in ratings:
        item_id = client.post("/api/next", headers=auth(token)).json()["item_id"]
        if rating is None:
            client.post("/api/skip", json={"item_id": item_id}, headers=auth(token))
        else:
            assert submit(client, token, item_id, rating=rating).status_code == 200


def test_thumbs_stats_share_up_with_its_wilson_interval(app, capsys):
    client, tokens, store = app
    up, down = {"thumbs": "up"}, {"thumbs": "down"}
    rate_all(client, tokens["ann@thumbs"], [up, up, down])  # items t0 t1 t2
    rate_all(client, tokens["bob@thumbs"], [up, down])  # t0 t1 (t2 left)
    stats = client.get("/api/admin/projects/thumbs/stats", headers=auth(tokens["admin"])).json()
    (row,) = stats["ratings"]
    assert (row["name"], row["items"], row["items_rated"], row["ratings"]) == ("thumbs", 3, 3, 5)
    assert (row["up"], row["down"], row["share_up"]) == (3, 2, 0.6)
    # Wilson, z = 1.96, p = 3/5, n = 5: z^2/n = 0.76832
    #   centre = (0.6 + 3.8416 / 10) / 1.76832 = 0.98416 / 1.76832 = 0.556551
    #   half = 1.96 * sqrt(0.24 / 5 + 3.8416 / 100) / 1.76832 = 1.96 * 0.293966 / 1.76832 = 0.325831
    assert row["ci95"] == pytest.approx([0.556551 - 0.325831, 0.556551 + 0.325831], abs=1e-5)
    assert row["per_annotator"]["ann"]["share_up"] == pytest.approx(2 / 3)
    assert row["per_annotator"]["bob"]["up"] == 1
    # alpha (nominal) over t0 (up, up) and t1 (up, down): values up x3, down x1; D_e = 2*3*1 / (4*3) = 0.5;
    # D_o = (0 + 0 + 1 + 1) / 4 = 0.5; alpha = 1 - 0.5 / 0.5 = 0
    assert row["krippendorff_alpha"] == pytest.approx(0.0)
    db = store.engine.url.render_as_string(hide_password=False)
    capsys.readouterr()
    assert main(["annotate", "stats", "--project", "thumbs", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "ratings, thumbs: 3 items, 3 rated, 5 ratings" in table
    assert "thumbs up 3 of 5 (0.600, 95% Wilson CI 0.231-0.882)" in table


def test_likert_stats_mean_interval_and_distribution_per_axis(app, capsys):
    client, tokens, store = app
    low = {"overall": 2, "accuracy": 3, "coverage": 1, "coherence": 7}
    rate_all(client, tokens["ann@likert"], [GOOD, low])
    stats = client.get("/api/admin/projects/likert/stats", headers=auth(tokens["admin"])).json()
    (row,) = stats["ratings"]  # the comparison item is not a rating batch
    assert (row["name"], row["items"], row["items_rated"], row["ratings"]) == (
        "likert 1-7: overall, accuracy, coverage, coherence",
        2,
        2,
        2,
    )
    overall = row["axes"]["overall"]
    assert overall["n"] == 2 and overall["mean"] == 4.0  # (6 + 2) / 2
    assert overall["distribution"] == [0, 1, 0, 0, 0, 1, 0]  # one 2, one 6
    low_ci, high_ci = overall["ci95"]
    assert 2.0 <= low_ci < 4.0 < high_ci <= 6.0  # resampling two items: every mean lies in [2, 6]
    assert row["axes"]["coherence"]["mean"] == 6.5 and row["axes"]["coherence"]["distribution"][5:] == [1, 1]
    assert overall["krippendorff_alpha"] is None  # one rating per item: nothing to agree on
    assert row["per_annotator"]["ann"]["means"]["coverage"] == 3.0
    db = store.engine.url.render_as_string(hide_password=False)
    capsys.readouterr()
    assert main(["annotate", "stats", "--project", "likert", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "ratings, likert 1-7: overall, accuracy, coverage, coherence: 2 items, 2 rated, 2 ratings" in table
    lines = table.splitlines()
    mine = lines[lines.index("annotator            ratings  mean overall, accuracy, coverage, coherence") + 1]
    assert mine.split() == ["ann", "2", "4.00,", "5.00,", "3.00,", "6.50"]  # the annotator's mean per axis
    (line,) = [x for x in table.splitlines() if x.startswith("overall")]
    assert line.split()[:3] == ["overall", "2", "4.00"] and line.split()[4:11] == [
        "0",
        "1",
        "0",
        "0",
        "0",
        "1",
        "0",
    ]


def test_the_admin_export_writes_kto_and_refuses_an_unknown_axis(app):
    client, tokens, _ = app
    rate_all(client, tokens["ann@likert"], [GOOD, {**GOOD, "overall": 2}])
    admin = auth(tokens["admin"])
    reply = client.get("/api/admin/projects/likert/export?format=kto", headers=admin)
    assert reply.status_code == 200
    records = [json.loads(line) for line in reply.text.splitlines()]
    assert records == [
        {"prompt": "l prompt 0", "completion": "l response 0", "label": True},  # overall 6
        {"prompt": "l prompt 1", "completion": "l response 1", "label": False},  # overall 2
    ]
    by_coverage = client.get(
        "/api/admin/projects/likert/export?format=kto&kto_axis=coverage&kto_desirable=6&kto_undesirable=4",
        headers=admin,
    )
    assert by_coverage.text == ""  # coverage 5 on both: between 4 and 6, left out
    bad = client.get("/api/admin/projects/likert/export?format=kto&kto_axis=style", headers=admin)
    assert bad.status_code == 422 and "'style'" in bad.json()["detail"]


def test_a_long_unknown_axis_or_too_many_keys_is_422_without_the_input(app):
    client, tokens, _ = app
    ann = tokens["ann@likert"]
    item_id = client.post("/api/next", headers=auth(ann)).json()["item_id"]
    long_key = submit(client, ann, item_id, rating={**GOOD, "k" * 10_000: 1})
    assert long_key.status_code == 422 and "unknown key" in long_key.json()["detail"]
    assert len(long_key.text) < 500
    many = submit(client, ann, item_id, rating={f"a{n}": 1 for n in range(13)})
    assert many.status_code == 422 and many.json()["detail"].startswith("rating:")
