"""Generalised Advantage Estimation over right-padded token sequences.

Notation:
    B: batch size.
    T: number of response tokens (padded length).

Each row of ``mask`` is contiguous from ``t = 0``: ones on the response tokens, then zeros on
padding. The episode ends at the last valid token, so ``V`` and ``A`` beyond it count as 0.
"""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) advantages and value targets (Schulman et al. 2016, Eq. 16).

    Computed backwards over the tokens::

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}
        returns_t = A_t + V_t

    with ``V_{t+1} = A_{t+1} = 0`` beyond the last valid token of each row. Rollout quantities
    carry no gradient: the inputs are detached and the computation runs under ``torch.no_grad``.

    Args:
        rewards: ``(B, T)`` per-token rewards (e.g. from ``kl_shaped_rewards``).
        values: ``(B, T)`` value estimates at rollout time.
        mask: ``(B, T)`` 1 on valid response tokens, contiguous from ``t = 0``.
        gamma: discount factor in ``[0, 1]``.
        lam: GAE lambda in ``[0, 1]``.

    Returns:
        ``(advantages, returns)``, both ``(B, T)`` and exactly 0 where ``mask`` is 0.

    Raises:
        ValueError: on shape mismatch, ``gamma`` or ``lam`` outside ``[0, 1]``, or a mask row that
            is not contiguous from ``t = 0`` (a 1 after a 0).
    """
    if rewards.shape != mask.shape or values.shape != mask.shape or mask.dim() != 2:
        raise ValueError(
            f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask {tuple(mask.shape)} "
            "must all be (B, T)"
        )
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must be in [0, 1], got gamma={gamma}, lam={lam}")
    with torch.no_grad():
        valid = mask.detach() != 0  # (B, T) bool
        if (valid[:, 1:] & ~valid[:, :-1]).any():
            raise ValueError("compute_gae: each mask row must be contiguous from t=0 (no 1 after a 0)")
        zero = torch.zeros((), dtype=values.dtype, device=values.device)
        r = torch.where(valid, rewards.detach().to(values.dtype), zero)  # (B, T)
        v = torch.where(valid, values.detach(), zero)  # (B, T)
        advantages = torch.zeros_like(v)
        next_value = torch.zeros_like(v[:, 0])  # (B,)
        next_adv = torch.zeros_like(v[:, 0])  # (B,)
        for t in reversed(range(v.size(1))):
            delta = r[:, t] + gamma * next_value - v[:, t]
            adv = torch.where(valid[:, t], delta + gamma * lam * next_adv, zero)
            advantages[:, t] = adv
            next_value, next_adv = v[:, t], adv  # both 0 on padding, so the episode ends there
        returns = torch.where(valid, advantages + v, zero)
    return advantages, returns
