"""LoRA adapters through peft: add them to a policy, score the base model, merge them back.

With an adapter the frozen base model *is* the reference: :func:`base_model_of` switches the adapter
off for a ``with`` block, so no second copy of the weights is ever held. :func:`merge_lora` folds the
adapter into the base weights so that the saved folder loads with ``AutoModelForCausalLM`` and needs no
peft.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from torch import nn


def add_lora(
    model: nn.Module, r: int, alpha: float, dropout: float, target_modules: Sequence[str]
) -> nn.Module:
    """Wrap ``model`` in a peft LoRA model (rank ``r``, scale ``alpha / r``) on ``target_modules``.

    Only the adapter weights are trainable afterwards; they start as a no-op (LoRA's B matrix is 0).

    Raises:
        ValueError: ``r < 1``, no target modules, or (from peft) none of them exist in the model.
    """
    if r < 1 or not target_modules:
        raise ValueError(f"LoRA needs r >= 1 and target modules, got r={r}, target_modules={target_modules}")
    from peft import LoraConfig, get_peft_model  # peft is slow to import: only when LoRA is used

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


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


def merge_lora(model: nn.Module) -> nn.Module:
    """The plain transformers model with the adapter folded into its weights (``merge_and_unload``)."""
    return model.merge_and_unload() if is_lora(model) else model
