"""Training checkpoints that survive a crash, and the guard that stops a run on NaN.

A checkpoint is a folder ``<output_dir>/checkpoints/step-00000012/`` holding, for every stateful object
a trainer registers (models, optimizers, schedulers), its ``state_dict``, plus the RNG states, the step
and the data position. It is written into a temporary folder and renamed into place, and the file
``COMPLETE`` is its last write: a folder without it (a crash mid-save) is never picked for resuming.
Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlhfkit.config import option
from rlhfkit.errors import NonFiniteError

COMPLETE = "COMPLETE"
_PREFIX = "step-"


def check_finite(step: int, **values: Any) -> None:
    """Raise :class:`NonFiniteError` if any named value (a number or tensor) is NaN or infinite.

    Raises:
        NonFiniteError: naming the step and every offending quantity.
    """
    bad = [
        name for name, v in values.items() if not torch.isfinite(torch.as_tensor(v, dtype=torch.float)).all()
    ]
    if bad:
        raise NonFiniteError(
            f"step {step}: {', '.join(bad)} is not finite (NaN or inf); stopping. The last good checkpoint "
            "is kept; lower the learning rate or check the data, then resume with resume=true"
        )


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


@dataclass
class CheckpointConfig:
    """When to write training checkpoints, and whether to resume from one."""

    every: int = option(0, "save model, optimizer, scheduler, RNG and step every N steps (0: never)")
    keep: int = option(2, "how many of the newest checkpoints to keep")
    resume: bool = option(False, "continue from the newest complete checkpoint in <output_dir>/checkpoints")


class Checkpointer:
    """Saves and restores training state under ``<output_dir>/checkpoints``.

    Args:
        cfg: when to save, how many to keep, whether to resume.
        output_dir: the run's output folder.
        objects: name -> object with ``state_dict()`` / ``load_state_dict()`` (models, optimizers,
            schedulers, ``torch.Generator`` s are handled too).
        main: whether this process writes checkpoints (in a distributed run only the main one does; every
            process reads the checkpoint when resuming).
    """

    def __init__(
        self, cfg: CheckpointConfig, output_dir: str | Path, objects: dict[str, Any], main: bool = True
    ):
        if cfg.every < 0 or cfg.keep < 1:
            raise ValueError(f"checkpoint.every must be >= 0 and keep >= 1, got {cfg.every}, {cfg.keep}")
        self.root = Path(output_dir) / "checkpoints"
        self.cfg, self.objects, self.main = cfg, objects, main

    def due(self, step: int) -> bool:
        return self.cfg.every > 0 and step % self.cfg.every == 0

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.exists():
            return []
        found = [p for p in self.root.glob(f"{_PREFIX}*") if (p / COMPLETE).exists()]
        return sorted(found, key=lambda p: int(p.name[len(_PREFIX) :]))

    def save(self, step: int, extra: dict[str, Any] | None = None) -> Path | None:
        """Write the state at ``step`` (plus ``extra``, e.g. the data position) atomically (main process
        only; the others return None). Every process must call it: the state of a sharded model is
        gathered from all of them (:class:`~rlhfkit.trainers.sharding.FullState`)."""
        state = {name: _state(obj) for name, obj in self.objects.items()}
        if not self.main:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"{_PREFIX}{step:08d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=self.root))
        try:
            torch.save(
                {"step": step, "rng": rng_state(), "extra": extra or {}, "objects": state}, tmp / "state.pt"
            )
            (tmp / COMPLETE).write_text(f"{step}\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in self.complete()[: -self.cfg.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def start(self) -> tuple[int, dict[str, Any]]:
        """Where training starts: ``(0, {})``, or with ``cfg.resume`` the newest complete checkpoint, loaded
        into the registered objects and the RNGs, as ``(step, extra)``.

        Raises:
            FileNotFoundError: ``resume`` is set but no complete checkpoint exists.
        """
        if not self.cfg.resume:
            return 0, {}
        found = self.complete()
        if not found:
            raise FileNotFoundError(f"resume=true but {self.root} holds no complete checkpoint")
        state = torch.load(found[-1] / "state.pt", weights_only=False)
        for name, obj in self.objects.items():
            _load(obj, state["objects"][name])
        set_rng_state(state["rng"])
        print(f"[rlhfkit] resumed from {found[-1]} (step {state['step']})", flush=True)
        return state["step"], state["extra"]


def _state(obj: Any) -> Any:
    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _load(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)
