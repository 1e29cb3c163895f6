"""The data section of every stage's config, and the train/eval split all stages share.

A stage reads its records with a loader of :mod:`rlhfkit.data.loaders`, splits them with
:func:`~rlhfkit.data.loaders.train_eval_split` (the same ``split_seed``, the same split in every stage)
and keeps the part its config asks for. Imports no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import option
from rlhfkit.data.errors import LoadReport
from rlhfkit.data.loaders import train_eval_split

HH_DATA = "../shared/data/hh-rlhf/harmless-base-2000.jsonl.gz"


@dataclass
class DataConfig:
    """Where the records come from and how they are split."""

    path: str = option(HH_DATA, "JSONL / JSONL.gz / JSON / parquet file, or a hub dataset id")
    format: Literal["auto", "trl", "hh"] = option("auto", "record format: trl {prompt,chosen,rejected}, hh")
    skip_invalid: bool = option(False, "count and report bad records instead of stopping at the first")
    eval_fraction: float = option(0.1, "share of records held out for evaluation")
    split_seed: int = option(0, "seed of the train/eval split (same seed, same split in every stage)")
    train_part: Literal["all", "first_half", "second_half"] = option(
        "all",
        "which part of the training split to use: the two halves are disjoint (a proxy reward model on "
        "one, a judge on the other)",
    )
    max_train: int | None = option(None, "use at most this many training records (after the split)")
    max_eval: int | None = option(None, "use at most this many held-out records")


def load_split(data: DataConfig, loader: Callable[..., LoadReport]) -> tuple[list, list]:
    """Load records with ``loader(path, skip_invalid=...)`` and split them into (train, eval), both capped;
    ``data.train_part`` keeps the first or second half of the training split (the first half holds
    ``ceil(n / 2)`` records).

    Skipped records are reported on stdout, never dropped silently.

    Raises:
        rlhfkit.data.DataError: bad input (file, line, field), unless ``data.skip_invalid``.
    """
    report = loader(data.path, skip_invalid=data.skip_invalid)
    if report.skipped:
        print(f"[rlhfkit] {report.summary()}", flush=True)
    train, held_out = train_eval_split(report.records, data.eval_fraction, data.split_seed)
    half = (len(train) + 1) // 2
    train = {"all": train, "first_half": train[:half], "second_half": train[half:]}[data.train_part]
    return train[: data.max_train], held_out[: data.max_eval]
