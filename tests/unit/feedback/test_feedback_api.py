"""The HTTP API: 401 without a valid token, 403 across roles, annotators confined to their own queue,
idempotent submissions, the admin's export and stats, and the page's security headers."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from rlhfkit.data import load_preferences
from rlhfkit.feedback.api import create_app

XSS = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


@pytest.fixture
def app(sqlite_store, seed):
    seed(sqlite_store, items=3, overlap=2, annotators=())
    sqlite_store.load_items("p", [])
    tokens = {name: sqlite_store.add_annotator("p", name) for name in ("ann", "bob")}
    tokens["admin"] = sqlite_store.create_admin()
    sqlite_store.create_project("other", overlap=1)
    tokens["other"] = sqlite_store.add_annotator("other", "eve")
    client = TestClient(create_app(sqlite_store))
    return client, tokens


def auth(token):
    return {"Authorization": f"Bearer {token}"}


ANNOTATOR_ROUTES = [
    ("GET", "/api/me", None),
    ("POST", "/api/next", None),
    ("POST", "/api/annotations", {"item_id": 1, "label": "tie"}),
    ("POST", "/api/skip", {"item_id": 1}),
    ("GET", "/api/my/annotations", None),
]
ADMIN_ROUTES = [
    ("GET", "/api/admin/projects", None),
    ("GET", "/api/admin/projects/p/stats", None),
    ("GET", "/api/admin/projects/p/export?format=trl", None),
    ("GET", "/api/admin/projects/p/export?format=raw", None),
    ("POST", "/api/admin/projects/p/annotators", {"name": "mallory"}),
    ("POST", "/api/admin/projects/p/items", []),
]


@pytest.mark.parametrize(("method", "path", "body"), ANNOTATOR_ROUTES + ADMIN_ROUTES)
def test_no_token_or_a_wrong_one_is_401(app, method, path, body):
    client, _ = app
    for headers in ({}, auth("wrong"), {"Authorization": "Basic abc"}):
        reply = client.request(method, path, json=body, headers=headers)
        assert reply.status_code == 401, (path, headers, reply.text)
        assert reply.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_annotators_cannot_reach_admin_routes(app, method, path, body):
    client, tokens = app
    reply = client.request(method, path, json=body, headers=auth(tokens["ann"]))
    assert reply.status_code == 403
    assert reply.json() == {"detail": "this route is for admins"}


@pytest.mark.parametrize(("method", "path", "body"), ANNOTATOR_ROUTES)
def test_admins_are_not_annotators(app, method, path, body):
    client, tokens = app
    assert client.request(method, path, json=body, headers=auth(tokens["admin"])).status_code == 403


def test_annotators_reach_only_their_own_queue_and_labels(app):
    client, tokens = app
    ann, bob, eve = auth(tokens["ann"]), auth(tokens["bob"]), auth(tokens["other"])
    task = client.post("/api/next", headers=ann).json()
    body = {"item_id": task["item_id"], "label": "a_better", "strength": "clear"}
    assert client.post("/api/annotations", json=body, headers=ann).status_code == 200
    # bob and eve (another project) cannot label or skip ann's item, nor see ann's label
    for other in (bob, eve):
        reply = client.post(
            "/api/annotations", json={"item_id": task["item_id"], "label": "tie"}, headers=other
        )
        assert reply.status_code == 404 and "not in your queue" in reply.json()["detail"]
        assert client.post("/api/skip", json={"item_id": task["item_id"]}, headers=other).status_code == 404
        assert client.get("/api/my/annotations", headers=other).json() == []
    assert [a["item_id"] for a in client.get("/api/my/annotations", headers=ann).json()] == [task["item_id"]]
    # eve's project has no items: her queue is empty, and she never sees project p's
    assert client.post("/api/next", headers=eve).status_code == 204
    assert client.get("/api/me", headers=eve).json()["project"]["name"] == "other"
    # unknown body fields are refused rather than ignored
    reply = client.post(
        "/api/annotations", json={"item_id": 1, "label": "tie", "annotator": "bob"}, headers=bob
    )
    assert reply.status_code == 422


def test_labelling_flow_resubmission_and_export(app):
    client, tokens = app
    ann, admin = auth(tokens["ann"]), auth(tokens["admin"])
    me = client.get("/api/me", headers=ann).json()
    assert me["annotator"] == "ann" and me["project"] == {"name": "p", "guidelines": "be kind", "overlap": 2}
    assert me["progress"] == {"done": 0, "skipped": 0, "pending": 0, "available": 3, "total_items": 3}
    labelled = []
    while (reply := client.post("/api/next", headers=ann)).status_code == 200:
        task = reply.json()
        assert [r["letter"] for r in task["responses"]] == ["A", "B"]
        assert task["turns"] == [{"role": "user", "content": task["turns"][0]["content"]}]
        body = {
            "item_id": task["item_id"],
            "label": "b_better",
            "strength": "strong",
            "note": "n",
            "duration_ms": 5,
        }
        first = client.post("/api/annotations", json=body, headers=ann)
        again = client.post("/api/annotations", json=body, headers=ann)
        assert first.status_code == again.status_code == 200
        assert first.json()["created"] is True and again.json() == {**first.json(), "created": False}
        different = client.post("/api/annotations", json={**body, "strength": "slight"}, headers=ann)
        assert different.status_code == 409
        labelled.append((task["item_id"], task["responses"][1]["text"]))
    assert reply.status_code == 204 and len(labelled) == 3
    assert client.get("/api/me", headers=ann).json()["progress"]["done"] == 3

    export = client.get("/api/admin/projects/p/export?format=trl", headers=admin)
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert sorted(r["chosen"] for r in rows) == sorted(text for _, text in labelled)  # B, the right side, won
    assert all(r["margin"] == 1.0 for r in rows)
    raw = [
        json.loads(line)
        for line in client.get("/api/admin/projects/p/export?format=raw", headers=admin).text.splitlines()
    ]
    assert len(raw) == 3 and {r["annotator"] for r in raw} == {"ann"} and raw[0]["note"] == "n"
    stats = client.get("/api/admin/projects/p/stats", headers=admin).json()
    assert stats["annotations"] == 3 and stats["position_bias"]["rate"] == 0.0  # right always won
    assert client.get("/api/admin/projects/p/export?format=xml", headers=admin).status_code == 422
    assert client.get("/api/admin/projects/nope/stats", headers=admin).status_code == 404


def test_export_file_from_the_api_loads_as_preferences(app, tmp_path):
    client, tokens = app
    ann, admin = auth(tokens["ann"]), auth(tokens["admin"])
    task = client.post("/api/next", headers=ann).json()
    body = {"item_id": task["item_id"], "label": "a_better", "strength": "clear"}
    assert client.post("/api/annotations", json=body, headers=ann).status_code == 200
    path = tmp_path / "labels.jsonl"
    path.write_text(client.get("/api/admin/projects/p/export", headers=admin).text)
    (pair,) = load_preferences(path)
    assert pair.chosen == task["responses"][0]["text"]


def test_admin_adds_annotators_and_items(app):
    client, tokens = app
    admin = auth(tokens["admin"])
    reply = client.post("/api/admin/projects/p/annotators", json={"name": "carol"}, headers=admin)
    carol = auth(reply.json()["token"])
    assert client.get("/api/me", headers=carol).json()["annotator"] == "carol"
    assert (
        client.post("/api/admin/projects/p/annotators", json={"name": "carol"}, headers=admin).status_code
        == 409
    )
    items = [{"id": "x1", "prompt": "hi", "responses": [XSS, "plain"]}]
    assert client.post("/api/admin/projects/p/items", json=items, headers=admin).json() == {
        "added": 1,
        "existing": 0,
    }
    assert client.post("/api/admin/projects/p/items", json=items, headers=admin).json() == {
        "added": 0,
        "existing": 1,
    }
    bad = client.post(
        "/api/admin/projects/p/items", json=[{"prompt": "hi", "responses": ["one"]}], headers=admin
    )
    assert bad.status_code == 422 and "item 0: field 'responses'" in bad.json()["detail"]


def test_invalid_judgements_are_422(app):
    client, tokens = app
    ann = auth(tokens["ann"])
    task = client.post("/api/next", headers=ann).json()
    for body in (
        {"label": "a_better"},
        {"label": "ranking", "strength": "clear", "ranking": ["A", "C"]},
        {"label": "meh"},
        {"label": "tie", "note": "x" * 5001},
    ):
        reply = client.post("/api/annotations", json={"item_id": task["item_id"], **body}, headers=ann)
        assert reply.status_code == 422, body


def test_the_page_is_served_with_a_strict_content_security_policy(app):
    client, _ = app
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js" defer></script>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "object-src 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/static/app.js").text
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert client.get("/api/health").json() == {"ok": True, "schema": "0003"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/skip", {"item_id": 2**31}),  # past PostgreSQL's integer
        ("/api/skip", {"item_id": 2**63}),  # past SQLite's
        ("/api/skip", {"item_id": True}),  # not read as 1
        ("/api/skip", {"item_id": 0}),
        ("/api/annotations", {"item_id": 1, "label": "tie", "note": "a\x00b"}),
        ("/api/annotations", {"item_id": 1, "label": "tie", "note": "x" * 5001}),
        ("/api/annotations", {"item_id": 1, "label": "tie", "duration_ms": True}),
    ],
)
def test_hostile_annotator_input_is_a_short_4xx_and_writes_nothing(app, path, body):
    client, tokens = app
    ann = auth(tokens["ann"])
    reply = client.post(path, json=body, headers=ann)
    assert reply.status_code == 422, reply.text
    assert len(reply.text) < 300 and "x" * 100 not in reply.text  # the input is never echoed back
    assert client.get("/api/my/annotations", headers=ann).json() == []
    assert client.get("/api/me", headers=ann).json()["progress"]["skipped"] == 0


def test_a_lone_surrogate_is_422_not_500(app):
    client, tokens = app
    ann = {**auth(tokens["ann"]), "Content-Type": "application/json"}
    task = client.post("/api/next", headers=ann).json()
    for raw in (
        b'{"item_id": %d, "label": "tie", "note": "\\ud800"}' % task["item_id"],
        b'{"item_id": %d, "label": "\\udfff"}' % task["item_id"],
    ):
        reply = client.post("/api/annotations", content=raw, headers=ann)
        assert reply.status_code == 422, reply.text
    admin = {**auth(tokens["admin"]), "Content-Type": "application/json"}
    reply = client.post("/api/admin/projects/p/annotators", content=b'{"name": "\\ud800"}', headers=admin)
    assert reply.status_code == 422
    items = b'[{"prompt": "q\\ud800", "responses": ["a", "b"]}]'
    reply = client.post("/api/admin/projects/p/items", content=items, headers=admin)
    assert reply.status_code == 422 and "prompt" in reply.text
    assert client.get("/api/my/annotations", headers=auth(tokens["ann"])).json() == []


def test_admin_input_that_cannot_be_stored_is_422(app):
    client, tokens = app
    admin = auth(tokens["admin"])
    stats = client.get("/api/admin/projects/p/stats", headers=admin).json()
    reply = client.post("/api/admin/projects/p/annotators", json={"name": "   "}, headers=admin)
    assert reply.status_code == 422 and "spaces" in reply.text
    bad = [{"prompt": "fine", "responses": ["a", "b"]}, {"prompt": "q\x00", "responses": ["a", "b"]}]
    reply = client.post("/api/admin/projects/p/items", json=bad, headers=admin)
    assert reply.status_code == 422 and "item 1" in reply.text and "NUL" in reply.text
    assert client.get("/api/admin/projects/p/stats", headers=admin).json() == stats  # nothing written


def test_bodies_over_the_limit_are_refused_before_they_are_read(sqlite_store, seed):
    seed(sqlite_store, items=1, annotators=())
    token = sqlite_store.add_annotator("p", "ann")
    client = TestClient(create_app(sqlite_store, max_body_bytes=1000))
    headers = {"Content-Type": "application/json"}
    # declared too large: refused at once, even without a token (no 401 after reading it)
    reply = client.post("/api/skip", content=b"x" * 5000, headers=headers)
    assert reply.status_code == 413 and len(reply.text) < 200
    # no Content-Length (chunked): counted as it arrives, refused past the limit
    chunks = iter([b"[" + b"1," * 400, b"1," * 400, b"1]"])
    reply = client.post("/api/skip", content=chunks, headers={**headers, **auth(token)})
    assert reply.status_code == 413
    # a body under the limit goes through as usual
    reply = client.post("/api/skip", json={"item_id": 1}, headers=auth(token))
    assert reply.status_code == 404  # not in the queue: the body was read and understood


def test_project_names_with_a_slash_reach_the_admin_routes(sqlite_store):
    sqlite_store.create_project("team/a", overlap=1)
    admin = auth(sqlite_store.create_admin())
    client = TestClient(create_app(sqlite_store))
    assert client.get("/api/admin/projects/team/a/stats", headers=admin).status_code == 200
    reply = client.post("/api/admin/projects/team/a/annotators", json={"name": "ann"}, headers=admin)
    assert reply.status_code == 200
    assert client.get("/api/admin/projects/team%2Fa/export?format=raw", headers=admin).status_code == 200


def test_the_page_and_api_work_behind_a_path_prefix(sqlite_store, seed):
    ids = seed(sqlite_store, items=1, annotators=())
    del ids
    token = sqlite_store.add_annotator("p", "ann")
    client = TestClient(create_app(sqlite_store, root_path="/annotate"))
    page = client.get("/annotate/").text
    assert '<script src="/annotate/static/app.js" defer></script>' in page
    assert '<meta name="rlhfkit-root" content="/annotate">' in page
    assert client.get("/annotate/static/app.js").status_code == 200
    # a proxy that forwards the prefix, and one that strips it
    for prefix in ("/annotate", ""):
        assert client.get(f"{prefix}/api/me", headers=auth(token)).json()["annotator"] == "ann"
    with pytest.raises(ValueError, match="root_path"):
        create_app(sqlite_store, root_path="annotate/")


def test_the_page_shows_bidi_controls_instead_of_obeying_them():
    """Right-to-left overrides in model text are shown as [U+202E] markers (run in node: the page's own
    function, cut out of app.js)."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from rlhfkit.feedback.api import STATIC

    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node to run the page's script")
    script = Path(STATIC / "app.js").read_text()
    start = script.index("const BIDI_CONTROLS")
    end = script.index("\n}\n", script.index("function visibleText")) + 3
    probe = script[start:end] + "\nprocess.stdout.write(visibleText(process.argv[1]));"
    text = "safe \u202egnp.exe\u202c and \u2066isolated\u2069 \u200f"
    shown = subprocess.run([node, "-e", probe, text], capture_output=True, text=True, check=True).stdout
    assert shown == "safe [U+202E]gnp.exe[U+202C] and [U+2066]isolated[U+2069] [U+200F]"
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", shown)


