"""The labelling page in a real headless Chromium (Debian's package, driven by Playwright).

An annotator signs in with their token, labels every item with keyboard shortcuts only (a pair with a
note, a 3-way ranking, a tie, a skip), and the admin's export holds exactly those labels. One item's
responses carry ``<script>`` and ``<img onerror>`` payloads: they must show as text and never run.

A summarize-from-feedback comparison imported with ``annotate import`` is shown as a document (title,
source, paragraphs, in a scrolling box) with its two summaries side by side; payloads in its title, post
and summaries show as text and never run.

Set ``RLHFKIT_SCREENSHOTS=docs/img`` to write the page's screenshots there (the README's pictures);
otherwise they go to the test's temporary folder. ``RLHFKIT_DOCS_SCREENSHOTS=1`` also copies the
document view's screenshot (a hand-written Reddit-style post, items shown in a fixed order) to
``docs/img/feedback-document.png``, and the customer-support item's (a customer message, two answers,
``configs/support-guidelines.md`` as the guidelines) to ``docs/img/annotate-support.png``; without it
the tree is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from pathlib import Path

import httpx
import pytest

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.agreement import project_stats
from rlhfkit.feedback.imports import read_comparisons
from rlhfkit.feedback.server import serving
from rlhfkit.feedback.store import Store

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"Debian's chromium is not installed ({CHROMIUM}); .ci/run installs it",
)

SCRIPT = "<script>window.pwned = 'script'; alert('script')</script>"
IMG = "<img src=x onerror=\"window.pwned = 'img'; alert('img')\">"
GUIDELINES = "Prefer the response that is helpful, honest and harmless.\nPrefer short over long when equal."
ITEMS = [
    ItemRecord(
        "\n\nHuman: Can you tell me a joke?\n\nAssistant: Sure, about what?"
        "\n\nHuman: About HTML, please.\n\nAssistant:",
        (
            ResponseRecord(f"Here is one: {SCRIPT} ... the browser never laughed."),
            ResponseRecord(f"Why did the tag close itself? {IMG} Because it was <b>void</b>."),
        ),
        "xss",
    ),
    ItemRecord(
        [{"role": "user", "content": "Name a primary colour."}],
        (ResponseRecord("Red."), ResponseRecord("Blue, like the sky."), ResponseRecord("Potato.")),
        "rank3",
    ),
    ItemRecord("Is water wet?", (ResponseRecord("Yes."), ResponseRecord("Yes, it is.")), "tie"),
    ItemRecord("Skip me, please.", (ResponseRecord("one"), ResponseRecord("two")), "skip"),
]


@pytest.fixture
def app_server(tmp_path):
    store = Store.init(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.create_project("demo", GUIDELINES, overlap=1)
    store.load_items("demo", ITEMS)
    tokens = {"annotator": store.add_annotator("demo", "alice"), "admin": store.create_admin()}
    with serving(store) as url:
        yield store, url, tokens
    store.close()


@pytest.fixture
def page():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.dialogs = []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        yield page
        browser.close()


def screenshot_dir(tmp_path) -> Path:
    target = Path(os.environ.get("RLHFKIT_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def docs_screenshot(page, tmp_path, docs_path: Path) -> None:
    """Screenshot the whole page into the screenshot folder under `docs_path`'s name, check it is a PNG,
    and with RLHFKIT_DOCS_SCREENSHOTS=1 copy it to `docs_path` (a picture in docs/img)."""
    target = screenshot_dir(tmp_path) / docs_path.name
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("RLHFKIT_DOCS_SCREENSHOTS") == "1":
        docs_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, docs_path)


def current_item(store, page) -> str:
    """Which item the page shows, found from its first turn's text."""
    first_turn = page.locator("#prompt .turn .content").first.text_content()
    for record in ITEMS:
        prompt = record.prompt if isinstance(record.prompt, str) else record.prompt[0]["content"]
        if first_turn.strip() and first_turn.strip() in prompt:
            return record.external_id
    raise AssertionError(f"unknown item on the page: {first_turn!r}")


