"""The admin page (``/admin``) in a real headless Chromium: the admin signs in with their token and sees
every project's progress and each annotator's counts, speed, agreement with the majority, control
accuracy, left picks and flag; deactivates an annotator, revokes and rotates tokens (the new token shown
once, and working), and downloads exports (the flagged annotator's labels left out, and counted). An
annotator's token cannot open the page. Payloads in project and annotator names (and in model text)
show as text and never run.

``RLHFKIT_DOCS_SCREENSHOTS=1`` also copies the page's screenshot (a project of four annotators, one
flagged) to ``docs/img/annotate-admin.png``; otherwise it stays in the test's folder. Browser fixtures
and helpers come from ``test_feedback_browser``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from test_feedback_browser import (  # noqa: F401 - the fixtures (page) and skip marks
    IMG,
    REPO,
    SCRIPT,
    page,
    pytestmark,
    screenshot_dir,
    texts_of,
)

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.quality import project_report
from rlhfkit.feedback.server import serving
from rlhfkit.feedback.store import Store
from rlhfkit.feedback.views import ImportedItem, Original, OriginalLabel

DOCS_ADMIN_SCREENSHOT = REPO / "docs" / "img" / "annotate-admin.png"
NASTY_NAME = f"mallory {IMG}"  # an annotator name an admin typed (or pasted) carelessly


def ordinary(n: int, payload: str = "") -> ItemRecord:
    return ItemRecord(
        f"Question {n}: how do I make tea?{payload}",
        (ResponseRecord(f"Boil water, steep {n} minutes.{payload}"), ResponseRecord(f"Tea is a plant {n}.")),
        f"q{n}",
    )


def control(n: int) -> ImportedItem:
    """A control whose response at position 0 (its text ends with "right") is the known answer."""
    record = ItemRecord(
        f"Control {n}: what is {n} + {n}?",
        (ResponseRecord(f"{2 * n}, right"), ResponseRecord(f"{2 * n + 1}")),
        f"c{n}",
    )
    return ImportedItem(record, Original("control", "trl", (OriginalLabel(0, 1),)))


def label_round_robin(store: Store, name: str, tokens: dict[str, str], annotators: dict) -> None:
    """Every annotator labels one item in turn until all queues are empty; each picks the better
    response (position 0) with their accuracy, and takes their seconds per label (give or take)."""
    better = {i.id: i.responses[0].text for i in store.items(name)}
    ids = {who: store.authenticate(token).id for who, token in tokens.items()}
    rng = random.Random(0)
    busy = set(ids)
    while busy:
        for who in sorted(busy):
            task = store.queue.next_task(ids[who])
            if task is None:
                busy.discard(who)
                continue
            accuracy, seconds = annotators[who]
            better_on_left = task.responses[0] == better[task.item_id]
            label = "a_better" if better_on_left == (rng.random() < accuracy) else "b_better"
            judgement = Judgement(label, rng.choice(["slight", "clear", "strong"]))
            store.queue.submit(ids[who], task.item_id, judgement, int(1000 * seconds * rng.uniform(0.6, 1.6)))


def seeded_project(
    tmp_path, name: str, annotators: dict[str, tuple[float, float]], payload: str = ""
) -> tuple:
    """A store with project `name` (overlap 2, 8 controls mixed in at 0.3, flagged below 0.7), 48 ordinary
    items, `annotators` ``{name: (accuracy, seconds per label)}`` who labelled their whole queues; returns
    ``(store, {name: token}, admin token)``."""
    store = Store.init(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.queue._rng = random.Random(7)
    store.create_project(
        name, "Prefer the helpful answer.", overlap=2, control_rate=0.3, min_control_accuracy=0.7
    )
    store.load_items(name, [ordinary(n, payload if n == 0 else "") for n in range(48)])
    store.import_items(name, [control(n) for n in range(8)])
    tokens = {who: store.add_annotator(name, who) for who in annotators}
    label_round_robin(store, name, tokens, annotators)
    return store, tokens, store.create_admin()


def sign_in(view, url: str, token: str) -> None:
    view.goto(url + "/admin")
    view.fill("#token", token)
    view.press("#token", "Enter")


def download(view) -> tuple[list[dict], str]:
    """Press Download; the records of the file the browser saved, and its suggested name."""
    with view.expect_download() as started:
        view.click("#export-form button[type=submit]")
    saved = Path(started.value.path()).read_text().splitlines()
    return [json.loads(line) for line in saved], started.value.suggested_filename


def annotator_row(view, name: str):
    return view.locator("#annotators tbody tr").filter(has=view.locator("td.name", has_text=name)).first


@pytest.fixture
def team(tmp_path):
    annotators = {"alice": (0.95, 9.0), "bob": (0.9, 14.0), "carol": (0.9, 6.5), "dan": (0.25, 2.2)}
    store, tokens, admin = seeded_project(tmp_path, "hh-helpfulness", annotators)
    with serving(store) as url:
        yield store, url, tokens, admin
    store.close()


def test_the_admin_sees_stats_acts_on_annotators_and_downloads_exports(team, page, tmp_path):  # noqa: F811
    store, url, tokens, admin = team
    expected = project_report(store, "hh-helpfulness")["quality"]
    flagged = expected["flagged"]
    assert flagged == ["dan"]  # the seeded case: dan picks the worse answer four times in five
    sign_in(page, url, admin)
    page.wait_for_selector("#annotators tbody tr")
    assert texts_of(page, "#projects tbody tr td.name") == ["hh-helpfulness"]
    project_cells = texts_of(page, "#projects tbody tr:first-child td")
    assert project_cells[1] == "56" and project_cells[6] == "8 (mixed in)"  # items; controls
    assert project_cells[2] == str(len(store.annotations("hh-helpfulness")))  # labels
    assert texts_of(page, "#annotators tbody td.name") == ["alice", "bob", "carol", "dan"]
    for who, row in expected["annotators"].items():
        cells = texts_of(page, f"#annotators tbody tr[data-annotator='{who}'] td")
        assert cells[2] == str(row["labels"])
        assert cells[6] == f"{row['control']['accuracy']:.2f} ({row['control']['judgements']})"
        assert cells[5] == f"{row['majority']['rate']:.2f} ({row['majority']['judgements']})"
        assert cells[8] == ("flagged" if who in flagged else "")
    assert "Flagged: control accuracy below 0.70" in page.text_content("#quality-rule")

    # deactivate carol: her token is refused and the page says she is inactive
    annotator_row(page, "carol").get_by_role("button", name="Deactivate").click()
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('carol deactivated')"
    )
    assert store.authenticate(tokens["carol"]) is None
    page.wait_for_selector("#annotators tr.inactive[data-annotator='carol']")
    annotator_row(page, "carol").get_by_role("button", name="Reactivate").click()
    page.wait_for_function("() => document.getElementById('status').textContent.includes('carol is active')")
    assert store.authenticate(tokens["carol"]).name == "carol"

    # revoke bob's token (no new one shown), then rotate it: the new token is shown once and works
    annotator_row(page, "bob").get_by_role("button", name="Revoke token").click()
    page.wait_for_function("() => document.getElementById('status').textContent.includes('rotate to give')")
    assert store.authenticate(tokens["bob"]) is None and page.is_hidden("#token-box")
    annotator_row(page, "bob").get_by_role("button", name="Rotate token").click()
    page.wait_for_selector("#token-box:not([hidden])")
    new_token = page.text_content("#new-token")
    assert store.authenticate(new_token).name == "bob" and page.text_content("#token-for") == "bob"
    assert page.text_content("#new-link") == f"{url}/#token={new_token}"
    page.click("#token-close")
    assert page.is_hidden("#token-box") and page.text_content("#new-token") == ""

    # downloads: trl without dan's labels (the page says how many it left out), then everything raw
    assert texts_of(page, "#export-format option") == ["trl", "raw", "kto"]
    page.check("#exclude-flagged")
    trl, filename = download(page)
    dan_labels = sum(1 for a in store.annotations("hh-helpfulness") if a.annotator == "dan")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('Downloaded')")
    assert page.text_content("#status") == (
        f"Downloaded {len(trl)} trl records; left out {dan_labels} labels of 1 flagged annotator(s)."
    )
    assert filename == "hh-helpfulness-trl.jsonl"
    assert trl and all({"prompt", "chosen", "rejected"} <= record.keys() for record in trl)
    page.select_option("#export-format", "raw")
    page.uncheck("#exclude-flagged")
    raw, _ = download(page)
    assert len(raw) == len(store.annotations("hh-helpfulness")) + len(store.skips("hh-helpfulness"))
    assert {r["annotator"] for r in raw} == {"alice", "bob", "carol", "dan"}
    page.wait_for_function("() => document.getElementById('status').textContent.includes('raw records')")
    assert "1 flagged annotator(s) included" in page.text_content("#status")
    assert page.dialogs == []


def test_the_admin_page_screenshot_for_the_docs(team, page, tmp_path):  # noqa: F811
    """The docs' picture of the admin page. Written to the test's folder; with RLHFKIT_DOCS_SCREENSHOTS=1
    copied into docs/img."""
    _, url, _, admin = team
    sign_in(page, url, admin)
    page.wait_for_selector("#annotators tr.flagged")
    target = screenshot_dir(tmp_path) / "annotate-admin.png"
    page.locator("body").screenshot(path=str(target))  # the page's content, without the empty viewport
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("RLHFKIT_DOCS_SCREENSHOTS") == "1":
        DOCS_ADMIN_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, DOCS_ADMIN_SCREENSHOT)


def test_an_annotator_token_cannot_open_the_admin_page(team, page):  # noqa: F811
    store, url, tokens, _ = team
    sign_in(page, url, tokens["alice"])
    page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    assert "this page is for admins" in page.text_content("#login-error")
    assert page.is_hidden("#admin") and page.locator("#annotators tbody tr").count() == 0
    sign_in(page, url, "not-a-token")
    page.wait_for_function(
        "() => document.getElementById('login-error').textContent.includes('not accepted')"
    )
    assert page.is_hidden("#admin")
    assert store.authenticate(tokens["alice"]).name == "alice"  # nothing happened to her


def test_payloads_in_names_and_model_text_stay_inert(tmp_path, page):  # noqa: F811
    project = f"team {SCRIPT}"[:100]
    annotators = {NASTY_NAME: (0.9, 3.0), "ann": (0.9, 4.0)}
    store, tokens, admin = seeded_project(tmp_path, project, annotators, payload=SCRIPT + IMG)
    with serving(store) as url:
        sign_in(page, url, admin)
        page.wait_for_selector("#annotators tbody tr")
        assert texts_of(page, "#projects tbody td.name") == [project]
        assert page.text_content("#project-title") == project
        assert NASTY_NAME in texts_of(page, "#annotators tbody td.name")
        annotator_row(page, "mallory").get_by_role("button", name="Rotate token").click()
        page.wait_for_selector("#token-box:not([hidden])")
        assert page.text_content("#token-for") == NASTY_NAME
        page.select_option("#export-format", "raw")
        raw, _ = download(page)
        assert any(SCRIPT in r["prompt"] for r in raw)  # the model text reached the file unchanged
        assert page.locator("main img, main script").count() == 0
        assert page.dialogs == [] and page.evaluate("window.pwned") is None
    store.close()
