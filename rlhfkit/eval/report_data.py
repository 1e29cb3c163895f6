"""Reading a run folder for ``rlhfkit report``: stages, metrics, eval summaries and samples, loop rounds and
their labels, and the label statistics. Nothing here raises on a bad file: every unreadable file or line
is named (``ppo/metrics.jsonl:11: malformed JSON``) in ``Run.problems``, and every expected part that is
absent in ``Run.missing``.

What counts as what:

- a **stage** is the run folder or any folder up to two levels below it (``ppo/``, ``round-01/reward/``)
  holding a ``metrics.jsonl`` or a ``summary.json``; an **eval stage** is one whose summary has a
  ``policies`` table (``rlhfkit eval``'s format), read with its ``samples.jsonl``;
- a **loop run** has a ``loop.jsonl`` (one record per finished round) and/or ``round-NN/`` folders, each
  expected to hold ``candidates.jsonl``, ``selected.jsonl``, ``labels.jsonl``, ``reward/``, ``policy/``
  and ``eval/``;
- **labels** are ``labels.jsonl`` files in the run folder or one level below (one group per file).

Label statistics (`label_stats`):

- agreement: for simulated labels (records with a boolean ``flipped``), agreement with the gold
  preference's argmax = 1 - flip rate; otherwise, for several annotators on the same
  ``(prompt, response_a, response_b)``, pairwise agreement (`rlhfkit.feedback.agreement`);
- position bias: the share of decisive labels (``a`` or ``b``) that chose ``a``, the response shown
  first (0.5 means none), with a 95% Wilson interval.

Standard library only (and the torch-free ``rlhfkit.feedback.agreement``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlhfkit.stats import pairwise_agreement, wilson_interval

LABELS = ("a", "b", "tie", "both_bad")
ROUND_PARTS = ("candidates.jsonl", "selected.jsonl", "labels.jsonl", "reward", "policy", "eval")
_ROUND = re.compile(r"round-(\d+)$")
# Stages of a known kind come in this order within their folder; others follow, by name.
_KIND_ORDER = ("sft", "reward", "ppo", "grpo", "rloo", "dpo", "policy", "eval")
_UNFINISHED = "stage not finished (or its summary was never written)"


@dataclass
class Stage:
    """One stage folder: ``name`` is its path relative to the run folder (``ppo``, ``round-01/eval``)."""

    name: str
    path: Path
    summary: dict | None
    metrics: list[dict]
    samples: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The summary's ``stage`` field (``sft``, ``ppo``, ``eval`` ...), else the folder's name."""
        kind = (self.summary or {}).get("stage")
        return kind if isinstance(kind, str) else self.path.name

    @property
    def is_eval(self) -> bool:
        return isinstance((self.summary or {}).get("policies"), dict)


@dataclass
class LabelStats:
    """Counts, agreement and position bias of one group of labels (a round, or all of them)."""

    group: str
    labels: int
    by_label: dict[str, int]
    agreement: float | None
    agreement_kind: str | None  # "gold" (1 - flip rate) or "pairwise" (between annotators)
    agreement_n: int  # labels with a known flip, or pairs labelled by two annotators or more
    first_chosen: int  # decisive labels that chose "a"
    decisive: int
    annotators: int

    @property
    def position_bias(self) -> float | None:
        return self.first_chosen / self.decisive if self.decisive else None

    @property
    def position_ci(self) -> tuple[float, float] | None:
        return wilson_interval(self.first_chosen, self.decisive)


@dataclass
class Run:
    """Everything `read_run` found; ``missing`` maps each absent part to what the report lacks for it."""

    path: Path
    stages: list[Stage]
    loop: list[dict]
    is_loop: bool
    labels: list[LabelStats]
    missing: dict[str, str]
    problems: list[str]

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def evals(self) -> list[Stage]:
        return [s for s in self.stages if s.is_eval]