def wait_for_next(page, previous_text: str) -> None:
    page.wait_for_function(
        """(previous) => !document.getElementById('done').hidden ||
            document.querySelector('#prompt').textContent !== previous""",
        arg=previous_text,
    )


def test_annotator_labels_with_the_keyboard_and_the_export_matches(app_server, page, tmp_path):
    store, url, tokens = app_server
    shots = screenshot_dir(tmp_path)
    page.goto(url + "/")
    page.fill("#token", tokens["annotator"])
    page.press("#token", "Enter")
    page.wait_for_selector("#task:not([hidden])")
    assert page.text_content("#project-name") == "demo" and page.text_content("#who") == "alice"
    assert page.text_content("#progress-text") == "0 labelled · 0 skipped · 4 left"
    assert page.text_content("#guidelines-text") == GUIDELINES
    keys_panel = page.text_content("#keys")
    for key in ("a", "b", "t", "x", "q", "w", "e", "n", "Enter", "s", "g", "Backspace"):
        assert key in keys_panel

    seen = {}
    while page.is_hidden("#done"):
        item = current_item(store, page)
        before = page.text_content("#prompt")
        letters = page.eval_on_selector_all(
            "#responses .response", "cards => cards.map(c => c.dataset.letter)"
        )
        texts = page.eval_on_selector_all(
            "#responses .response .text", "nodes => nodes.map(n => n.textContent)"
        )
        seen[item] = dict(zip(letters, texts, strict=True))
        if item == "xss":
            # shown as dialogue turns, and the payloads as plain text
            assert page.locator("#prompt .turn").count() == 3
            assert any(SCRIPT in t for t in texts) and any(IMG in t for t in texts)
            assert page.locator("#responses img, #responses script, #responses b").count() == 0
            page.keyboard.press("b")
            page.keyboard.press("w")
            page.keyboard.press("n")
            page.keyboard.type("the <b>void</b> joke is better")
            page.keyboard.press("Escape")
            page.screenshot(path=str(shots / "annotate-pair.png"), full_page=True)
            page.keyboard.press("Enter")
        elif item == "rank3":
            page.keyboard.press("3")
            page.keyboard.press("1")  # the last one is placed by itself
            page.keyboard.press("e")
            assert page.text_content("#responses .response.best .badge") == "best"
            page.screenshot(path=str(shots / "annotate-ranking.png"), full_page=True)
            page.keyboard.press("Enter")
        elif item == "tie":
            page.keyboard.press("q")  # a strength without a preference does nothing
            page.keyboard.press("t")
            page.keyboard.press("Enter")
        else:
            page.keyboard.press("s")
        wait_for_next(page, before)

    assert page.text_content("#progress-text") == "3 labelled · 1 skipped · 0 left"
    assert page.dialogs == [] and page.evaluate("window.pwned") is None

    # the admin's export holds exactly what was pressed
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    raw = [
        json.loads(line)
        for line in httpx.get(
            f"{url}/api/admin/projects/demo/export?format=raw", headers=admin
        ).text.splitlines()
    ]
    by_item = {r["item_id"]: r for r in raw}
    assert {k: v["label"] for k, v in by_item.items()} == {
        "xss": "b_better",
        "rank3": "ranking",
        "tie": "tie",
        "skip": "skipped",
    }
    xss = by_item["xss"]
    assert xss["strength"] == "clear" and xss["note"] == "the <b>void</b> joke is better"
    assert xss["responses"][xss["ranking"][0]] == seen["xss"]["B"]  # B, the right one, won
    rank3 = by_item["rank3"]
    assert [rank3["responses"][p] for p in rank3["ranking"]] == [seen["rank3"][x] for x in "CAB"]
    assert rank3["strength"] == "strong"
    trl = [
        json.loads(line)
        for line in httpx.get(
            f"{url}/api/admin/projects/demo/export?format=trl", headers=admin
        ).text.splitlines()
    ]
    assert len(trl) == 1 + 3  # the pair, and the ranking's 3 pairs; the tie and the skip are left out
    assert {"chosen": seen["xss"]["B"], "rejected": seen["xss"]["A"]}.items() <= trl[0].items()


