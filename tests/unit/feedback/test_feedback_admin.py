"""The admin page's API: every admin route is 401 without a token and 403 for annotators; the overview's
progress counts, revoking a token, the stats' quality block, the export leaving flagged annotators out
(and saying how many), and 422 (never 500) on bad input."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from rlhfkit.feedback import quality
from rlhfkit.feedback.api import create_app
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.tables import Item
from rlhfkit.feedback.views import ImportedItem, Original, OriginalLabel
from rlhfkit.stats import wilson_interval


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def control(n: int, pair_item) -> ImportedItem:
    record = pair_item(100 + n)  # "q<100+n> r0" is the known better response
    return ImportedItem(record, Original("control", "trl", (OriginalLabel(0, 1),)))


@pytest.fixture
def admin_app(sqlite_store, pair_item):
    """Project "team/a" (a name with a slash): 3 ordinary items and 2 controls, overlap 2, controls mixed
    in at rate 0.5, flagged below 0.5; annotators ann and bob; an empty project "b"."""
    store = sqlite_store
    store.create_project("team/a", overlap=2, control_rate=0.5, min_control_accuracy=0.5)
    store.load_items("team/a", [pair_item(n) for n in range(3)])
    store.import_items("team/a", [control(n, pair_item) for n in range(2)])
    store.create_project("b")
    tokens = {name: store.add_annotator("team/a", name) for name in ("ann", "bob")}
    tokens["admin"] = store.create_admin()
    return store, TestClient(create_app(store)), tokens


def admin_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) under /api/admin (from the app's OpenAPI schema), with "team/a" for the
    project."""
    routes = []
    for path, methods in app.openapi()["paths"].items():
        if path.startswith("/api/admin"):
            routes += [(method.upper(), path.replace("{name}", "team/a")) for method in sorted(methods)]
    return routes


def test_every_admin_route_is_401_without_a_token_and_403_for_annotators(admin_app):
    store, client, tokens = admin_app
    routes = admin_routes(client.app)
    paths = {path for _, path in routes}
    assert {"/api/admin/overview", "/api/admin/projects/team/a/annotators/revoke"} <= paths
    assert len(routes) >= 10  # the older routes too: projects, stats, export, annotators, items
    for method, path in routes:
        body = {"name": "ann"} if method == "POST" and "annotators" in path else []
        for headers in ({}, auth("wrong")):
            assert client.request(method, path, json=body, headers=headers).status_code == 401, path
        reply = client.request(method, path, json=body, headers=auth(tokens["ann"]))
        assert reply.status_code == 403 and reply.json() == {"detail": "this route is for admins"}, path
    # and nothing happened: ann's token still works, nothing was added
    assert store.authenticate(tokens["ann"]).name == "ann"
    assert [name for _, name, _ in store.annotators("team/a")] == ["ann", "bob"]


def test_the_admin_page_is_served_inert(admin_app):
    _, client, _ = admin_app
    reply = client.get("/admin")
    assert reply.status_code == 200 and "text/html" in reply.headers["content-type"]
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    assert '<script src="/static/admin.js" defer></script>' in reply.text
    assert "<script>" not in reply.text and "onclick" not in reply.text  # no inline script at all
    assert '<script src="/static/common.js" defer></script>' in reply.text
    for name in ("admin.js", "common.js"):
        script = client.get(f"/static/{name}")
        assert script.status_code == 200
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script.text, (name, sink)


def _assigned(store, item_id: int) -> int:
    with store._session() as s:
        return s.get(Item, item_id).assigned


def _label(store, who_id, right: bool):
    """Label `who`'s queue: ordinary items A; controls right or wrong."""
    while (task := store.queue.next_task(who_id)) is not None:
        if task.external_id.startswith("q10"):
            good_on_left = task.responses[0].endswith("r0")
            letter = "a_better" if good_on_left == right else "b_better"
        else:
            letter = "a_better"
        store.queue.submit(who_id, task.item_id, Judgement(letter, "clear"), duration_ms=2000)


