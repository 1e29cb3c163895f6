"""PPO clipped policy loss and clipped value loss, per token.

Notation:
    B: batch size.
    T: number of response tokens.

All inputs are ``(B, T)``; ``mask`` is 1 on valid response tokens. Losses are token-level
means over the mask (``masked_mean`` over the whole batch).
"""

from __future__ import annotations

import torch

from rlhfkit.losses.masked import masked_mean


def _check_shapes(mask: torch.Tensor, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.shape != mask.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must have the shape of mask {tuple(mask.shape)}")


def _check_eps(clip_eps: float) -> None:
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate objective of PPO (Schulman et al. 2017, Eq. 7), negated as a loss.

    With ``ratio = exp(logprobs - old_logprobs)``, the per-token loss is::

        max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps))

    and the loss is its mean over the masked tokens.

    Args:
        logprobs: ``(B, T)`` log-probs of the taken tokens under the current policy (with grad).
        old_logprobs: ``(B, T)`` log-probs under the policy that sampled them (detached).
        advantages: ``(B, T)`` advantage estimates (detached).
        mask: ``(B, T)`` 1 for valid tokens.
        clip_eps: clipping range ``eps > 0``.

    Returns:
        ``(loss, metrics)``: metrics ``"clip_frac"`` (masked fraction of tokens where the clipped
        term is strictly larger, i.e. used), ``"approx_kl"`` (masked mean of
        ``0.5 * (logprobs - old_logprobs)^2``), ``"ratio"`` (masked mean ratio), all detached.

    Raises:
        ValueError: on shape mismatch or ``clip_eps <= 0``.
    """
    _check_shapes(mask, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
    _check_eps(clip_eps)
    log_ratio = logprobs - old_logprobs  # (B, T)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        metrics = {
            "clip_frac": masked_mean((clipped > unclipped).to(ratio.dtype), mask),
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, metrics


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value-function loss (Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO").

    The value prediction may move at most ``eps`` away from the rollout-time value, and the larger
    of the two squared errors is used (the pessimistic choice, mirroring Schulman et al. 2017, Eq. 7)::

        v_clip = old_values + clamp(values - old_values, -eps, eps)
        loss = 0.5 * masked_mean(max((values - returns)^2, (v_clip - returns)^2))

    Args:
        values: ``(B, T)`` current value predictions (with grad).
        old_values: ``(B, T)`` value predictions at rollout time (detached).
        returns: ``(B, T)`` regression targets, e.g. from ``compute_gae`` (detached).
        mask: ``(B, T)`` 1 for valid tokens.
        clip_eps: clipping range ``eps > 0`` in value units.

    Returns:
        ``(loss, metrics)``: metrics ``"value_clip_frac"`` (masked fraction where the clipped error
        is strictly larger) and ``"value_mean"`` (masked mean of ``values``), both detached.

    Raises:
        ValueError: on shape mismatch or ``clip_eps <= 0``.
    """
    _check_shapes(mask, values=values, old_values=old_values, returns=returns)
    _check_eps(clip_eps)
    v_clip = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)  # (B, T)
    err = (values - returns) ** 2
    err_clip = (v_clip - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clip), mask)
    with torch.no_grad():
        metrics = {
            "value_clip_frac": masked_mean((err_clip > err).to(values.dtype), mask),
            "value_mean": masked_mean(values, mask),
        }
    return loss, metrics