def test_drag_to_rank_and_sign_in_by_link(app_server, page, tmp_path):
    store, url, tokens = app_server
    store.create_project("drag", overlap=1)
    store.load_items("drag", [ITEMS[1]])
    token = store.add_annotator("drag", "bob")
    page.goto(f"{url}/#token={token}")  # the link add-annotator prints
    page.wait_for_selector("#task:not([hidden])")
    assert "token" not in page.url  # the token does not stay in the address bar
    chips = page.locator("#ranking li")
    assert chips.count() == 3
    chips.nth(2).drag_to(chips.nth(0))  # C to the front: C, A, B
    assert page.eval_on_selector_all("#ranking li", "xs => xs.map(x => x.textContent)") == ["C", "A", "B"]
    page.keyboard.press("w")
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    (annotation,) = store.annotations("drag")
    assert annotation.ranking == [annotation.display_order[i] for i in (2, 0, 1)]


def test_a_wrong_token_is_refused(app_server, page):
    _, url, tokens = app_server
    page.goto(url + "/")
    page.fill("#token", "not-a-token")
    page.press("#token", "Enter")
    page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    assert "not accepted" in page.text_content("#login-error")
    page.fill("#token", tokens["admin"])
    page.press("#token", "Enter")
    page.wait_for_function("() => document.getElementById('login-error').textContent.includes('admin')")
    assert page.is_hidden("#workspace")


class _StrippingProxy:
    """A reverse proxy on loopback that serves ``upstream`` under ``/annotate`` (stripping the prefix, as
    an nginx ``location /annotate/ { proxy_pass http://upstream/; }`` does); anything else is 404."""

    def __init__(self, upstream: str):
        import http.server
        import threading

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                if not self.path.startswith("/annotate/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                reply = httpx.request(
                    self.command,
                    upstream + self.path[len("/annotate") :],
                    headers=headers,
                    content=self.rfile.read(length) if length else None,
                )
                proxy.paths.append(self.path)
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = _forward

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/annotate"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_page_works_behind_a_reverse_proxy_path_prefix(tmp_path, page):
    """Served with --root-path /annotate behind a proxy that strips the prefix: the page loads its files
    and calls the API under /annotate/ (nothing reaches the proxy outside it), and an annotator labels an
    item; a right-to-left override in a response shows as a visible marker."""
    store = Store.init(f"sqlite:///{tmp_path / 'feedback.db'}")
    store.create_project("demo", GUIDELINES, overlap=1)
    sneaky = ResponseRecord("Open the file \u202egnp.exe\u202c now.")
    store.load_items("demo", [ItemRecord("Which file?", (sneaky, ResponseRecord("None.")), "rtl")])
    token = store.add_annotator("demo", "alice")
    with serving(store, root_path="/annotate") as upstream_with_prefix:
        upstream = upstream_with_prefix[: -len("/annotate")]
        proxy = _StrippingProxy(upstream)
        try:
            page.goto(f"{proxy.url}/#token={token}")
            page.wait_for_selector("#task:not([hidden])")
            texts = page.eval_on_selector_all(
                "#responses .response .text", "ns => ns.map(n => n.textContent)"
            )
            assert "Open the file [U+202E]gnp.exe[U+202C] now." in texts
            page.keyboard.press("a")
            page.keyboard.press("w")
            page.keyboard.press("Enter")
            page.wait_for_selector("#done:not([hidden])")
        finally:
            proxy.close()
    assert len(store.annotations("demo")) == 1
    assert any(p.startswith("/annotate/static/") for p in proxy.paths)
    assert any(p.startswith("/annotate/api/") for p in proxy.paths)
    store.close()


REPO = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO / "docs" / "img" / "feedback-document.png"
DOCS_SUPPORT_SCREENSHOT = REPO / "docs" / "img" / "annotate-support.png"


