"""Per-token rewards: KL penalty on every token plus the sequence score on the last one.

Notation:
    B: batch size.
    T: number of response tokens (padded length).

Each row of ``mask`` is contiguous from ``t = 0`` (response tokens, then padding).
"""

from __future__ import annotations

import torch


def kl_shaped_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Reward-model score minus a per-token KL penalty.

    Implements ``R(x, y) = r(x, y) - beta * log(pi(y|x) / rho(y|x))`` (Ziegler et al. 2019, Eq. 2;
    Ouyang et al. 2022, Eq. 2) with the KL term estimated per token.

    The reward is spread over tokens: every valid token gets
    ``-beta * kl_t``, and the last valid token of row ``b`` (index ``mask[b].sum() - 1``) also gets
    ``scores[b]``.

    Args:
        scores: ``(B,)`` sequence-level reward-model scores.
        kl: ``(B, T)`` per-token KL estimates (see ``rlhfkit.losses.kl_estimate``).
        mask: ``(B, T)`` 1 on valid response tokens, contiguous from ``t = 0``.
        beta: KL coefficient (e.g. a controller's ``.beta``).

    Returns:
        ``(B, T)`` rewards, exactly 0 where ``mask`` is 0.

    Raises:
        ValueError: on shape mismatch, a row with no valid token, or a row that is not contiguous
            from ``t = 0``.
    """
    if kl.dim() != 2 or mask.shape != kl.shape or scores.shape != kl.shape[:1]:
        raise ValueError(
            f"expected scores (B,), kl (B, T), mask (B, T); got {tuple(scores.shape)}, "
            f"{tuple(kl.shape)}, {tuple(mask.shape)}"
        )
    valid = mask != 0  # (B, T)
    lengths = valid.sum(dim=1)  # (B,)
    if (lengths == 0).any():
        empty = lengths.eq(0).nonzero().flatten().tolist()
        raise ValueError(f"kl_shaped_rewards: rows {empty} have no valid token")
    if (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ValueError("kl_shaped_rewards: each mask row must be contiguous from t=0 (no 1 after a 0)")
    rewards = torch.where(valid, -beta * kl, torch.zeros_like(kl))  # (B, T)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    return rewards.scatter_add(1, last, scores.to(rewards.dtype).unsqueeze(1))