def read_run(run_dir: str | Path) -> Run:
    """Read a run folder (a pipeline run or a loop run).

    Raises:
        NotADirectoryError: ``run_dir`` is not a folder.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"{run_dir}: not a folder (expected a run folder such as runs/hh-demo)")
    problems: list[str] = []
    missing: dict[str, str] = {}
    stages = [_read_stage(root, path, problems, missing) for path in _stage_dirs(root)]
    if not any(s.is_eval for s in stages):
        missing["an eval stage"] = "no summary.json with a policies table: no win rates or samples"

    rounds = sorted((p for p in root.iterdir() if p.is_dir() and _ROUND.match(p.name)), key=_round_number)
    loop_path = root / "loop.jsonl"
    is_loop = loop_path.exists() or bool(rounds)
    loop = _read_jsonl(root, loop_path, problems, _check_loop) if loop_path.exists() else []
    if is_loop and not loop_path.exists():
        missing["loop.jsonl"] = "no per-round table or over-optimisation plot"
    logged = {r["round"] for r in loop}
    for folder in rounds:
        _check_round(root, folder, logged, missing)

    labels = []
    all_labels: list[dict] = []
    label_files = sorted(root.glob("*/labels.jsonl"), key=lambda p: (_round_number(p.parent), p.parent.name))
    for path in sorted(root.glob("labels.jsonl")) + label_files:
        records = _read_jsonl(root, path, problems, _check_label)
        if not records:
            missing[_rel(root, path)] = "empty: no labels"
            continue
        labels.append(label_stats(_rel(root, path.parent), records))
        all_labels += records
    if len(labels) > 1:
        labels.append(label_stats("all", all_labels))
    return Run(root, stages, loop, is_loop, labels, missing, problems)


def label_stats(group: str, records: list[dict]) -> LabelStats:
    """Statistics of label records (see the module docstring)."""
    flips = [r["flipped"] for r in records if isinstance(r.get("flipped"), bool)]
    if flips:
        agreement, kind, n = 1 - sum(flips) / len(flips), "gold", len(flips)
    else:
        units: dict[tuple, dict[str, str]] = defaultdict(dict)
        for r in records:
            pair = (r.get("prompt"), r.get("response_a"), r.get("response_b"))
            units[pair][str(r.get("annotator"))] = r["label"]
        agreement, _ = pairwise_agreement(units)
        kind = "pairwise" if agreement is not None else None
        n = sum(1 for values in units.values() if len(values) > 1)
    by_label = Counter(r["label"] for r in records)
    return LabelStats(
        group=group,
        labels=len(records),
        by_label={label: by_label[label] for label in LABELS},
        agreement=agreement,
        agreement_kind=kind,
        agreement_n=n,
        first_chosen=by_label["a"],
        decisive=by_label["a"] + by_label["b"],
        annotators=len({r.get("annotator") for r in records}),
    )


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def score_vs_kl(rows: list[dict]) -> tuple[list[float], list[float]] | None:
    """``(kls, scores)`` per logged step of an RL stage (``kl`` and ``score`` or ``reward``), else None."""
    for key in ("score", "reward"):
        pairs = [(r["kl"], r[key]) for r in rows if is_number(r.get("kl")) and is_number(r.get(key))]
        if pairs:
            kls, scores = zip(*pairs, strict=True)
            return list(kls), list(scores)
    return None


def frontier_data(run: Run) -> tuple[dict[str, list], dict[str, tuple]]:
    """What the reward-vs-KL plot shows: ``({policy: [(kl, score, source)]}, {stage: (method, kls,
    scores)})``: every eval summary's distinct points per policy (``source``: the eval folder, or its
    round), and every RL stage's training steps, as the method of the eval policy of the same folder
    name (else the stage's kind)."""
    points: dict[str, list[tuple[float, float, str]]] = {}
    for stage in run.evals:
        for policy, row in stage.summary["policies"].items():
            if isinstance(row, dict) and is_number(row.get("kl")) and is_number(row.get("score")):
                found = points.setdefault(policy, [])
                if all((kl, score) != (row["kl"], row["score"]) for kl, score, _ in found):
                    found.append((row["kl"], row["score"], stage.name.split("/")[0]))
    curves = {}
    for stage in run.stages:
        series = score_vs_kl(stage.metrics)
        if series:
            curves[stage.name] = (stage.path.name if stage.path.name in points else stage.kind, *series)
    return points, curves


def _stage_dirs(root: Path) -> list[Path]:
    found = {
        p.parent
        for depth in ("", "*/", "*/*/")
        for marker in ("metrics.jsonl", "summary.json")
        for p in root.glob(depth + marker)
    }

    def order(path: Path) -> tuple:
        rel = path.relative_to(root)
        kind = path.name if path.name in _KIND_ORDER else ""
        rank = _KIND_ORDER.index(kind) if kind else len(_KIND_ORDER)
        return (_round_number(rel.parent), str(rel.parent), rank, rel.name)

    return sorted(found, key=order)


def _read_stage(root: Path, path: Path, problems: list[str], missing: dict[str, str]) -> Stage:
    metrics_path, summary_path = path / "metrics.jsonl", path / "summary.json"
    metrics = _read_jsonl(root, metrics_path, problems) if metrics_path.exists() else []
    summary = _read_json(root, summary_path, problems) if summary_path.exists() else None
    stage = Stage(_rel(root, path), path, summary, metrics)
    if not summary_path.exists():
        missing[_rel(root, summary_path)] = _UNFINISHED
    if stage.is_eval:
        samples_path = path / "samples.jsonl"
        if samples_path.exists():
            stage.samples = _read_jsonl(root, samples_path, problems, _check_sample)
        else:
            missing[_rel(root, samples_path)] = "no sample table for this evaluation"
    elif summary is not None and not metrics_path.exists():
        missing[_rel(root, metrics_path)] = "no training curves for this stage"
    return stage


def _check_round(root: Path, folder: Path, logged: set, missing: dict[str, str]) -> None:
    number = _round_number(folder)
    if number not in logged and (root / "loop.jsonl").exists():
        missing[f"loop.jsonl: round {number}"] = "round not finished (no record in loop.jsonl)"
    for part in ROUND_PARTS:
        path = folder / part
        if not path.exists():
            missing[_rel(root, path)] = "not written (round not finished?)"
        elif path.is_dir() and not (path / "summary.json").exists():
            missing[_rel(root, path / "summary.json")] = _UNFINISHED


def _read_json(root: Path, path: Path, problems: list[str]) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(f"{_rel(root, path)}: unreadable ({err})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{_rel(root, path)}: not a JSON object")
        return None
    return value


def _read_jsonl(
    root: Path, path: Path, problems: list[str], check: Callable[[dict], str | None] | None = None
) -> list[dict]:
    """The JSON-object lines of ``path`` that pass ``check`` (which returns an error message or None)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"{_rel(root, path)}: unreadable ({err})")
        return []
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            last = " (the last line: cut off while being written?)" if number == len(lines) else ""
            problems.append(f"{_rel(root, path)}:{number}: malformed JSON{last}")
            continue
        error = "not a JSON object" if not isinstance(row, dict) else check(row) if check else None
        if error:
            problems.append(f"{_rel(root, path)}:{number}: {error}")
        else:
            rows.append(row)
    return rows


def _check_loop(row: dict) -> str | None:
    return None if isinstance(row.get("round"), int) else "field 'round': missing or not an integer"


def _check_label(row: dict) -> str | None:
    label = row.get("label")
    return None if label in LABELS else f"field 'label': {label!r} is not one of {', '.join(LABELS)}"


def _check_sample(row: dict) -> str | None:
    return None if isinstance(row.get("prompt"), str) else "field 'prompt': missing or not a string"


def _round_number(path: Path) -> int:
    match = _ROUND.match(path.name)
    return int(match.group(1)) if match else 0


def _rel(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return root.resolve().name if rel == "." else rel