def tldr_row(title: str, post: str, summaries: tuple[str, str], choice: int = 0) -> dict:
    """A summarize-from-feedback comparison row, hand-written."""
    return {
        "info": {"id": "t3_test", "subreddit": "relationships", "title": title, "post": post},
        "summaries": [{"text": summaries[0], "policy": "ref"}, {"text": summaries[1], "policy": "sup4"}],
        "choice": choice,
        "worker": "original-worker",
        "extra": {"confidence": 2 if choice == 0 else 8},
    }


@pytest.fixture
def open_project(tmp_path, page):
    """``open_project(name, guidelines, items=..., imported=...)``: a store with project `name` holding
    `items` (loaded) and `imported` (imported with their original labels), served, and `page` signed in
    as an annotator on it, its first item shown; returns the store. Closed after the test."""
    with contextlib.ExitStack() as stack:

        def open_(name: str, guidelines: str, items=(), imported=()) -> Store:
            store = Store.init(f"sqlite:///{tmp_path / 'feedback.db'}")
            stack.callback(store.close)
            store.queue._rng = random.Random(0)  # the same left-to-right order every run (the screenshots)
            store.create_project(name, guidelines, overlap=1)
            if items:
                store.load_items(name, items)
            if imported:
                store.import_items(name, imported)
            token = store.add_annotator(name, "alice")
            url = stack.enter_context(serving(store))
            page.goto(f"{url}/#token={token}")
            page.wait_for_selector("#task:not([hidden])")
            return store

        yield open_


@pytest.fixture
def open_comparison(tmp_path, page, open_project):
    """``open_comparison(row)``: `open_project` with project "tldr" holding `row` (imported to relabel),
    its document shown; returns the store."""

    def open_row(row: dict) -> Store:
        path = tmp_path / "comparisons.jsonl"
        path.write_text(json.dumps(row) + "\n")
        guidelines = "Which summary says what matters in the post?"
        store = open_project("tldr", guidelines, imported=read_comparisons(path).items)
        page.wait_for_selector("#document:not([hidden])")
        return store

    return open_row


