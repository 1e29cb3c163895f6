"""Pairwise preference loss for reward models.

Notation:
    B: batch size (number of preference pairs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of the Bradley-Terry preference model.

    Under Bradley & Terry (1952), ``P(chosen > rejected) = sigmoid(r_c - r_r)``; the reward-model
    loss is its negative log (Ouyang et al. 2022, Eq. 1). An optional per-pair margin ``m`` is
    subtracted inside the sigmoid (Touvron et al. 2023, Llama 2, Eq. 2)::

        loss = mean_b( -log sigmoid(r_c[b] - r_r[b] - m[b]) )

    Args:
        chosen_rewards: ``(B,)`` scalar rewards of the preferred responses.
        rejected_rewards: ``(B,)`` scalar rewards of the other responses.
        margin: ``(B,)`` or ``None`` (no margin).

    Returns:
        ``(loss, metrics)``: 0-d loss; metrics ``"accuracy"`` (fraction with ``r_c > r_r``
        strictly), ``"margin"`` (mean ``r_c - r_r``), ``"chosen_reward"``, ``"rejected_reward"``
        (means), all detached.

    Raises:
        ValueError: if the inputs are not 1-D tensors of the same length ``B >= 1``.
    """
    if chosen_rewards.dim() != 1 or chosen_rewards.numel() == 0:
        raise ValueError(f"chosen_rewards must be a non-empty (B,) tensor, got {tuple(chosen_rewards.shape)}")
    if rejected_rewards.shape != chosen_rewards.shape:
        raise ValueError(
            f"rejected_rewards {tuple(rejected_rewards.shape)} must match chosen_rewards "
            f"{tuple(chosen_rewards.shape)}"
        )
    if margin is not None and margin.shape != chosen_rewards.shape:
        raise ValueError(
            f"margin {tuple(margin.shape)} must match chosen_rewards {tuple(chosen_rewards.shape)}"
        )
    diff = chosen_rewards - rejected_rewards  # (B,)
    logits = diff if margin is None else diff - margin.to(diff.dtype)
    loss = -F.logsigmoid(logits).mean()
    d = diff.detach()
    metrics = {
        "accuracy": (d > 0).to(d.dtype).mean(),
        "margin": d.mean(),
        "chosen_reward": chosen_rewards.detach().mean(),
        "rejected_reward": rejected_rewards.detach().mean(),
    }
    return loss, metrics
