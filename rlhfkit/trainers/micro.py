"""One optimizer step over a minibatch, computed in micro-batches whose gradients are accumulated.

Activations are kept for one micro-batch at a time instead of the whole minibatch, so memory no longer
grows with the minibatch; the update is the same. Each micro-batch's loss is weighted by its share of the
minibatch's aggregate: with a mean over all valid tokens (``"token"``) its share of the tokens, with a
mean over rows (``"sequence"``) its share of the rows. The weighted sum of the micro-batch losses is
then the minibatch loss, and its gradient the minibatch gradient.

Notation:
    M  rows of the minibatch
    R  response length
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from accelerate import Accelerator

from rlhfkit.trainers.checkpoint import check_finite
from rlhfkit.trainers.runtime import forward_autocast

LossFn = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def micro_batches(
    idx: torch.Tensor, mask: torch.Tensor, aggregation: str, size: int | None
) -> list[tuple[torch.Tensor, float]]:
    """Split minibatch rows ``idx`` (M,) into micro-batches of at most ``size`` rows (None: one), each
    with its weight in the minibatch loss (``mask`` (N, R) marks the valid response tokens of all rows).

    Raises:
        ValueError: ``aggregation`` is neither ``"token"`` nor ``"sequence"``.
    """
    if aggregation not in ("token", "sequence"):
        raise ValueError(f"unknown aggregation {aggregation!r}")
    parts = idx.split(size) if size else (idx,)
    if aggregation == "sequence":
        return [(part, len(part) / len(idx)) for part in parts]
    tokens = float(mask[idx].sum())
    return [(part, float(mask[part].sum()) / tokens) for part in parts]


def accumulated_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    parts: list[tuple[torch.Tensor, float]],
    loss_fn: LossFn,
    max_grad_norm: float,
    step: int,
) -> dict[str, float]:
    """Backward ``loss_fn(rows)`` of every micro-batch, weighted, then clip and take one optimizer step.

    Under DDP, gradients are synchronised on the last micro-batch only (``accelerator.no_sync``).

    Returns:
        the loss and metrics of the minibatch: weighted sums of the micro-batch values.
    Raises:
        rlhfkit.errors.NonFiniteError: a loss is NaN or infinite (before the optimizer step).
    """
    totals: dict[str, float] = {}
    for i, (rows, weight) in enumerate(parts):
        sync = nullcontext() if i == len(parts) - 1 else accelerator.no_sync(model)
        with sync:
            loss, metrics = loss_fn(rows)
            check_finite(step, loss=loss)
            accelerator.backward(loss * weight)  # DDP averages the gradients over processes
        for key, value in {"loss": loss, **metrics}.items():
            totals[key] = totals.get(key, 0.0) + weight * float(value.detach())
    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return totals


def epoch_updates(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    order: torch.Tensor,
    mask: torch.Tensor,
    cfg: Any,
    loss_fn: LossFn,
    step: int,
    stats: dict[str, list[float]],
) -> None:
    """One pass over the rows in ``order``: a gradient step per ``cfg.mini_batch_size`` rows, each in
    micro-batches of ``cfg.micro_batch_size`` (aggregation ``cfg.loss_aggregation``, clipping at
    ``cfg.max_grad_norm``; losses under :func:`~rlhfkit.trainers.runtime.forward_autocast`); every step's
    loss and metrics are appended to ``stats``."""

    def autocast_loss(rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with forward_autocast(cfg, accelerator):
            return loss_fn(rows)

    for idx in order.split(cfg.mini_batch_size):
        parts = micro_batches(idx, mask, cfg.loss_aggregation, cfg.micro_batch_size)
        totals = accumulated_step(
            accelerator, model, optimizer, parts, autocast_loss, cfg.max_grad_norm, step
        )
        for key, value in totals.items():
            stats.setdefault(key, []).append(value)