def texts_of(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


def test_a_document_item_shows_its_payloads_as_text_and_is_labelled(tmp_path, page, open_comparison):
    title = f"My roommate {SCRIPT} keeps {IMG} eating my food"
    paragraphs = [f"First paragraph {IMG}", f"Second {SCRIPT}\nwith a line break"] + [
        f"Paragraph {n}: more of the story, told at length so that the post overflows its box." * 3
        for n in range(3, 15)
    ]
    summaries = (f" She eats my food {SCRIPT}.", f" Roommate {IMG} problem.")
    store = open_comparison(tldr_row(title, "\n\n".join(paragraphs), summaries))
    assert page.is_hidden("#prompt")  # the document, not the query, is what annotators read
    assert page.text_content("#document-title") == title
    assert page.text_content("#document-source") == "r/relationships"
    assert texts_of(page, "#document-text p") == paragraphs  # paragraphs kept, line break too
    assert sorted(texts_of(page, "#responses .response .text")) == sorted(summaries)
    assert page.locator("#document img, #document script, #responses img, #responses script").count() == 0
    box = page.eval_on_selector(
        "#document-text",
        "n => [n.scrollHeight > n.clientHeight, getComputedStyle(n).overflowY]",
    )
    assert box == [True, "auto"]  # a long post scrolls in its box; the summaries stay in view
    columns = page.eval_on_selector_all(
        "#responses .response", "cards => cards.map(c => Math.round(c.getBoundingClientRect().top))"
    )
    assert len(columns) == 2 and columns[0] == columns[1]  # side by side
    page.screenshot(path=str(screenshot_dir(tmp_path) / "annotate-document-xss.png"), full_page=True)
    shown = texts_of(page, "#responses .response .text")
    page.keyboard.press("b")
    page.keyboard.press("e")
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    assert page.dialogs == [] and page.evaluate("window.pwned") is None
    (annotation,) = store.annotations("tldr")
    (item,) = store.items("tldr")
    assert item.responses[annotation.ranking[0]].text == shown[1]  # B, the right one, won
    stats = project_stats(store.items("tldr"), store.annotations("tldr"), [], 1)["original_labels"]
    agreed = shown[1] == summaries[0]  # the original labeller chose summaries[0]
    assert (stats["relabel"]["agree"], stats["relabel"]["disagree"]) == (int(agreed), int(not agreed))


DOCS_POST = """My (27F) best friend (28F) is getting married in October, and a few months ago she asked \
me to be her maid of honour. I said yes straight away: we have been friends since we were twelve.

Since then the costs have added up. The dress is $350, the bachelorette is a weekend in another city \
(flights, a shared rental, activities: about $1,200 per person), and the bridesmaids are expected to \
split the cost of the bridal shower. I started a new job in March and I am still paying off a loan.

I told her last week that I can't afford the bachelorette trip and asked whether we could do something \
local instead. She said she understood, but since then she has been short with me, and another \
bridesmaid told me she thinks I'm "not taking the role seriously".

I don't want to lose the friendship over money, but I also can't put a trip on a credit card. How do I \
talk to her about this without it sounding like I care less about her wedding?"""
DOCS_SUMMARIES = (
    " Best friend's wedding costs (dress, $1,200 bachelorette trip, shower) are more than I can afford. "
    "I told her I can't do the trip and now she's distant. How do I talk to her without hurting the "
    "friendship?",
    " I'm the maid of honour and my friend is getting married in October.",
)


def test_the_document_view_screenshot_for_the_docs(tmp_path, page, open_comparison):
    """The docs' picture of the document view: a hand-written Reddit-style post and two summaries, one
    chosen. Written to the test's folder; with RLHFKIT_DOCS_SCREENSHOTS=1 copied into docs/img."""
    row = tldr_row("My best friend's wedding is costing more than I can afford", DOCS_POST, DOCS_SUMMARIES)
    store = open_comparison(row)
    assert len(texts_of(page, "#document-text p")) == 4
    assert page.text_content("#document-title") == row["info"]["title"]
    shown = texts_of(page, "#responses .response .text")
    page.keyboard.press("a" if shown[0] == DOCS_SUMMARIES[0] else "b")
    page.keyboard.press("w")
    assert page.locator("#responses .response.best").count() == 1
    assert page.text_content("#responses .response.best .text") == DOCS_SUMMARIES[0]
    docs_screenshot(page, tmp_path, DOCS_SCREENSHOT)
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    assert len(store.annotations("tldr")) == 1


SUPPORT_MESSAGE = "My order hasn't arrived. What should I do?"
SUPPORT_ANSWERS = (
    "I'm sorry to hear that your order hasn't arrived yet. Please check your tracking number in the "
    "{{Order History}} section of your account, and if the package still shows no progress, reply here "
    "and I'll help you open a claim. If you need further help, I'm here.",
    "Check your tracking number.",
)


def test_the_support_item_screenshot_for_the_docs(tmp_path, page, open_project):
    """The docs' picture of a customer-support item: a customer message (a table row's prompt, one user
    message) and two answers, the better one chosen, with configs/support-guidelines.md as the
    guidelines. Written to the test's folder; with RLHFKIT_DOCS_SCREENSHOTS=1 copied into docs/img."""
    guidelines = (REPO / "configs" / "support-guidelines.md").read_text()
    item = ItemRecord(
        [{"role": "user", "content": SUPPORT_MESSAGE}],
        tuple(ResponseRecord(text) for text in SUPPORT_ANSWERS),
        "support",
    )
    store = open_project("support", guidelines, items=[item])
    assert texts_of(page, "#prompt .turn .content") == [SUPPORT_MESSAGE]
    shown = texts_of(page, "#responses .response .text")
    assert sorted(shown) == sorted(SUPPORT_ANSWERS)  # the {{Order History}} slot shown as it is
    assert page.text_content("#guidelines-text") == guidelines
    page.keyboard.press("a" if shown[0] == SUPPORT_ANSWERS[0] else "b")
    page.keyboard.press("w")
    assert page.locator("#responses .response.best").count() == 1
    assert page.text_content("#responses .response.best .text") == SUPPORT_ANSWERS[0]
    docs_screenshot(page, tmp_path, DOCS_SUPPORT_SCREENSHOT)
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    assert len(store.annotations("support")) == 1
