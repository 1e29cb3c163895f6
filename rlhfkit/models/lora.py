"""LoRA adapters through peft, and gradient checkpointing: the memory options every trainer shares.

Every trainer config has a ``lora: LoRAConfig`` section (``lora.r=8 lora.alpha=16``; ``r = 0`` is full
fine-tuning) and a ``gradient_checkpointing`` flag; :func:`prepare_trainable` applies both.

With an adapter the frozen base model *is* the reference: :func:`base_model_of` switches the adapter
off for a ``with`` block, and :func:`reference_of` picks between a loaded reference and the policy with
its adapter off, so no second copy of the weights is ever held. :func:`merge_lora` folds the adapter
into the base weights so that the saved folder loads with ``AutoModelForCausalLM`` (or
``AutoModelForSequenceClassification``) and needs no peft.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rlhfkit.config import option

TaskType = Literal["CAUSAL_LM", "SEQ_CLS"]


@dataclass
class LoRAConfig:
    """LoRA (Hu et al. 2021): train low-rank adapters on some linear layers instead of every weight."""

    r: int = option(0, "LoRA rank; 0 = off (full fine-tuning)")
    alpha: float = option(16.0, "LoRA scale numerator (scale = alpha / r)")
    dropout: float = option(0.0, "dropout on the LoRA input")
    target_modules: list[str] | None = option(
        None,
        "module names that get an adapter, e.g. [q_proj, v_proj]; [all-linear] for every linear layer; "
        "null: peft's default for the architecture (q_proj/v_proj for Llama, query/value for BERT)",
    )

    def __post_init__(self):
        if self.r < 0:
            raise ValueError("lora.r must be >= 0 (0: full fine-tuning)")
        if self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError("lora.alpha must be > 0 and lora.dropout in [0, 1)")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("lora.target_modules must name at least one module (or be null)")

    @property
    def enabled(self) -> bool:
        return self.r > 0


def add_lora(model: nn.Module, cfg: LoRAConfig, task_type: TaskType = "CAUSAL_LM") -> nn.Module:
    """Wrap ``model`` in a peft LoRA model (rank ``cfg.r``, scale ``alpha / r``) on ``cfg.target_modules``.

    Only the adapter weights are trainable afterwards; they start as a no-op (LoRA's B matrix is 0).
    With ``task_type="SEQ_CLS"`` (reward models) peft also keeps the scalar head (``score`` or
    ``classifier``) fully trainable (``modules_to_save``), since a fresh head must be learned.

    Raises:
        ValueError: ``cfg.r < 1``, or (from peft) none of the target modules exist in the model.
    """
    if cfg.r < 1:
        raise ValueError(f"LoRA needs r >= 1, got r={cfg.r}")
    from peft import LoraConfig, get_peft_model  # peft is slow to import: only when LoRA is used

    targets = cfg.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"  # peft's shorthand is a string, not a list
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        task_type=task_type,
    )
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Recompute activations in the backward pass instead of storing them (non-reentrant checkpoints,
    which need no ``enable_input_require_grads`` under LoRA). Memory for compute: about a third slower."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def prepare_trainable(
    model: nn.Module, lora: LoRAConfig, gradient_checkpointing: bool, task_type: TaskType = "CAUSAL_LM"
) -> nn.Module:
    """Apply the memory options to a freshly loaded model: gradient checkpointing, then LoRA if ``lora.r``.

    Warns (``UserWarning``) when every weight is to be trained in bfloat16 or float16 (``dtype``, no LoRA):
    an AdamW step of ~lr is below those formats' resolution for most weights and is rounded away.
    """
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    if dtype in (torch.bfloat16, torch.float16) and not lora.enabled:
        warnings.warn(
            f"training every weight in {str(dtype).removeprefix('torch.')}: AdamW steps of ~lr are mostly "
            "rounded away at that precision; load in float32 (dtype=float32) and set bf16=true for mixed "
            "precision, or train LoRA adapters (lora.r > 0)",
            stacklevel=2,
        )
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return add_lora(model, lora, task_type) if lora.enabled else model


def is_lora(model: nn.Module) -> bool:
    """True if ``model`` carries peft adapters that :func:`base_model_of` can switch off."""
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


def base_model_of(model: nn.Module) -> contextlib.AbstractContextManager:
    """``with base_model_of(model):`` runs ``model`` with its LoRA adapter disabled (the reference).

    Raises:
        TypeError: ``model`` has no LoRA adapter.
    """
    if not is_lora(model):
        raise TypeError(f"{type(model).__name__} has no LoRA adapter to disable")
    return model.disable_adapter()


@contextlib.contextmanager
def reference_of(policy: nn.Module, reference: nn.Module | None) -> Iterator[nn.Module]:
    """``with reference_of(policy, reference) as ref:`` yields the model that scores the reference:
    ``reference`` if one is loaded, else ``policy`` (unwrapped, not DDP) with its LoRA adapter off.

    Raises:
        TypeError: no reference is loaded and ``policy`` has no adapter.
    """
    if reference is not None:
        yield reference
        return
    with base_model_of(policy):
        yield policy


def needs_reference_copy(lora: LoRAConfig, policy: str, reference: str | None) -> bool:
    """Whether a trainer must load a reference model: not with LoRA when the reference is the policy's
    own starting point (the base under the adapter), only when a different reference is named."""
    return not lora.enabled or reference not in (None, policy)


def merge_lora(model: nn.Module) -> nn.Module:
    """The plain transformers model with the adapter folded into its weights (``merge_and_unload``).

    For a sequence classifier the trained copy of the head replaces the original one.
    """
    return model.merge_and_unload() if is_lora(model) else model
