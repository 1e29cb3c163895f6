"""What every trainer shares: the data section of its config, seeding, metrics files and saving.

Trainers compose these helpers; there is no trainer base class.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import get_scheduler

from rlhfkit.config import config_to_dict, option, save_config
from rlhfkit.data import LoadReport, train_eval_split

HH_DATA = "../shared/data/hh-rlhf/harmless-base-2000.jsonl.gz"
SUMMARY = "summary.json"
KEEP_SUBDIRS = ("checkpoints", "reference_cache")


@dataclass
class DataConfig:
    """Where the records come from and how they are split."""

    path: str = option(HH_DATA, "JSONL / JSONL.gz / JSON / parquet file, or a hub dataset id")
    format: Literal["auto", "trl", "hh"] = option("auto", "record format: trl {prompt,chosen,rejected}, hh")
    skip_invalid: bool = option(False, "count and report bad records instead of stopping at the first")
    eval_fraction: float = option(0.1, "share of records held out for evaluation")
    split_seed: int = option(0, "seed of the train/eval split (same seed, same split in every stage)")
    max_train: int | None = option(None, "use at most this many training records (after the split)")
    max_eval: int | None = option(None, "use at most this many held-out records")


def load_split(data: DataConfig, loader: Callable[..., LoadReport]) -> tuple[list, list]:
    """Load records with ``loader(path, skip_invalid=...)`` and split them into (train, eval), both capped.

    Skipped records are reported on stdout, never dropped silently.

    Raises:
        rlhfkit.data.DataError: bad input (file, line, field), unless ``data.skip_invalid``.
    """
    report = loader(data.path, skip_invalid=data.skip_invalid)
    if report.skipped:
        print(f"[rlhfkit] {report.summary()}", flush=True)
    train, held_out = train_eval_split(report.records, data.eval_fraction, data.split_seed)
    return train[: data.max_train], held_out[: data.max_eval]


def setup_torch(seed: int, threads: int | None) -> None:
    """Seed python and torch, and use ``threads`` CPU threads (default: every core)."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)


def batches(items: Sequence, batch_size: int, seed: int, skip: int = 0) -> Iterator[list]:
    """Endless shuffled batches: each pass over ``items`` is a fresh permutation (``seed`` + pass).

    ``skip`` batches are passed over first, so a resumed run sees the same data as an uninterrupted one.
    """
    per_epoch = len(items) // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch size {batch_size} is larger than the {len(items)} records")
    epoch, start = divmod(skip, per_epoch)
    while True:
        order = list(range(len(items)))
        random.Random(seed + epoch).shuffle(order)
        for first in range(start * batch_size, per_epoch * batch_size, batch_size):
            yield [items[i] for i in order[first : first + batch_size]]
        epoch, start = epoch + 1, 0


def make_optimizer(
    params, lr: float, weight_decay: float, warmup_steps: int, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warmup to ``lr`` and a constant rate after it."""
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)
    scheduler = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps
    )
    return optimizer, scheduler


class MetricsLog:
    """Appends one JSON object per step to ``<output_dir>/metrics.jsonl`` and keeps them in memory.

    A resumed run (``resume_step > 0``) keeps the rows of steps up to ``resume_step`` and drops the rest
    (steps logged after the checkpoint, which the resumed run will do again).
    """

    def __init__(self, output_dir: str | Path, resume_step: int = 0):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        if resume_step and self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.rows = [r for r in rows if r["step"] <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self._start = time.time() - (self.rows[-1]["time_s"] if self.rows else 0.0)

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        row = {"step": step, "time_s": round(time.time() - self._start, 2)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    return round(value, 6) if isinstance(value, float) else value


def atomic_save(save: Callable[[Path], None], output_dir: str | Path) -> Path:
    """Run ``save(tmp)`` into a temporary folder beside ``output_dir``, then rename it into place.

    A crash mid-save leaves the previous ``output_dir`` (or nothing), never a half-written one. Training
    checkpoints and caches (``KEEP_SUBDIRS``) are carried over into the new folder.
    """
    target = Path(output_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        save(tmp)
        for keep in KEEP_SUBDIRS:
            if (target / keep).exists():
                os.replace(target / keep, tmp / keep)
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_model(model, tokenizer, output_dir: str | Path, config: Any, summary: dict[str, Any]) -> Path:
    """Save a trained model with ``save_pretrained`` (safetensors), its tokenizer, the run's config
    (``rlhfkit_config.yaml``), its metrics file and ``summary.json``, atomically.

    A folder with ``summary.json`` is a completed stage; the pipeline skips it on a re-run.
    """
    metrics = Path(output_dir) / "metrics.jsonl"

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_config(config, tmp / "rlhfkit_config.yaml")
        if metrics.exists():
            shutil.copy(metrics, tmp / "metrics.jsonl")
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")

    return atomic_save(save, output_dir)


def write_summary(output_dir: str | Path, config: Any, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` and the config of a stage that saves no model (evaluation)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "rlhfkit_config.yaml")
    tmp = out / f".{SUMMARY}.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / SUMMARY)


def read_summary(output_dir: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a completed stage, or None."""
    path = Path(output_dir) / SUMMARY
    return json.loads(path.read_text()) if path.exists() else None


__all__ = [
    "DataConfig",
    "HH_DATA",
    "MetricsLog",
    "atomic_save",
    "batches",
    "config_to_dict",
    "load_split",
    "make_optimizer",
    "read_summary",
    "save_model",
    "setup_torch",
    "write_summary",
]
