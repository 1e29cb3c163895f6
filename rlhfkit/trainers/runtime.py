"""Torch, process and precision set-up of a run: seeds and threads, the ``Accelerator``, bfloat16
autocast, the sampling generators and their checkpointed states, and what processes share.

Distributed runs (``accelerate launch`` or ``torchrun``, any number of processes) go through one
``accelerate.Accelerator`` per run (:func:`make_accelerator`): DDP (or FSDP / DeepSpeed, from the
accelerate config) underneath. Every process draws the same *global* batch of ``batch_size x
num_processes`` records and trains on its own slice of it (:func:`shard`), so N processes with
``batch_size=b`` see per step exactly what one process with ``batch_size=N*b`` sees. Only the main
process writes metrics, checkpoints and the saved model.

The RL trainers (PPO, GRPO, RLOO) shard each global batch of prompts the same way; every process samples
its responses with its own generator (:func:`sampling_generator`, seed + process index), so their runs
differ from a one-process run with the global batch. Under FSDP they shard their trained models
themselves (:mod:`rlhfkit.trainers.sharding`), on CPU and GPU alike, instead of a DDP copy per process.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

BF16_HELP = (
    "mixed precision: forward passes compute in bfloat16 (autocast); weights, gradients and AdamW "
    "state stay in dtype (for a GPU, or a CPU with AMX / AVX-512 BF16)"
)


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
