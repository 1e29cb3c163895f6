"""What every trainer shares: the data section of its config, seeding, processes, metrics and saving.

Trainers compose these helpers; there is no trainer base class.

Distributed runs (``accelerate launch`` or ``torchrun``, any number of processes) go through one
``accelerate.Accelerator`` per run (:func:`make_accelerator`): DDP (or FSDP / DeepSpeed, from the
accelerate config) underneath. Every process draws the same *global* batch of ``batch_size x
num_processes`` records and trains on its own slice of it (:func:`shard`), so N processes with
``batch_size=b`` see per step exactly what one process with ``batch_size=N*b`` sees. Only the main
process writes metrics, checkpoints and the saved model.

The RL trainers (PPO, GRPO, RLOO) shard each global batch of prompts the same way; every process samples
its responses with its own generator (:func:`sampling_generator`, seed + process index), so their runs
differ from a one-process run with the global batch.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from transformers import get_scheduler

from rlhfkit.config import config_to_dict, option, save_config
from rlhfkit.data import LoadReport, train_eval_split
from rlhfkit.trainers.checkpoint import Checkpointer

HH_DATA = "../shared/data/hh-rlhf/harmless-base-2000.jsonl.gz"
SUMMARY = "summary.json"
KEEP_SUBDIRS = ("checkpoints", "reference_cache", "tensorboard", "wandb")
ReportTo = Literal["none", "tensorboard", "wandb"]
BF16_HELP = (
    "mixed precision: forward passes compute in bfloat16 (autocast); weights, gradients and AdamW "
    "state stay in dtype (for a GPU, or a CPU with AMX / AVX-512 BF16)"
)

REWARD_NORM_HELP = (
    "reference responses to training prompts, sampled before training, that set the reward's gain and "
    "bias so that they score mean 0, std 1 (Ziegler et al. 2019); kl_coef and missing_eos_penalty are "
    "then in units of that std; 0: the raw reward"
)


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


def setup_torch(seed: int, threads: int | None) -> None:
    """Seed python and torch, and use ``threads`` CPU threads (default: the cores this process may run on,
    e.g. under ``taskset``, shared out among the processes of this machine)."""
    random.seed(seed)
    torch.manual_seed(seed)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(threads or max(1, cores // local_processes))


def make_accelerator() -> Accelerator:
    """The run's ``Accelerator``: one plain process, or one of N under ``accelerate launch`` / ``torchrun``
    (gloo on CPU, NCCL on GPUs; DDP, FSDP or DeepSpeed as the launcher's config says).

    Learning-rate schedulers are stepped by the trainers themselves, once per optimizer step.
    """
    has_accelerator = getattr(torch, "accelerator", None) and torch.accelerator.is_available()
    # cpu=True is how accelerate picks gloo for a multi-process run on a machine without GPUs
    return Accelerator(cpu=not has_accelerator, step_scheduler_with_optimizer=False)


def forward_autocast(cfg, accelerator: Accelerator) -> AbstractContextManager:
    """The context a trainer's forward passes run in (sampling, scoring, reference and loss; never a
    backward pass or an optimizer step): bfloat16 autocast on the run's device when ``cfg.bf16``, else
    none.

    Under it matrix products and attention compute in bfloat16 while weights, gradients and AdamW state
    keep their dtype, so an update of ~lr is not lost to bfloat16 rounding as it is when the weights
    themselves are bfloat16 (``dtype``); log-probs, values and rewards come out in float32. Autocast
    keeps one bfloat16 copy of each trained weight for the length of the block, which is why a block
    never spans an optimizer step. (It is torch's autocast, not accelerate's ``mixed_precision``: that
    one is fixed once per process, and a pipeline runs stages with different settings in one process.)
    """
    if not cfg.bf16:
        return nullcontext()
    return torch.autocast(accelerator.device.type, dtype=torch.bfloat16)


def sampling_generator(accelerator: Accelerator, seed: int) -> torch.Generator:
    """This process's sampling generator, seeded with ``seed + process index``: every process draws its
    own samples (RL trainers), and one process draws exactly what it always did."""
    return torch.Generator().manual_seed(seed + accelerator.process_index)


def generator_states(accelerator: Accelerator, generator: torch.Generator) -> list[torch.Tensor]:
    """Every process's ``generator`` state, in process order, for a checkpoint (a collective call: every
    process calls it)."""
    if accelerator.num_processes == 1:
        return [generator.get_state()]
    return gather_object([generator.get_state()])


def restore_generator(
    accelerator: Accelerator, generator: torch.Generator, states: list | None, seed: int, step: int
) -> None:
    """Give ``generator`` this process's state from a checkpoint's :func:`generator_states`. A checkpoint
    written by a different number of processes has no state for this one: sampling is then re-seeded
    (from ``seed``, the process index and ``step``), so the resumed run samples differently."""
    world, rank = accelerator.num_processes, accelerator.process_index
    if states is not None and len(states) == world:
        generator.set_state(states[rank])
    elif states is not None or world > 1:
        generator.manual_seed(seed + rank + 1_000_003 * step)
        if accelerator.is_main_process:
            print(f"[rlhfkit] checkpoint has no sampling state for {world} processes: re-seeded", flush=True)


def shard(batch: Sequence, accelerator: Accelerator) -> list:
    """This process's slice of a global batch (``len(batch)`` is a multiple of the process count)."""
    per = len(batch) // accelerator.num_processes
    start = accelerator.process_index * per
    return list(batch[start : start + per])


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def mean_over_processes(accelerator: Accelerator, metrics: dict[str, Any]) -> dict[str, Any]:
    """Numeric metrics averaged over all processes (one all-reduce); None and text pass through."""
    if accelerator.num_processes == 1:
        return metrics
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float, torch.Tensor)) and v is not None]
    values = torch.stack([torch.as_tensor(metrics[k], dtype=torch.float64).detach().cpu() for k in keys])
    values = accelerator.reduce(values.to(accelerator.device), "mean").cpu()
    return {**metrics, **dict(zip(keys, values.tolist(), strict=True))}


