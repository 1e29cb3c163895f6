"""FSDP2 for the RL trainers: the trained models (the policy, and PPO's value model or value head) sharded
over the processes with torch's ``fully_shard``, instead of a DDP copy in every process.

rlhfkit shards these models itself rather than through ``accelerator.prepare``: accelerate chooses its
FSDP mode only on GPUs (on a CPU it runs DDP whatever the launcher config says), and one code path on
CPU and GPU is the one the CPU tests check. What it does:

- :func:`use_fsdp`: whether a run shards (``fsdp=true``, or the launcher's accelerate config asks for
  FSDP: ``ACCELERATE_USE_FSDP=true``, as ``configs/accelerate/fsdp.yaml`` sets it);
- :func:`shard_model`: ``fully_shard`` on every transformer block, then on the whole model. Each
  process keeps 1/N of every parameter, of its gradient and of its AdamW moments; a block's weights are
  gathered for its forward and backward, and the gradients reduce-scattered (averaged, as DDP does);
- :func:`full_weights`: sampling with the whole model gathered once (not once per block per token),
  resharded afterwards; for that time each process holds one full copy of the weights;
- :class:`FullState`: a sharded model or optimizer as :class:`~rlhfkit.trainers.checkpoint.Checkpointer`
  saves it: the full state gathered to the main process's CPU, and sharded again on resume;
- :func:`full_state_dict`: the full weights for ``save_pretrained`` (a plain ``transformers`` folder).

The reference and reward models are never trained: every process keeps its own full, frozen copy
(replicated, outside any optimizer). LoRA runs stay on DDP (their trained adapter is small, and the
reference is the base under it); a DeepSpeed launch is refused (the RL trainers are not built for it).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

FSDP_HELP = (
    "shard the policy (and PPO's value model) over the processes with FSDP2: parameters, gradients and "
    "AdamW state 1/N per process, gathered whole for sampling; also on when the accelerate launcher "
    "config asks for FSDP (ACCELERATE_USE_FSDP=true); the reference and reward models stay replicated"
)


def use_fsdp(cfg, accelerator: Accelerator) -> bool:
    """Whether this run shards its trained models: ``cfg.fsdp`` or ``ACCELERATE_USE_FSDP=true``, with more
    than one process (one process has nothing to shard over: a note is printed and the run goes on).

    Raises:
        ValueError: FSDP is asked for together with LoRA (``cfg.lora``); or the run was launched with a
            DeepSpeed config (``ACCELERATE_USE_DEEPSPEED=true``), which the RL trainers do not support.
    """
    if _env_flag("ACCELERATE_USE_DEEPSPEED"):
        raise ValueError(
            "PPO, GRPO and RLOO do not run under DeepSpeed (sampling needs the policy's whole weights, and "
            "PPO trains two models): launch with configs/accelerate/fsdp.yaml, or multi_gpu.yaml (DDP)"
        )
    wanted = cfg.fsdp or _env_flag("ACCELERATE_USE_FSDP")
    if not wanted:
        return False
    if cfg.lora.enabled:
        raise ValueError(
            "fsdp with lora: LoRA trains a small adapter and uses the base under it as the reference; "
            "run it under DDP (configs/accelerate/multi_gpu.yaml, or fsdp=false)"
        )
    if accelerator.num_processes == 1:
        print("[rlhfkit] fsdp: one process, nothing to shard over; the models stay whole", flush=True)
        return False
    if accelerator.is_main_process:
        print(
            f"[rlhfkit] fsdp: the policy (and a value model) sharded over {accelerator.num_processes} "
            "processes; the reference and reward models replicated",
            flush=True,
        )
    return True


def _env_flag(name: str, default: str = "false") -> bool:
    """Whether environment variable ``name`` (as ``accelerate launch`` sets them) is ``true``."""
    return os.environ.get(name, default).lower() == "true"


def _reshard_after_forward() -> bool:
    """Whether a block frees its gathered weights after its forward (the accelerate config's
    ``fsdp_reshard_after_forward``, default true): less memory, one more all-gather in the backward."""
    return _env_flag("FSDP_RESHARD_AFTER_FORWARD", "true")


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of ``model``, each listed before any block that holds it: the modules whose
    class a ``transformers`` model names in ``_no_split_modules`` (``LlamaDecoderLayer``, ``BertLayer``)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [m for m in reversed(list(model.modules())) if type(m).__name__ in names]


def shard_model(model: nn.Module, accelerator: Accelerator) -> nn.Module:
    """Shard ``model`` in place over all processes (a 1-D mesh on the run's device) and return it: each
    transformer block is one FSDP unit, and the rest (embeddings, final norm, heads) the root unit.
    Parameters become ``DTensor`` shards, so an optimizer must be made after this call.

    The root unit keeps its weights gathered from the forward to the backward (they are needed first in
    the backward), as ``fully_shard`` does for a root by default. While a unit's weights are gathered
    the model's ``parameters()`` are those gathered tensors, not the shards the optimizer holds: read
    them for gradient clipping after the backward, never before it.
    """
    # FSDP2 warns when a unit returns a view (the policy's hidden states, the value head's values): an
    # in-place op on it would skip the unit's pre-backward hook. rlhfkit makes none (a test checks the
    # sharded updates against DDP's, the value head included), so the warning only alarms.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    reshard = _reshard_after_forward()
    for block in _blocks(model):
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, reshard_after_forward=False)
    return model


def is_sharded(model: Any) -> bool:
    """Whether ``model`` was sharded by :func:`shard_model`."""
    return isinstance(model, FSDPModule)


@contextmanager
def full_weights(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with all its weights gathered, for sampling (one all-gather per unit, not one per block per
    generated token); resharded when the block ends. A model that is not sharded is yielded as it is.

    Inside the block every process holds the full weights besides its shards: the price of sampling
    from a sharded model (``benchmarks/fsdp_memory.py`` measures it).
    """
    if not is_sharded(model):
        yield model
        return
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield model
    finally:
        reshard = _reshard_after_forward()
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(reshard and unit is not model, recurse=False)


_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of a sharded ``model``, on the main process's CPU; an empty dict on
    the others. A collective call: every process must make it."""
    return get_model_state_dict(model, options=_GATHER)


class FullState:
    """A sharded model, or the optimizer of one or several sharded models, as a checkpoint sees it.

    ``state_dict()`` gathers the full state onto the main process's CPU (keys are parameter names; the
    other processes get an empty dict) and ``load_state_dict()`` takes such a full state, read by every
    process, and keeps each process's shard of it. Both are collective calls. The main process then
    writes the checkpoint as for a DDP run (one file, written atomically), at the cost of holding the full
    model and AdamW state in its CPU memory while it saves and resumes.

    Args:
        models: the sharded model, or the models whose parameters ``optimizer`` updates.
        optimizer: None for the model's own state.
    """

    def __init__(self, models: nn.Module | list[nn.Module], optimizer: torch.optim.Optimizer | None = None):
        self.model = models if isinstance(models, nn.Module) else nn.ModuleList(models)
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        if self.optimizer is None:
            return get_model_state_dict(self.model, options=_GATHER)
        return get_optimizer_state_dict(self.model, self.optimizer, options=_GATHER)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        options = StateDictOptions(full_state_dict=True)
        if self.optimizer is None:
            set_model_state_dict(self.model, state, options=options)
        else:
            set_optimizer_state_dict(self.model, self.optimizer, state, options=options)


def checkpointed(models: Any, optimizer: torch.optim.Optimizer | None = None) -> Any:
    """What a checkpoint saves for a model (``optimizer`` None) or an optimizer: a :class:`FullState` when
    the model (any of ``models``) is sharded, else the model or optimizer itself."""
    group = models if isinstance(models, (list, tuple)) else [models]
    if not any(is_sharded(m) for m in group):
        return models if optimizer is None else optimizer
    return FullState(list(group) if len(group) > 1 else group[0], optimizer)


def prepare(accelerator: Accelerator, fsdp: bool, *objects: Any) -> Any:
    """``accelerator.prepare(*objects)`` (DDP-wrapped copies of the models), or under FSDP the objects
    themselves: a sharded model takes its gradient steps as it is (FSDP reduce-scatters its gradients).
    One object in, one out; several, a tuple."""
    if fsdp:
        return objects if len(objects) > 1 else objects[0]
    return accelerator.prepare(*objects)
