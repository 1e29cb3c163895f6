"""``rlhfkit report`` on synthetic run folders: every section, embedded images, escaping, label statistics
worked out by hand, and partial folders whose missing parts and bad lines are listed exactly."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest

from rlhfkit.cli import main
from rlhfkit.eval.report import build_report
from rlhfkit.eval.report_data import label_stats, read_run
from rlhfkit.eval.report_plots import metric_panels
from rlhfkit.stats import wilson_interval

SECTIONS = {"header", "missing", "curves", "frontier", "winrates", "samples", "labels"}
XSS = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Tags, ids, image sources and visible text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.chunks: list[str] = []
        self.feed(text)
        self.text = "".join(self.chunks)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.chunks.append(data)


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def _json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _stage(folder, metrics, summary):
    _jsonl(folder / "metrics.jsonl", metrics)
    _json(folder / "summary.json", summary)


def _eval(folder, baseline="sft", policy="ppo", win=(0.625, 0.516, 0.734)):
    _json(
        folder / "summary.json",
        {
            "stage": "eval",
            "prompts": 2,
            "baseline": baseline,
            "policies": {
                baseline: {"score": 0.1, "length": 10.0, "kl": 0.0},
                policy: {
                    "score": 0.4,
                    "length": 8.0,
                    "kl": 0.5,
                    "win_rate": win[0],
                    "win_low": win[1],
                    "win_high": win[2],
                },
            },
        },
    )
    _jsonl(
        folder / "samples.jsonl",
        [
            {
                "prompt": "Tell me <b>a joke</b>",
                baseline: {"response": "No.", "score": 0.1},
                policy: {"response": f"Sure: {XSS}", "score": 0.9},
            },
            {
                "prompt": "Same?",
                baseline: {"response": "Yes.", "score": 0.2},
                policy: {"response": "Yes.", "score": 0.2},
            },
        ],
    )


SFT_METRICS = [
    {"step": s, "time_s": 1.0 * s, "loss": 2.0 - 0.1 * s, "grad_norm": 1.0, "lr": 1e-5} for s in (1, 2, 3)
]
PPO_METRICS = [
    {"step": 1, "time_s": 3.0, "score": 0.1, "kl": 0.0, "policy_loss": 0.5, "time_rollout": 1.0},
    {"step": 2, "time_s": 6.0, "score": 0.3, "kl": 0.4, "policy_loss": 0.4, "time_rollout": 2.0},
]


@pytest.fixture
def pipeline_run(tmp_path):
    run = tmp_path / "demo"
    _stage(run / "sft", SFT_METRICS, {"stage": "sft", "steps": 3, "eval_nll": 2.5})
    _stage(run / "ppo", PPO_METRICS, {"stage": "ppo", "steps": 2, "score_last": 0.3})
    _eval(run / "eval")
    return run


# Round 1, simulated labels: a x5, b x3, tie, both_bad; 2 of the 8 decisive ones flipped against the gold.
ROUND1_LABELS = [
    {"label": label, "annotator": "sim", "gold_prob_a": 0.7, "flipped": flipped}
    for label, flipped in [("a", False)] * 4
    + [("a", True), ("b", True)]
    + [("b", False)] * 2
    + [("tie", None), ("both_bad", None)]
]
# Round 2, people: pair p1 alice a / bob a (agree), p2 alice b / bob a (disagree), p3 three ties
# (3 agreeing pairs of annotators): pairwise agreement 4 / 5 = 0.8 over 3 pairs labelled twice or more.
ROUND2_LABELS = [
    {
        "prompt": prompt,
        "response_a": "x",
        "response_b": "y",
        "label": label,
        "annotator": who,
        "gold_prob_a": None,
        "flipped": None,
    }
    for prompt, who, label in [
        ("p1", "alice", "a"),
        ("p1", "bob", "a"),
        ("p2", "alice", "b"),
        ("p2", "bob", "a"),
        ("p3", "alice", "tie"),
        ("p3", "bob", "tie"),
        ("p3", "carol", "tie"),
    ]
]


def _round(run, number, labels, win):
    folder = run / f"round-{number:02d}"
    _jsonl(folder / "candidates.jsonl", [{"prompt": "p1", "responses": ["x", "y"]}])
    _jsonl(
        folder / "selected.jsonl",
        [{"prompt": "p1", "response_a": "x", "response_b": "y", "selection_score": 1}],
    )
    _jsonl(folder / "labels.jsonl", [{"round": number, **r} for r in labels])
    _stage(folder / "reward", [{"step": 1, "loss": 0.6, "accuracy": 0.7}], {"stage": "reward"})
    _stage(folder / "policy", PPO_METRICS, {"stage": "ppo"})
    _eval(folder / "eval", policy="policy", win=win)


def _loop_record(number, win):
    return {
        "round": number,
        "labels_total": 10 * number,
        "labels_round": 10,
        "strategy": "uncertainty",
        "method": "ppo",
        "reward_heldout_accuracy": 0.6,
        "proxy_score": 0.2 * number,
        "gold_score": 0.1 / number,
        "kl": 0.5 * number,
        "win_rate": win[0],
        "win_rate_low": win[1],
        "win_rate_high": win[2],
        "wall_seconds": 60.0,
    }


@pytest.fixture
def loop_run(tmp_path):
    run = tmp_path / "loop"
    wins = {1: (0.6, 0.5, 0.7), 2: (0.55, 0.45, 0.65)}
    _round(run, 1, ROUND1_LABELS, wins[1])
    _round(run, 2, ROUND2_LABELS, wins[2])
    _jsonl(run / "loop.jsonl", [_loop_record(n, wins[n]) for n in (1, 2)])
    return run


def _page(path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def test_pipeline_report_has_every_section_and_only_embedded_images(pipeline_run, capsys):
    out = build_report(pipeline_run)
    assert out == pipeline_run / "report.html"
    page = _page(out)
    assert SECTIONS <= page.ids
    # sft curves, ppo curves, the reward-vs-KL frontier
    assert len(page.images) == 3
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    assert not {"script", "link", "iframe"} & set(page.tags)
    assert "Nothing missing." in page.text and "Every file could be read." in page.text
    assert "0.625 [0.516, 0.734]" in page.text  # the win-rate table
    assert "rollout 1.50 s" in page.text  # mean of time_rollout, a timing key kept out of the plots
    assert (
        "ppo vs sft, the first 1 of 1 prompts where they answer differently (1 of 2 answers identical)"
        in page.text
    )
    assert f"wrote {out}" in capsys.readouterr().out


def test_model_text_is_escaped_not_run(pipeline_run):
    raw = build_report(pipeline_run).read_text(encoding="utf-8")
    page = Page(raw)
    assert "script" not in page.tags and page.tags.count("img") == 3  # only the plots are images
    assert f"Sure: {XSS}" in page.text  # shown as text, whole
    assert "Tell me <b>a joke</b>" in page.text and "<b>" not in raw
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in raw


def test_label_statistics_by_hand():
    simulated = label_stats("round-01", ROUND1_LABELS)
    assert simulated.by_label == {"a": 5, "b": 3, "tie": 1, "both_bad": 1}
    assert (simulated.agreement, simulated.agreement_kind, simulated.agreement_n) == (0.75, "gold", 8)
    assert (simulated.first_chosen, simulated.decisive, simulated.position_bias) == (5, 8, 0.625)
    assert simulated.position_ci == wilson_interval(5, 8)

    people = label_stats("round-02", ROUND2_LABELS)
    assert (people.agreement, people.agreement_kind, people.agreement_n) == (
        pytest.approx(0.8),
        "pairwise",
        3,
    )
    assert (people.first_chosen, people.decisive, people.annotators) == (3, 4, 3)

    alone = label_stats("one", ROUND2_LABELS[:1])  # nobody to agree with
    assert (alone.agreement, alone.agreement_kind) == (None, None)


def test_loop_report_rounds_frontier_and_labels(loop_run):
    run = read_run(loop_run)
    assert run.is_loop and run.missing == {} and run.problems == []
    names = [s.name for s in run.stages]
    assert names == [f"round-0{n}/{part}" for n in (1, 2) for part in ("reward", "policy", "eval")]
    assert [s.group for s in run.labels] == ["round-01", "round-02", "all"]

    page = _page(build_report(loop_run))
    assert SECTIONS <= page.ids
    # curves of 2 rewards and 2 policies, the frontier, the over-optimisation figure
    assert len(page.images) == 6
    assert "Over-optimisation across rounds" in page.text
    assert "0.600 [0.500, 0.700]" in page.text and "0.550 [0.450, 0.650]" in page.text  # one row per round
    assert "0.750 (gold, n=8)" in page.text and "0.800 (pairwise, n=3)" in page.text
    assert f"0.625 [{wilson_interval(5, 8)[0]:.3f}, {wilson_interval(5, 8)[1]:.3f}] (n=8)" in page.text


def test_partial_pipeline_lists_missing_parts_and_bad_lines(pipeline_run, capsys):
    (pipeline_run / "ppo" / "summary.json").unlink()
    with (pipeline_run / "ppo" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "score": 0.')  # cut off while being written
    for name in ("summary.json", "samples.jsonl"):
        (pipeline_run / "eval" / name).unlink()
    (pipeline_run / "eval").rmdir()

    run = read_run(pipeline_run)
    assert set(run.missing) == {"ppo/summary.json", "an eval stage"}
    assert run.problems == [
        "ppo/metrics.jsonl:3: malformed JSON (the last line: cut off while being written?)"
    ]
    assert len(run.stages[1].metrics) == 2  # the good lines are kept

    page = _page(build_report(pipeline_run))
    assert SECTIONS <= page.ids
    assert len(page.images) == 3  # sft and ppo curves, and the frontier from ppo's training steps
    for part in (*run.missing, *run.problems):
        assert part in page.text
    assert "No eval summary found." in page.text and "No eval samples found." in page.text
    out = capsys.readouterr().out
    assert "missing:\n  - ppo/summary.json: stage not finished" in out
    assert "problems:\n  - ppo/metrics.jsonl:3: malformed JSON" in out


def test_partial_loop_round_lists_exactly_what_is_missing(loop_run):
    # round 3 has been sampled and selected but not labelled yet; round 1 lost its eval samples
    folder = loop_run / "round-03"
    _jsonl(folder / "candidates.jsonl", [{"prompt": "p", "responses": ["x", "y"]}])
    _jsonl(folder / "selected.jsonl", [{"prompt": "p", "response_a": "x", "response_b": "y"}])
    (folder / "labels.jsonl").write_text("")
    (loop_run / "round-01" / "eval" / "samples.jsonl").unlink()
    _jsonl(loop_run / "round-02" / "labels.jsonl", [ROUND2_LABELS[0], {**ROUND2_LABELS[1], "label": "c"}])

    run = read_run(loop_run)
    assert set(run.missing) == {
        "round-01/eval/samples.jsonl",
        "loop.jsonl: round 3",
        "round-03/labels.jsonl",
        "round-03/reward",
        "round-03/policy",
        "round-03/eval",
    }
    assert run.missing["round-03/labels.jsonl"] == "empty: no labels"
    assert run.problems == ["round-02/labels.jsonl:2: field 'label': 'c' is not one of a, b, tie, both_bad"]
    assert [(s.group, s.labels) for s in run.labels] == [("round-01", 10), ("round-02", 1), ("all", 11)]
    page = _page(build_report(loop_run))
    for part in (*run.missing, *run.problems):
        assert part in page.text


def test_metric_panels_group_families_and_leave_out_timing():
    rows = [
        {
            "step": 1,
            "time_s": 1.0,
            "policy_loss": 0.1,
            "kl": 0.0,
            "score": 1.0,
            "entropy": 2.0,
            "time_update": 3.0,
            "value_loss": 0.2,
            "approx_kl": 0.01,
            "note": "text",
            "flag": True,
        },
        {"step": 2, "kl_k3": None, "reward_std": 0.5},
    ]
    assert metric_panels(rows) == [
        ("loss", ["policy_loss", "value_loss"]),
        ("KL", ["kl", "approx_kl"]),
        ("score / reward", ["score", "reward_std"]),
        ("entropy", ["entropy"]),
    ]


def test_cli_writes_to_output_and_rejects_a_file(pipeline_run, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(pipeline_run), "--output", str(out)]) == 0
    assert SECTIONS <= _page(out).ids
    assert f"wrote {out}" in capsys.readouterr().out

    not_a_folder = pipeline_run / "sft" / "summary.json"
    assert main(["report", str(not_a_folder)]) == 2
    assert f"rlhfkit report: error: {not_a_folder}: not a folder" in capsys.readouterr().err
    with pytest.raises(NotADirectoryError):
        build_report(tmp_path / "nowhere")


def test_win_rate_table_shows_words_and_rouge_l_when_the_eval_has_them(tmp_path):
    _eval(tmp_path / "eval")
    assert "ROUGE-L" not in _page(build_report(tmp_path)).text  # not summaries of posts: no column
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    summary["references"] = {"prompts": 2, "mean_words": 20.0}
    for row, rouge in zip(summary["policies"].values(), (0.21, 0.345), strict=True):
        row.update(mean_words=17.25, rouge_l=rouge, rouge_l_low=rouge - 0.1, rouge_l_high=rouge + 0.1)
    _json(tmp_path / "eval" / "summary.json", summary)
    text = _page(build_report(tmp_path)).text
    assert "ROUGE-L [95% CI]" in text and "0.345 [0.245, 0.445]" in text and "17.2" in text
    assert "human reference summary of 2 prompts" in text