def from_main(accelerator: Accelerator, value: Any) -> Any:
    """The main process's ``value`` (a picklable object), on every process."""
    if accelerator.num_processes == 1:
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


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
    optimizer = torch.optim.AdamW(
        [p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay, fused=True
    )
    scheduler = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps
    )
    return optimizer, scheduler


def start_training(
    cfg, model: torch.nn.Module, steps: int, main: bool
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, Checkpointer, int, dict, MetricsLog]:
    """The set-up SFT, reward and DPO training share: AdamW over ``model``'s trainable parameters
    (``cfg.lr``, ``cfg.weight_decay``, a linear warmup of ``cfg.warmup_steps``) for ``steps`` updates;
    checkpoints of the model, optimizer and scheduler (``cfg.checkpoint``), resumed from the last complete
    one when asked; the metrics log, continued from there.

    Returns:
        optimizer, scheduler, checkpointer, the last completed step (0 for a fresh run), the resumed
        checkpoint's extra state, and the log.
    """
    optimizer, scheduler = make_optimizer(
        model.parameters(), cfg.lr, cfg.weight_decay, cfg.warmup_steps, steps
    )
    checkpoints = Checkpointer(
        cfg.checkpoint,
        cfg.output_dir,
        {"model": model, "optimizer": optimizer, "scheduler": scheduler},
        main=main,
    )
    start, extra = checkpoints.start()
    log = MetricsLog(cfg.output_dir, resume_step=start, report_to=cfg.report_to, config=cfg, main=main)
    return optimizer, scheduler, checkpoints, start, extra, log


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
    """Save a trained (possibly DDP-wrapped, possibly LoRA) model from the main process: the adapter is
    merged in first, unless ``plain`` (the unwrapped, merged model) is given. Every process must call it;
    they wait for the save to finish."""
    from accelerate.utils import DistributedType

    from rlhfkit.models.lora import merge_lora

    accelerator.wait_for_everyone()
    state_dict = None
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
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


__all__ = [
    "DataConfig",
    "ReportTo",
    "from_main",
    "forward_autocast",
    "make_accelerator",
    "mean_over_processes",
    "save_trained",
    "generator_states",
    "restore_generator",
    "sampling_generator",
    "shard",
    "to_device",
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
