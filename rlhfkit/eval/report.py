"""``rlhfkit report``: one self-contained HTML page about a run folder (a pipeline run such as
``runs/hh-demo`` or a loop run), readable offline and safe to pass around.

The page holds, results first: a header (run name, stages found, what is missing, which files or lines
could not be read), win rates with 95% intervals, score against KL for every method (eval points and RL
training steps; for loop runs proxy and gold score per round, the over-optimisation plot), label
statistics (agreement, position bias, ties and both-bad counts), side-by-side samples (baseline vs tuned
response, with scores), and every stage's metric curves against step with its timings and summary. With
``--feedback-project P``, a feedback project's blind evaluation follows the win rates: human win rates
in one table with the model judges' (`rlhfkit.eval.report_human`).
Plots are PNGs embedded as ``data:`` URIs; there is no external CSS or JavaScript, and every piece of
text is HTML-escaped (responses and prompts come from models and people). What reads the folder and
what counts as missing: `rlhfkit.eval.report_data`.

Python use::

    from rlhfkit.eval.report import build_report
    path = build_report("runs/hh-demo")            # writes runs/hh-demo/report.html

CLI: ``rlhfkit report RUN_DIR [--output FILE] [--feedback-project P [--feedback-db URL]]``.
"""

from __future__ import annotations

import html
from pathlib import Path

from rlhfkit.eval.report_data import LABELS, Run, Stage, frontier_data, is_number, read_run
from rlhfkit.eval.report_human import HEADER, HumanEvaluation, human_notes, human_rows, read_human_evaluation
from rlhfkit.eval.report_plots import frontier_figure, is_timing, loop_figure, metrics_figure

SAMPLES_PER_POLICY = 4
LOOP_COLUMNS = (  # (title, loop.jsonl key) of the per-round table, before the win rate
    ("round", "round"),
    ("labels", "labels_total"),
    ("strategy", "strategy"),
    ("method", "method"),
    ("RM held-out acc.", "reward_heldout_accuracy"),
    ("proxy score", "proxy_score"),
    ("gold score", "gold_score"),
    ("KL", "kl"),
)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 16px;
       color: #1d1d1f; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin-bottom: 4px; } .meta { color: #555; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.text { white-space: pre-wrap; max-height: 14em; overflow: auto; font: 12px/1.35 ui-monospace, monospace;
        min-width: 16em; }
