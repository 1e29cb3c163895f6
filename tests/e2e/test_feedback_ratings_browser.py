"""Rating items on the labelling page, in a real headless Chromium: thumbs up/down and Likert scores given
with the keyboard only, the rating controls in place of the comparison ones, the stored ratings read
back through ``annotate export`` (raw and kto), and payloads in a rated response shown as text, never run.

``RLHFKIT_DOCS_SCREENSHOTS=1`` also copies the Likert item's screenshot (a Reddit-style post, one summary,
the summarize-from-feedback axes) to ``docs/img/annotate-rating.png``; otherwise it stays in the test's
folder. Browser fixtures and helpers come from ``test_feedback_browser``.
"""

from __future__ import annotations

import json

from test_feedback_browser import (  # noqa: F401 - the fixtures (page, open_project) and skip marks
    DOCS_POST,
    DOCS_SUMMARIES,
    IMG,
    REPO,
    SCRIPT,
    docs_screenshot,
    open_project,
    page,
    pytestmark,
    screenshot_dir,
    texts_of,
)

from rlhfkit.cli import main
from rlhfkit.data.items import ItemRecord, ResponseRecord

DOCS_RATING_SCREENSHOT = REPO / "docs" / "img" / "annotate-rating.png"
THUMBS = {"type": "thumbs"}
AXES = ["overall", "accuracy", "coverage", "coherence"]
LIKERT = {"type": "likert", "axes": AXES, "scale": 7}
GUIDELINES = "Rate the response on its own: is it what a careful assistant would say?"


def rated(external_id: str, prompt: str, text: str, question: dict, document=None) -> ItemRecord:
    return ItemRecord(
        prompt, (ResponseRecord(text, {"model": "runs/secret"}),), external_id, None, document, question
    )


def axis_state(view) -> list[dict]:
    """Per Likert axis on the page: its name, whether it is the highlighted one, the score checked."""
    return view.eval_on_selector_all(
        "#likert .axis",
        """groups => groups.map(g => ({
            axis: g.dataset.axis,
            focused: g.classList.contains('focused') && document.activeElement === g,
            checked: [...g.querySelectorAll('[aria-checked=true]')].map(b => Number(b.dataset.score)),
        }))""",
    )


