"""Saving a stage's output atomically: the trained model (``save_pretrained``, so it loads in plain
``transformers``), its tokenizer, config, metrics and ``summary.json``; a summary for a stage with no
model; reading a completed stage's summary."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from rlhfkit.config import save_config

SUMMARY = "summary.json"
KEEP_SUBDIRS = ("checkpoints", "reference_cache", "tensorboard", "wandb")


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


def save_trained(
    accelerator: Accelerator,
    model,
    tokenizer,
    output_dir: str | Path,
    config: Any,
    summary: dict[str, Any],
    plain=None,
) -> None:
    """Save a trained (possibly DDP-wrapped or sharded, possibly LoRA) model from the main process: the
    adapter is merged in first, unless ``plain`` (the unwrapped, merged model) is given; a sharded model's
    full weights are gathered first. Every process must call it; they wait for the save to finish."""
    from accelerate.utils import DistributedType

    from rlhfkit.models.lora import merge_lora
    from rlhfkit.trainers.sharding import full_state_dict, is_sharded

    accelerator.wait_for_everyone()
    state_dict = None
    if is_sharded(model):  # rlhfkit's own FSDP2 (the RL trainers)
        state_dict = full_state_dict(model)  # a collective call
    elif accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        state_dict = accelerator.get_state_dict(model)  # gathered from the shards (a collective call)
    if accelerator.is_main_process:
        if plain is None:
            plain = merge_lora(accelerator.unwrap_model(model))
        save_model(plain, tokenizer, output_dir, config, summary, state_dict=state_dict)
    accelerator.wait_for_everyone()


def save_model(
    model, tokenizer, output_dir: str | Path, config: Any, summary: dict[str, Any], state_dict=None
) -> Path:
    """Save a trained model with ``save_pretrained`` (safetensors), its tokenizer, the run's config
    (``rlhfkit_config.yaml``), its metrics file and ``summary.json``, atomically.

    A folder with ``summary.json`` is a completed stage; the pipeline skips it on a re-run.
    """
    metrics = Path(output_dir) / "metrics.jsonl"

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=state_dict)
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