.tail { display: flex; flex-direction: column-reverse; } /* scrolled to the end: a prompt's last turn */
.missing li { color: #8a4b00; } .problems li { color: #a00; }
ul.kv { columns: 3; font-size: 12px; color: #333; } img { max-width: 100%; }
summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
"""


def build_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    feedback_project: str | None = None,
    feedback_db: str | None = None,
) -> Path:
    """Write the report of ``run_dir`` to ``output`` (default ``<run_dir>/report.html``) and print where,
    with what is missing; returns the file's path. With ``feedback_project``, the page also holds that
    feedback project's blind evaluation (`rlhfkit.eval.report_human`; ``feedback_db`` default: the
    app's, ``$RLHFKIT_FEEDBACK_DB`` or ``sqlite:///runs/feedback.db``); one that cannot be read is listed
    among the problems.

    Raises:
        NotADirectoryError: ``run_dir`` is not a folder.
    """
    from rlhfkit.feedback.cli import DEFAULT_DB

    run = read_run(run_dir)
    human = None
    if feedback_project:
        human, problem = read_human_evaluation(feedback_db or DEFAULT_DB, feedback_project)
        run.problems += [problem] if problem else []
    out = Path(output) if output else run.path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(run, human), encoding="utf-8")
    print(format_status(run, out))
    return out


def render_report(run: Run, human: HumanEvaluation | None = None) -> str:
    """The whole page as a string (with `human`, a feedback project's blind evaluation after the win
    rates)."""
    evaluation = [_human(human, run)] if human else []
    body = "\n".join(
        [
            _header(run),
            _win_rates(run),
            *evaluation,
            _frontier(run),
            _labels(run),
            _samples(run),
            _curves(run),
        ]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(f'rlhfkit report: {run.name}')}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def format_status(run: Run, out: Path) -> str:
    """What the CLI prints: the file written, the stages found, what is missing, what was unreadable."""
    lines = [f"rlhfkit report: wrote {out}", f"stages: {', '.join(s.name for s in run.stages) or 'none'}"]
    lines += ["missing:"] + [f"  - {part}: {why}" for part, why in run.missing.items()] if run.missing else []
    lines += ["problems:"] + [f"  - {problem}" for problem in run.problems] if run.problems else []
    return "\n".join(lines)


def _header(run: Run) -> str:
    kind = "loop run" if run.is_loop else "pipeline run"
    rows = [
        [
            _td(_e(s.name)),
            _td(_e(s.kind)),
            _cell(len(s.metrics)),
            _td("finished" if s.summary is not None else "no summary"),
        ]
        for s in run.stages
    ]
    missing = "".join(f"<li><code>{_e(part)}</code>: {_e(why)}</li>" for part, why in run.missing.items())
    problems = "".join(f"<li><code>{_e(problem)}</code></li>" for problem in run.problems)
    return (
        f'<header id="header"><h1>rlhfkit report: {_e(run.name)}</h1>'
        f'<p class="meta">{_e(run.path)} &middot; {kind} &middot; {len(run.stages)} stages found</p>'
        + _table(["stage", "kind", "logged steps", "status"], rows)
        + '<section id="missing"><h2>Missing and problems</h2>'
        + (f'<ul class="missing">{missing}</ul>' if missing else "<p>Nothing missing.</p>")
        + (f'<ul class="problems">{problems}</ul>' if problems else "<p>Every file could be read.</p>")
        + "</section></header>"
    )


def _win_rates(run: Run) -> str:
    parts = []
    for stage in run.evals:
        summary = stage.summary
        rows = []
        policies = {p: row if isinstance(row, dict) else {} for p, row in summary["policies"].items()}
        rouge = any(is_number(row.get("rouge_l")) for row in policies.values())
        for policy, row in policies.items():
            win = _interval(row.get("win_rate"), row.get("win_low"), row.get("win_high"))
            cells = [
                _td(_e(policy)),
                _cell(row.get("score")),
                _cell(row.get("kl"), 2),
                _cell(row.get("length"), 1),
                _cell(row.get("mean_words"), 1),
                _td(win),
            ]
            if rouge:
                cells.append(
                    _td(_interval(row.get("rouge_l"), row.get("rouge_l_low"), row.get("rouge_l_high")))
                )
            rows.append(cells)
        baseline = summary.get("baseline", "the baseline")
        header = ["policy", "score", "KL", "tokens", "words", f"win rate vs {_e(baseline)} [95% CI]"]
        refs = summary.get("references") if isinstance(summary.get("references"), dict) else {}
        note = f"; ROUGE-L F1 against the human reference summary of {_e(refs.get('prompts'))} prompts"
        parts.append(
            f"<h3>{_e(stage.name)}</h3><p class='meta'>{_e(summary.get('prompts', '?'))} held-out prompts; "
            f"win rate against {_e(baseline)}, ties count half; length in tokens and words"
            + (note if rouge else "")
            + "</p>"
            + _table(header + ["ROUGE-L [95% CI]"] * rouge, rows)
        )
    if run.is_loop:
        rows = [
            [_cell(r.get(key)) for _, key in LOOP_COLUMNS]
            + [
                _td(_interval(r.get("win_rate"), r.get("win_rate_low"), r.get("win_rate_high"))),
                _cell(r.get("wall_seconds"), 0),
            ]
            for r in sorted(run.loop, key=lambda r: r["round"])
        ]
        header = [title for title, _ in LOOP_COLUMNS] + ["win rate [95% CI]", "wall s"]
        parts.append("<h3>Loop rounds</h3>" + (_table(header, rows) if rows else "<p>No finished round.</p>"))
    return _section("winrates", "Win rates", "".join(parts) or "<p>No eval summary found.</p>")


def _human(human: HumanEvaluation, run: Run) -> str:
    """The blind evaluation's table: humans and model judges in one table (`report_human.human_rows`)."""
    rows = [[_human_cell(value) for value in row] for row in human_rows(human, run)]
    table = _table([_e(h) for h in HEADER], rows) if rows else "<p>No evaluation items in this project.</p>"
    notes = "".join(f"<p class='meta'>{_e(note)}</p>" for note in human_notes(human))
    blind = "blind labels: annotators never saw which policy wrote which response"
    where = f"<p class='meta'>{_e(human.db)}; {blind}</p>"
    return _section("human", f"Human evaluation: feedback project {human.project}", where + table + notes)


def _human_cell(value) -> str:
    """A cell of the human table: ``(rate, [low, high])`` or ``(rate, [low, high], n)`` as an interval."""
    if not isinstance(value, tuple):
        return _cell(value)
    rate, ci, *n = value
    text = _interval(rate, *(ci or (None, None)))
    return _td(text + (_e(f" (n={n[0]})") if n else ""))


def _frontier(run: Run) -> str:
    points, curves = frontier_data(run)
    figure = frontier_figure(points, curves)
    body = (
        _img(figure, "reward against KL")
        + "<p class='meta'>Markers: held-out evaluation (mean reward-model score, KL in nats per response "
        "on the policy's own samples). Small dots: RL training, one per logged step (training prompts and "
        "the training reward, so the two are not exactly comparable).</p>"
        if figure
        else "<p>No eval summary and no RL training curve (metrics with <code>kl</code> and "
        "<code>score</code> or <code>reward</code>).</p>"
    )
    if run.is_loop:
        figure = loop_figure(run.loop)
        body += "<h3>Over-optimisation across rounds</h3>" + (
            _img(figure, "proxy and gold score against KL by round")
            + "<p class='meta'>Gao et al. 2022: the proxy (the trained reward model) keeps rising with KL "
            "while the gold score peaks and falls once the policy exploits the proxy.</p>"
            if figure
            else "<p>No finished round in loop.jsonl.</p>"
        )
    return _section("frontier", "Reward against KL", body)


def _labels(run: Run) -> str:
    rows = []
    for s in run.labels:
        agreement = (
            f"{_num(s.agreement)} ({s.agreement_kind}, n={s.agreement_n})" if s.agreement_kind else "-"
        )
        bias = (
            f"{_num(s.position_bias)} {_interval_text(*s.position_ci)} (n={s.decisive})"
            if s.decisive
            else "-"
        )
        rows.append(
            [_td(_e(s.group)), _cell(s.labels)]
            + [_cell(s.by_label[label]) for label in LABELS]
            + [_td(_e(agreement)), _td(_e(bias)), _cell(s.annotators)]
        )
    header = [
        "labels of",
        "labels",
        *LABELS,
        "agreement",
        "position bias: share choosing a [95% CI]",
        "annotators",
    ]
    body = (
        _table(header, rows)
        + "<p class='meta'>Agreement: with the gold preference's argmax (1 - flip rate) for simulated "
        "labels, otherwise between annotators who labelled the same pair. Position bias: 0.5 means none.</p>"
        if rows
        else "<p>No labels found.</p>"
    )
    return _section("labels", "Annotation statistics", body)


def _samples(run: Run) -> str:
    parts = []
    shown: dict[tuple, str] = {}  # the same samples in two eval folders are shown once
    for stage in run.evals:
        baseline = stage.summary.get("baseline")
        for policy in stage.summary["policies"]:
            if policy == baseline:
                continue
            pairs = [
                (r["prompt"], r[baseline], r[policy])
                for r in stage.samples
                if isinstance(r.get(baseline), dict) and isinstance(r.get(policy), dict)
            ]
            differ = [p for p in pairs if p[1].get("response") != p[2].get("response")]
            key = (baseline, policy, repr(pairs))
            if key in shown:
                parts.append(
                    f"<p>{_e(f'{stage.name}: {policy} vs {baseline}, the same samples as {shown[key]}')}</p>"
                )
                continue
            shown[key] = stage.name
            rows = [
                [
                    _text(prompt, tail=True),
                    _text(base.get("response")),
                    _cell(base.get("score")),
                    _text(tuned.get("response")),
                    _cell(tuned.get("score")),
                ]
                for prompt, base, tuned in differ[:SAMPLES_PER_POLICY]
            ]
            title = (
                f"{stage.name}: {policy} vs {baseline}, the first {len(rows)} of {len(differ)} prompts where "
                f"they answer differently ({len(pairs) - len(differ)} of {len(pairs)} answers identical)"
            )
            table = _table(["prompt", _e(baseline), "score", _e(policy), "score"], rows) if rows else ""
            parts.append(f"<details open><summary>{_e(title)}</summary>{table}</details>")
    return _section(
        "samples", "Samples: baseline vs tuned", "".join(parts) or "<p>No eval samples found.</p>"
    )


def _curves(run: Run) -> str:
    parts = []
    for stage in run.stages:
        if stage.is_eval:
            continue  # its numbers are in the win-rate table
        figure = metrics_figure(stage.metrics)
        parts.append(
            f"<h3>{_e(stage.name)}</h3>"
            + (_img(figure, f"metrics of {stage.name}") if figure else "<p>No metrics logged.</p>")
            + _timings(stage)
            + _summary_list(stage.summary)
        )
    return _section("curves", "Training curves", "".join(parts) or "<p>No training stage found.</p>")


def _timings(stage: Stage) -> str:
    keys = [k for k in dict.fromkeys(k for r in stage.metrics for k in r) if is_timing(k) and k != "time_s"]
    walls = [r["time_s"] for r in stage.metrics if is_number(r.get("time_s"))]
    if not walls and not keys:
        return ""
    steps = f"{walls[-1]:.1f} s over {len(stage.metrics)} logged steps" if walls else ""
    means = []
    for key in keys:
        values = [r[key] for r in stage.metrics if is_number(r.get(key))]
        if values:
            means.append(f"{key.removeprefix('time_').replace('_', ' ')} {sum(values) / len(values):.2f} s")
    per_step = f"mean per step: {', '.join(means)}" if means else ""
    return f'<p class="meta">Wall time: {_e("; ".join(p for p in (steps, per_step) if p))}</p>'


def _summary_list(summary: dict | None) -> str:
    items = [
        f"<li>{_e(key)} = {_e(_num(value) if is_number(value) else value)}</li>"
        for key, value in (summary or {}).items()
        if key != "stage" and (is_number(value) or isinstance(value, str | bool))
    ]
    return f'<ul class="kv">{"".join(items)}</ul>' if items else ""


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>{body}</section>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A table: ``header`` holds HTML (escape text before), ``rows`` hold ``<td>`` cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _td(content: str) -> str:
    return f"<td>{content}</td>"


def _text(value, tail: bool = False) -> str:
    """A cell with a model's or a person's text, whitespace kept; a long one scrolls (``tail``: shown
    scrolled to its end)."""
    text = _e("" if value is None else str(value).strip())
    return (
        f'<td><div class="text tail"><div>{text}</div></div></td>'
        if tail
        else f'<td><div class="text">{text}</div></td>'
    )


def _cell(value, digits: int = 3) -> str:
    """A cell with a value; numbers are formatted and right-aligned."""
    align = ' class="num"' if is_number(value) else ""
    return f"<td{align}>{_e(_num(value, digits))}</td>"


def _interval(rate, low, high) -> str:
    if not is_number(rate):
        return "-"
    return _e(f"{rate:.3f} {_interval_text(low, high)}")


def _interval_text(low, high) -> str:
    return f"[{low:.3f}, {high:.3f}]" if is_number(low) and is_number(high) else ""


def _num(value, digits: int = 3) -> str:
    if not is_number(value):
        return "-" if value is None else str(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _e(value) -> str:
    return html.escape(str(value))