def exported(store, project: str, tmp_path, fmt: str) -> list[dict]:
    out = tmp_path / f"{project}.{fmt}.jsonl"
    db = store.engine.url.render_as_string(hide_password=False)
    command = ["annotate", "export", "--project", project, "--db", db, "--format", fmt, "--output", str(out)]
    assert main(command) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_thumbs_and_likert_with_the_keyboard_and_the_export_holds_them(tmp_path, page, open_project):  # noqa: F811
    items = [
        rated("xss", f"Tell me about {SCRIPT} tags.", f"Sure: {SCRIPT} and {IMG} are <b>markup</b>.", THUMBS),
        rated("down", "What is 2 + 2?", "5.", THUMBS),
        rated("likert", "Summarise: the cat sat on the mat.", "A cat sat.", LIKERT),
    ]
    store = open_project("rate", GUIDELINES, items=items)

    # a thumbs item: one response, the thumbs in place of the comparison controls, payloads as text
    assert texts_of(page, "#responses .response .text") == [items[0].responses[0].text]
    assert texts_of(page, "#prompt .turn .content") == [items[0].prompt]
    assert page.text_content("#responses .response .letter") == "Response"
    assert page.is_visible("#thumbs") and page.is_hidden("#likert")
    assert (
        page.is_hidden("#pair-choices") and page.is_hidden("#rank-choices") and page.is_hidden("#strengths")
    )
    assert page.is_visible("#rating-keys") and page.is_hidden("#compare-keys")
    assert page.locator("#responses img, #responses script, #responses b, #prompt script").count() == 0
    assert "runs/secret" not in page.content()
    page.keyboard.press("t")  # a comparison key does nothing here
    page.keyboard.press("u")
    up = page.locator('[data-thumbs="up"]')
    assert up.get_attribute("aria-checked") == "true" and "selected" in up.get_attribute("class")
    assert page.locator('[data-thumbs="down"]').get_attribute("aria-checked") == "false"
    page.screenshot(path=str(screenshot_dir(tmp_path) / "annotate-thumbs.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#prompt').textContent.includes('2 + 2')")

    page.keyboard.press("u")
    page.keyboard.press("2")  # 2 is thumbs down too; the last choice counts
    assert page.locator('[data-thumbs="down"]').get_attribute("aria-checked") == "true"
    page.keyboard.press("Enter")
    page.wait_for_selector("#likert:not([hidden])")

    # a Likert item: one row per axis, the first highlighted and focused
    assert page.is_hidden("#thumbs")
    assert [a["axis"] for a in axis_state(page)] == AXES
    assert page.get_attribute("#likert .axis", "aria-label") == "overall: 1 (worst) to 7 (best)"
    assert [a["focused"] for a in axis_state(page)] == [True, False, False, False]
    page.keyboard.press("Enter")  # not every axis scored: refused, nothing sent
    page.wait_for_function("() => document.getElementById('status').textContent.includes('Score every axis')")
    page.keyboard.press("6")  # overall 6, then accuracy
    page.keyboard.press("7")  # accuracy 7, then coverage
    page.keyboard.press("3")  # coverage 3, then coherence
    page.keyboard.press("ArrowUp")  # back to coverage
    page.keyboard.press("ArrowRight")  # coverage 4
    page.keyboard.press("Tab")  # on to coherence
    page.keyboard.press("5")  # coherence 5 (the last axis stays highlighted)
    state = axis_state(page)
    assert [a["checked"] for a in state] == [[6], [7], [4], [5]]
    assert [a["focused"] for a in state] == [False, False, False, True]
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    assert page.dialogs == [] and page.evaluate("window.pwned") is None

    raw = {r["item_id"]: r for r in exported(store, "rate", tmp_path, "raw")}
    assert {k: (r["label"], r["rating"]) for k, r in raw.items()} == {
        "xss": ("thumbs", {"thumbs": "up"}),
        "down": ("thumbs", {"thumbs": "down"}),
        "likert": ("likert", {"overall": 6, "accuracy": 7, "coverage": 4, "coherence": 5}),
    }
    assert raw["likert"]["question"] == LIKERT
    kto = exported(store, "rate", tmp_path, "kto")
    assert [(r["completion"], r["label"]) for r in kto] == [
        (items[0].responses[0].text, True),  # thumbs up
        ("5.", False),  # thumbs down
        ("A cat sat.", True),  # overall 6 >= 4.5
    ]


def test_the_rating_screenshot_for_the_docs(tmp_path, page, open_project):  # noqa: F811
    """The docs' picture of a Likert rating: a Reddit-style post, one summary, the summarize-from-feedback
    axes scored by keyboard. Written to the test's folder; with RLHFKIT_DOCS_SCREENSHOTS=1 copied into
    docs/img."""
    title = "My best friend's wedding is costing more than I can afford"
    document = {"title": title, "text": DOCS_POST, "source": "r/relationships"}
    item = rated("tldr-likert", f"{title}\n\n{DOCS_POST}", DOCS_SUMMARIES[0], LIKERT, document)
    guidelines = (
        "Rate the summary on each axis from 1 (worst) to 7 (best): overall, how good it is as a summary; "
        "accuracy, whether it says only what the post says; coverage, whether it has what matters; "
        "coherence, whether it reads well on its own."
    )
    store = open_project("tldr-ratings", guidelines, items=[item])
    page.wait_for_selector("#document:not([hidden])")
    assert page.text_content("#document-title") == title
    assert texts_of(page, "#responses .response .text") == [DOCS_SUMMARIES[0]]
    for key in "6757":
        page.keyboard.press(key)
    assert [a["checked"] for a in axis_state(page)] == [[6], [7], [5], [7]]
    assert page.is_visible("#guidelines")  # beside the page, as the project has guidelines
    docs_screenshot(page, tmp_path, DOCS_RATING_SCREENSHOT)
    page.keyboard.press("Enter")
    page.wait_for_selector("#done:not([hidden])")
    (annotation,) = store.annotations("tldr-ratings")
    assert annotation.rating == {"overall": 6, "accuracy": 7, "coverage": 5, "coherence": 7}
