"""``rlhfkit report --feedback-project``: a feedback project's blind evaluation in the report, humans and
model judges in one table (numbers worked out by hand), and a project that cannot be read listed among
the problems, the page still written."""

from __future__ import annotations

import json
from html.parser import HTMLParser

from rlhfkit.cli import main
from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.eval.report import build_report
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.store import Store

XSS = "<script>alert('pwned')</script>"


class Cells(HTMLParser):
    """Every table row's cell texts, and the page's visible text."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[list[str]] = []
        self.chunks: list[str] = []
        self.tags: list[str] = []
        self.feed(text)
        self.text = "".join(self.chunks)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data):
        self.chunks.append(data)
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def item(n: int, reward: tuple[float, float]) -> ItemRecord:
    """Evaluation item ``n``: sft's response at 0, ppo's at 1; `reward`: the judge's (sft, ppo) scores."""
    responses = tuple(
        ResponseRecord(
            f"{name} says {XSS} {n}", {"policy": name, "path": f"runs/{name}", "scores": {"reward": s}}
        )
        for name, s in zip(("sft", "ppo"), reward, strict=True)
    )
    return ItemRecord(
        f"question {n}?", responses, f"eval:{n}", {"evaluation": {"baseline": "sft", "policy": "ppo"}}
    )


def labelled_project(db: str) -> None:
    """Four items; one annotator prefers ppo on items 0-2 and calls item 3 a tie. The judge scores ppo
    higher on items 0 and 1, lower on 2 and 3."""
    store = Store.init(db)
    store.create_project("blind", overlap=1)
    store.load_items("blind", [item(0, (0, 1)), item(1, (0, 1)), item(2, (1, 0)), item(3, (1, 0))])
    who = store.authenticate(store.add_annotator("blind", "alice")).id
    while (task := store.queue.next_task(who)) is not None:
        if task.external_id == "eval:3":
            store.queue.submit(who, task.item_id, Judgement("tie"))
        else:  # the letter showing ppo's response (position 1)
            label = "a_better" if task.display_order[0] == 1 else "b_better"
            store.queue.submit(who, task.item_id, Judgement(label, "clear"))
    store.close()


def eval_stage(run) -> None:
    summary = {
        "stage": "eval",
        "prompts": 200,
        "baseline": "sft",
        "judges": {"judge": {"kind": "model", "path": "runs/judge"}},
        "policies": {
            "sft": {"score": 0.1, "kl": 0.0, "length": 30.0, "judges": {"judge": {"score": 0.1}}},
            "ppo": {
                "score": 0.5,
                "kl": 3.3,
                "length": 19.0,
                "judges": {"judge": {"score": 0.5, "win_rate": 0.745, "win_low": 0.688, "win_high": 0.802}},
            },
        },
    }
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "summary.json").write_text(json.dumps(summary))
    (run / "eval" / "samples.jsonl").write_text("")


def test_the_report_holds_human_and_model_judgements_in_one_table(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    labelled_project(db)
    run = tmp_path / "run"
    eval_stage(run)
    out = tmp_path / "report.html"
    assert (
        main(["report", str(run), "--output", str(out), "--feedback-project", "blind", "--feedback-db", db])
        == 0
    )
    page = Cells(out.read_text(encoding="utf-8"))
    assert "Human evaluation: feedback project blind" in page.text
    rows = {tuple(r[:2]): r for r in page.rows if r and r[0] == "ppo vs sft"}
    # humans: 3 policy wins and a tie of 4 labels -> (3 + 0.5) / 4; the tie share 1 / 4
    humans = rows[("ppo vs sft", "annotators")]
    assert (
        humans[2] == "4"
        and humans[3].startswith("0.875 [")
        and humans[4:7] == ["3 / 1 / 0 / 0", "0.250", "0.000"]
    )
    # the judge on the same 4 items: ppo higher on 2, lower on 2 -> 0.5; it agrees with the human's strict
    # labels on items 0 and 1, not 2 (item 3 was a tie): 2 of 3, Wilson [0.208, 0.939]
    same = rows[("ppo vs sft", "reward (the same items)")]
    assert same[2] == "4" and same[3].startswith("0.500 [") and same[4] == "2 / 0 / - / 2"
    assert same[7] == "0.667 [0.208, 0.939] (n=3)"
    # the run's eval stage: the judge on every held-out prompt, beside them
    whole = rows[("ppo vs sft", "judge (eval: every held-out prompt)")]
    assert whole[2] == "200" and whole[3] == "0.745 [0.688, 0.802]"
    assert "position bias: the left response picked in" in page.text
    assert "script" not in page.tags  # nothing a model wrote is on this page as markup
    assert f"wrote {out}" in capsys.readouterr().out


def test_a_project_that_cannot_be_read_is_a_listed_problem(tmp_path, capsys):
    run = tmp_path / "run"
    eval_stage(run)
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    labelled_project(db)
    out = build_report(run, feedback_project="nope", feedback_db=db)
    page = Cells(out.read_text(encoding="utf-8"))
    assert "feedback project 'nope'" in page.text and "no project named 'nope'" in page.text
    assert "Human evaluation" not in page.text and "Win rates" in page.text
    assert "no project named 'nope'" in capsys.readouterr().out  # the CLI's status lists it too
    out = build_report(run, feedback_project="blind", feedback_db=f"sqlite:///{tmp_path / 'missing.db'}")
    assert "no database file" in Cells(out.read_text(encoding="utf-8")).text
    assert not (tmp_path / "missing.db").exists()
