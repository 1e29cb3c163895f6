"""Where a loop run keeps its files (``rlhfkit report`` reads the same names), and reading/writing them.

    <runs_dir>/<name>/rlhfkit_config.yaml     the LoopConfig of the latest invocation
    <runs_dir>/<name>/loop.jsonl              one record per finished round
    <runs_dir>/<name>/heldout.jsonl           gold-labelled held-out pairs (simulated labeler only)
    <runs_dir>/<name>/gold/pairs.jsonl        self-play pairs the gold model trains on (simulated.self_play):
                                              {prompt, chosen: the human response, rejected: a policy sample}
                          heldout-pairs.jsonl the same for held-out messages: the gold model's accuracy
                          reward/             the gold reward model (train_reward output)
                          accuracy.json       its accuracy on heldout-pairs.jsonl
    <runs_dir>/<name>/round-01/candidates.jsonl    {"prompt", "responses": [K strings], "has_eos": [K]}
                              selected.jsonl      {"prompt", "response_a", "response_b", "selection_score",
                                                   "strategy"}
                              labels.jsonl        see rlhfkit.loop.labeler
                              pairs.jsonl         every trainable label up to this round {prompt, chosen,
                                                   rejected}: what the reward model (and DPO) train on
                              reward/             train_reward output (ensemble member 0)
                              reward-ensemble/member-1/ ...   the other members (strategy ensemble)
                              policy/             the ppo / grpo / dpo output
                              eval/               evaluate output: summary.json, samples.jsonl
                              timing.json         seconds spent in each stage of the round

Every file is written atomically (temporary file, then rename), so a file that exists is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhfkit.data import read_records
from rlhfkit.feedback.export import write_jsonl

__all__ = [
    "RoundPaths",
    "RunLayout",
    "read_jsonl",
    "write_jsonl",
    "add_timing",
    "total_time",
    "replace_record",
]


@dataclass(frozen=True)
class RoundPaths:
    """The files and folders of one round."""

    dir: Path

    @property
    def candidates(self) -> Path:
        return self.dir / "candidates.jsonl"

    @property
    def selected(self) -> Path:
        return self.dir / "selected.jsonl"

    @property
    def labels(self) -> Path:
        return self.dir / "labels.jsonl"

    @property
    def pairs(self) -> Path:
        return self.dir / "pairs.jsonl"

    @property
    def reward(self) -> Path:
        return self.dir / "reward"

    def member(self, m: int) -> Path:
        """Reward model ``m`` of the round's ensemble: ``reward/`` (m = 0), ``reward-ensemble/member-m``."""
        return self.reward if m == 0 else self.dir / "reward-ensemble" / f"member-{m}"

    def members(self, size: int) -> list[Path]:
        """The reward models of an ensemble of ``size``, member 0 first."""
        return [self.member(m) for m in range(size)]

    @property
    def policy(self) -> Path:
        return self.dir / "policy"

    @property
    def eval(self) -> Path:
        return self.dir / "eval"

    @property
    def timing(self) -> Path:
        return self.dir / "timing.json"


@dataclass(frozen=True)
class RunLayout:
    """The folder of one loop run."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "rlhfkit_config.yaml"

    @property
    def records(self) -> Path:
        return self.root / "loop.jsonl"

    @property
    def heldout(self) -> Path:
        return self.root / "heldout.jsonl"

    @property
    def gold(self) -> RoundPaths:
        """The self-play gold model's folder (``pairs``, ``reward``, ``timing`` as in a round)."""
        return RoundPaths(self.root / "gold")

    @property
    def gold_heldout(self) -> Path:
        return self.root / "gold" / "heldout-pairs.jsonl"

    @property
    def gold_accuracy(self) -> Path:
        return self.root / "gold" / "accuracy.json"

    def round(self, r: int) -> RoundPaths:
        """Round ``r`` (1-based): ``round-01``, ``round-02``, ..."""
        return RoundPaths(self.root / f"round-{r:02d}")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL file (errors name the file and line, see ``rlhfkit.data.read_records``)."""
    return [record for _, record in read_records(path)]


def add_timing(paths: RoundPaths, stage: str, seconds: float) -> None:
    """Record the wall time of a stage in ``timing.json`` (a re-run stage replaces its old time)."""
    timing = json.loads(paths.timing.read_text()) if paths.timing.exists() else {}
    timing[stage] = round(seconds, 1)
    tmp = paths.timing.with_name(f".{paths.timing.name}.tmp")
    tmp.write_text(json.dumps(timing, indent=2) + "\n")
    os.replace(tmp, paths.timing)


def total_time(paths: RoundPaths) -> float:
    """Seconds spent on the round over every invocation that worked on it."""
    return round(sum(json.loads(paths.timing.read_text()).values()), 1) if paths.timing.exists() else 0.0


def replace_record(path: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Put ``record`` into the ``loop.jsonl`` at ``path`` in place of the record of its round (rounds in
    order); returns all records."""
    records = [r for r in (read_jsonl(path) if path.exists() else []) if r["round"] != record["round"]]
    records = sorted([*records, record], key=lambda r: r["round"])
    write_jsonl(path, records)
    return records