def test_overview_stats_and_the_flagged_export(admin_app, monkeypatch):
    store, client, tokens = admin_app
    monkeypatch.setattr(quality, "MIN_CONTROL_JUDGEMENTS", 2)
    admin = auth(tokens["admin"])
    store.queue._rng.random = lambda: 0.0  # every claim that can be a control is one
    ids = {name: store.authenticate(tokens[name]).id for name in ("ann", "bob")}
    _label(store, ids["ann"], right=True)
    _label(store, ids["bob"], right=False)

    overview = client.get("/api/admin/overview", headers=admin).json()
    assert overview["formats"] == ["trl", "raw", "kto"]
    team, empty = overview["projects"]
    # 5 items (2 controls, mixed in); each annotator labelled both controls and the 3 ordinary items
    assert {k: team[k] for k in ("name", "items", "controls", "controls_mixed_in", "labels")} == {
        "name": "team/a",
        "items": 5,
        "controls": 2,
        "controls_mixed_in": True,
        "labels": 10,
    }
    assert (team["complete"], team["open"], team["annotators"], team["active_annotators"]) == (3, 0, 2, 2)
    assert (team["control_rate"], team["min_control_accuracy"], team["overlap"]) == (0.5, 0.5, 2)
    assert (empty["name"], empty["items"], empty["open"], empty["annotators"]) == ("b", 0, 0, 0)

    stats = client.get("/api/admin/projects/team/a/stats", headers=admin).json()
    rows = stats["quality"]["annotators"]
    assert {k: rows["ann"]["control"][k] for k in ("correct", "judgements", "accuracy")} == {
        "correct": 2,
        "judgements": 2,
        "accuracy": 1.0,
    }
    assert rows["ann"]["control"]["ci95"] == pytest.approx(list(wilson_interval(2, 2)))
    assert rows["bob"]["control"]["accuracy"] == 0.0 and rows["bob"]["flagged"] is True
    assert rows["ann"]["median_seconds"] == 2.0 and rows["ann"]["flagged"] is False
    assert stats["quality"]["flagged"] == ["bob"] and "pairwise_agreement" in stats

    everything = client.get("/api/admin/projects/team/a/export?format=raw", headers=admin)
    assert (
        everything.headers["x-flagged-annotators"] == "1"
        and "x-flagged-labels-left-out" not in everything.headers
    )
    assert len(everything.text.splitlines()) == 10
    kept = client.get("/api/admin/projects/team/a/export?format=raw&exclude_flagged=true", headers=admin)
    assert kept.headers["x-flagged-labels-left-out"] == "5"
    assert {json.loads(line)["annotator"] for line in kept.text.splitlines()} == {"ann"}
    trl = client.get("/api/admin/projects/team/a/export?format=trl&exclude_flagged=true", headers=admin)
    assert trl.headers["x-flagged-labels-left-out"] == "5" and len(trl.text.splitlines()) == 5


def test_revoking_a_token_stops_it_and_rotating_gives_a_new_one(admin_app):
    store, client, tokens = admin_app
    admin = auth(tokens["admin"])
    ann = auth(tokens["ann"])
    store.queue._rng.random = lambda: 0.99  # no control: an ordinary item, in a slot
    held = client.post("/api/next", headers=ann).json()["item_id"]
    assert _assigned(store, held) == 1
    reply = client.post("/api/admin/projects/team/a/annotators/revoke", json={"name": "ann"}, headers=admin)
    assert reply.status_code == 200
    assert reply.json() == {"annotator": "ann", "revoked": True, "released": 1}  # no token in the reply
    assert client.get("/api/me", headers=ann).status_code == 401
    assert _assigned(store, held) == 0  # its slot went back to the queue
    rotated = client.post(
        "/api/admin/projects/team/a/annotators/rotate-token", json={"name": "ann"}, headers=admin
    )
    new = auth(rotated.json()["token"])
    assert client.get("/api/me", headers=new).json()["annotator"] == "ann"
    assert client.get("/api/me", headers=ann).status_code == 401  # the revoked one stays dead


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/admin/projects/team/a/annotators/revoke", {"name": ""}, "name"),
        ("POST", "/api/admin/projects/team/a/annotators/revoke", {"name": "x" * 101}, "name"),
        ("POST", "/api/admin/projects/team/a/annotators/revoke", {"name": "ann", "token": "x"}, "token"),
        ("POST", "/api/admin/projects/team/a/annotators/revoke", {"name": "a\x00b"}, "name"),
        ("POST", "/api/admin/projects/team/a/annotators/revoke", [1, 2], "body"),
        ("GET", "/api/admin/projects/team/a/export?exclude_flagged=perhaps", None, "exclude_flagged"),
        ("GET", "/api/admin/projects/team/a/export?format=csv", None, "format"),
        # text no database can store (PostgreSQL refuses a NUL): 422, not a 500 from the driver
        ("GET", "/api/admin/projects/team%00/stats", None, "name"),
        ("GET", "/api/admin/projects/a%00b/export?exclude_flagged=true", None, "name"),
        ("POST", "/api/admin/projects/team%00a/annotators/revoke", {"name": "ann"}, "name"),
        ("POST", "/api/admin/projects/team%00a/annotators/rotate-token", {"name": "ann"}, "name"),
    ],
)
def test_bad_input_is_422_naming_the_field(admin_app, method, path, body, field):
    _, client, tokens = admin_app
    reply = client.request(method, path, json=body, headers=auth(tokens["admin"]))
    assert reply.status_code == 422 and field in reply.json()["detail"], reply.text


def test_unknown_projects_and_annotators_are_404(admin_app):
    _, client, tokens = admin_app
    admin = auth(tokens["admin"])
    for path in ("/api/admin/projects/nope/stats", "/api/admin/projects/nope/export?exclude_flagged=true"):
        assert client.get(path, headers=admin).status_code == 404
    for project, name in (("nope", "ann"), ("team/a", "nobody")):
        reply = client.post(
            f"/api/admin/projects/{project}/annotators/revoke", json={"name": name}, headers=admin
        )
        assert reply.status_code == 404, reply.text
