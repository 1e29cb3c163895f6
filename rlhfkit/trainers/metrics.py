"""A run's metrics: one JSON row per step in ``metrics.jsonl``, and the experiment trackers
(TensorBoard, Weights & Biases) through ``accelerate.tracking``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

import torch

from rlhfkit.config import config_to_dict

ReportTo = Literal["none", "tensorboard", "wandb"]


class MetricsLog:
    """Appends one JSON object per step to ``<output_dir>/metrics.jsonl``, keeps them in memory, and sends
    the same rows to an experiment tracker (``report_to``) through ``accelerate.tracking``.

    ``report_to="tensorboard"`` writes event files to ``<output_dir>/tensorboard/``;
    ``report_to="wandb"`` logs to Weights & Biases, offline (``WANDB_MODE=offline``, files in
    ``<output_dir>/wandb/``) unless ``WANDB_MODE`` says otherwise; the project is ``$WANDB_PROJECT`` or
    ``rlhfkit`` and the run is named after the output folder.

    A resumed run (``resume_step > 0``) keeps the rows of steps up to ``resume_step`` and drops the rest
    (steps logged after the checkpoint, which the resumed run will do again; a tracker gets those steps a
    second time). With ``main=False`` (every process but the main one) nothing is written.

    Raises:
        ModuleNotFoundError: the tracker's package (``tensorboard``, ``wandb``) is not installed.
    """

    def __init__(
        self,
        output_dir: str | Path,
        resume_step: int = 0,
        report_to: ReportTo = "none",
        config: Any = None,
        main: bool = True,
    ):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.main = main
        self.rows: list[dict[str, Any]] = []
        if resume_step and self.path.exists():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.rows = [r for r in rows if r["step"] <= resume_step]
        if main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
            os.replace(tmp, self.path)  # never a half-written file for the other processes to read
        self._start = time.time() - (self.rows[-1]["time_s"] if self.rows else 0.0)
        self.trackers = _start_trackers(report_to, Path(output_dir), config) if main else []

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        row = {"step": step, "time_s": round(time.time() - self._start, 2)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        self.rows.append(row)
        if self.main:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            numbers = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
            for tracker in self.trackers:
                tracker.log(numbers, step=step)
        return row

    def close(self) -> None:
        """Flush and close the trackers (before the output folder is saved)."""
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def _start_trackers(report_to: ReportTo, output_dir: Path, config: Any) -> list:
    if report_to == "none":
        return []
    from accelerate import PartialState
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, filter_trackers

    PartialState()  # accelerate's logging (used by filter_trackers) needs its state
    if report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
    if not filter_trackers([report_to], output_dir):
        raise ModuleNotFoundError(
            f"report_to={report_to} needs the {report_to!r} package: pip install {report_to}"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    if report_to == "tensorboard":
        tracker = LOGGER_TYPE_TO_CLASS["tensorboard"]("tensorboard", output_dir)
    else:
        project = os.environ.get("WANDB_PROJECT", "rlhfkit")
        tracker = LOGGER_TYPE_TO_CLASS["wandb"](project, name=output_dir.name, dir=str(output_dir))
    tracker.start()
    if config is not None:
        tracker.store_init_configuration(_flat(config_to_dict(config)))
    return [tracker]


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"dotted.key": scalar}; lists become their text (trackers take scalars)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    return round(value, 6) if isinstance(value, float) else value