def test_a_flood_of_wrong_tokens_is_429_without_locking_out_others(sqlite_store, seed):
    from rlhfkit.feedback.api import FailedAuthLimit

    seed(sqlite_store, items=1, annotators=())
    token = sqlite_store.add_annotator("p", "ann")
    now = [0.0]
    limit = FailedAuthLimit(max_failures=5, window=60, clock=lambda: now[0])
    client = TestClient(create_app(sqlite_store, auth_limit=limit))
    replies = [client.get("/api/me", headers=auth(f"guess{i}")).status_code for i in range(8)]
    assert replies == [401] * 5 + [429] * 3
    reply = client.get("/api/me", headers=auth(token))  # the same address, even with a good token
    assert reply.status_code == 429 and int(reply.headers["retry-after"]) == 60
    assert limit.retry_after("another-address") == 0.0  # others are not affected
    now[0] = 61.0  # the failures have left the window
    assert client.get("/api/me", headers=auth(token)).status_code == 200
    assert client.get("/api/me").status_code == 401  # a missing token is not counted as a guess
    assert limit.retry_after("testclient") == 0.0


def test_admins_rotate_tokens_and_deactivate_annotators(app):
    client, tokens = app
    admin = auth(tokens["admin"])
    task = client.post("/api/next", headers=auth(tokens["ann"])).json()
    reply = client.post("/api/admin/projects/p/annotators/rotate-token", json={"name": "ann"}, headers=admin)
    new = reply.json()["token"]
    assert client.get("/api/me", headers=auth(tokens["ann"])).status_code == 401  # the old token is revoked
    assert client.get("/api/me", headers=auth(new)).status_code == 200
    reply = client.post("/api/admin/projects/p/annotators/deactivate", json={"name": "ann"}, headers=admin)
    assert reply.json() == {"annotator": "ann", "active": False, "released": 1}
    assert client.get("/api/me", headers=auth(new)).status_code == 401
    reply = client.post(
        "/api/annotations", json={"item_id": task["item_id"], "label": "tie"}, headers=auth(new)
    )
    assert reply.status_code == 401  # a deactivated annotator's late label is refused
    reply = client.post("/api/admin/projects/p/annotators/reactivate", json={"name": "ann"}, headers=admin)
    assert reply.status_code == 200 and client.get("/api/me", headers=auth(new)).status_code == 200
    reply = client.post("/api/admin/projects/p/annotators/deactivate", json={"name": "zed"}, headers=admin)
    assert reply.status_code == 404
    reply = client.post(
        "/api/admin/projects/p/annotators/deactivate", json={"name": "ann"}, headers=auth(new)
    )
    assert reply.status_code == 403
