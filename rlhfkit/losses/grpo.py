"""Critic-free policy losses: GRPO (clipped ratio + k3 KL in the loss) and RLOO (REINFORCE).

Notation:
    B: batch size (number of sequences; a group's G samples are B's rows like any other).
    T: number of response tokens (padded length).

Both take one advantage per sequence, ``(B,)``, and broadcast it over the sequence's tokens. Both
offer two ways to reduce per-token terms to one number (``aggregation``):

- ``"token"``: the mean over every valid token of the batch; each token weighs the same, so long
  responses weigh more (DAPO, Yu et al. 2025, Eq. 12, "token-level policy gradient loss").
- ``"sequence"``: each sequence weighs the same. GRPO: the mean over a sequence's tokens, then the
  mean over sequences (Shao et al. 2024, Eq. 3, the ``1/|o_i|`` term). RLOO: REINFORCE on the whole
  sequence, whose log-probability is the *sum* of its token log-probabilities (Ahmadian et al. 2024).
"""

from __future__ import annotations

import torch

from rlhfkit.losses.kl import kl_estimate
from rlhfkit.losses.masked import masked_mean

AGGREGATIONS = ("token", "sequence")


def _check(logprobs: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, **others) -> None:
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    for name, t in {"logprobs": logprobs, **others}.items():
        if t.shape != mask.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must have the shape of mask {tuple(mask.shape)}")
    if advantages.shape != mask.shape[:1]:
        raise ValueError(f"advantages must be (B,) = ({mask.size(0)},), got {tuple(advantages.shape)}")


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Reduce ``(B, T)`` per-token terms to a 0-d tensor: ``"token"`` = mean over all valid tokens;
    ``"sequence"`` = mean over each row's valid tokens, then mean over rows.

    Raises:
        ValueError: shape mismatch or an unknown ``aggregation``.
    """
    _check_aggregation(aggregation)
    if aggregation == "token":
        return masked_mean(per_token, mask)
    return masked_mean(per_token, mask, dim=1).mean()


def _clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps))`` (Schulman et al. 2017, Eq. 7, negated),
    or ``-A * ratio`` when ``clip_eps`` is None; and where the clipped term is the one used."""
    unclipped = -advantages * ratio
    if clip_eps is None:
        return unclipped, torch.zeros_like(ratio, dtype=torch.bool)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    clip_eps: float = 0.2,
    aggregation: str = "token",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO objective (Shao et al. 2024, DeepSeekMath, Eq. 3), negated as a loss.

    Per token, with ``ratio = exp(logprobs - old_logprobs)`` and the sequence's advantage ``A``::

        l_t = max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps)) + beta * k3_t
        k3_t = exp(ref - logprobs) - (ref - logprobs) - 1          (Eq. 4; Schulman 2020)

    then ``aggregate(l, mask, aggregation)``. The KL term is in the loss (not in the reward), and
    its gradient flows through ``logprobs``.

    Args:
        logprobs: ``(B, T)`` log-probs of the sampled tokens under the current policy (with grad).
        old_logprobs: ``(B, T)`` log-probs under the policy that sampled them (detached).
        advantages: ``(B,)`` one advantage per sequence (e.g. ``group_advantages(...).flatten()``).
        mask: ``(B, T)`` 1 on valid response tokens.
        ref_logprobs: ``(B, T)`` reference log-probs (detached); may be None only when ``beta == 0``.
        beta: weight of the KL term, ``>= 0``.
        clip_eps: ratio clip range, ``> 0``.
        aggregation: ``"token"`` or ``"sequence"`` (see the module docstring).

    Returns:
        ``(loss, metrics)``: metrics ``"policy_loss"`` (the clipped term alone, aggregated the same
        way), ``"kl"`` (masked mean of ``k3_t`` over tokens; 0 without a reference), ``"clip_frac"``
        (masked fraction of tokens where the clipped term is used), ``"ratio"`` (masked mean), all
        detached 0-d tensors.

    Raises:
        ValueError: shape mismatch, ``beta < 0``, ``beta > 0`` without ``ref_logprobs``,
            ``clip_eps <= 0`` or an unknown ``aggregation``.
    """
    extra = {"ref_logprobs": ref_logprobs} if ref_logprobs is not None else {}
    _check(logprobs, mask, advantages, old_logprobs=old_logprobs, **extra)
    _check_aggregation(aggregation)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if beta > 0 and ref_logprobs is None:
        raise ValueError("grpo_loss: beta > 0 needs ref_logprobs")
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    surrogate, used_clip = _clipped_surrogate(ratio, advantages.detach()[:, None], clip_eps)  # (B, T)
    if ref_logprobs is not None:
        kl = kl_estimate(logprobs, ref_logprobs.detach(), "k3")  # (B, T)
    else:
        kl = torch.zeros_like(logprobs)
    loss = aggregate(surrogate + beta * kl, mask, aggregation)
    with torch.no_grad():
        metrics = {
            "policy_loss": aggregate(surrogate, mask, aggregation),
            "kl": masked_mean(kl, mask),
            "clip_frac": masked_mean(used_clip.to(ratio.dtype), mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, metrics


def rloo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float | None = 0.2,
    aggregation: str = "sequence",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to Basics", Sec. 3.3),
    written with an importance ratio so that it allows more than one update per batch, and with
    optional PPO-style ratio clipping (Schulman et al. 2017, Eq. 7). The KL penalty is already in
    the advantages (folded into the sequence reward), so there is no KL term here.

    ``"sequence"``: one ratio per sequence, ``rho = exp(sum_t mask * (logprobs - old_logprobs))``::

        loss = mean_b max(-A_b * rho_b, -A_b * clamp(rho_b, 1 - eps, 1 + eps))

    On-policy (``rho = 1``) its gradient is ``-mean_b A_b * grad sum_t log pi(y_t)``: the paper's
    estimator. ``"token"``: the same with a per-token ratio, averaged over every valid token.

    Args:
        logprobs: ``(B, T)`` log-probs of the sampled tokens under the current policy (with grad).
        old_logprobs: ``(B, T)`` log-probs under the policy that sampled them (detached).
        advantages: ``(B,)`` e.g. ``leave_one_out_advantages(...).flatten()``.
        mask: ``(B, T)`` 1 on valid response tokens.
        clip_eps: ratio clip range ``> 0``, or None for no clipping.
        aggregation: ``"sequence"`` or ``"token"``.

    Returns:
        ``(loss, metrics)``: metrics ``"clip_frac"`` (fraction of sequences, or of valid tokens, where
        the clipped term is used) and ``"ratio"`` (mean ratio, same unit), detached 0-d tensors.

    Raises:
        ValueError: shape mismatch, ``clip_eps <= 0`` or an unknown ``aggregation``.
    """
    _check(logprobs, mask, advantages, old_logprobs=old_logprobs)
    _check_aggregation(aggregation)
    if clip_eps is not None and not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0 (or None for no clipping), got {clip_eps}")
    adv = advantages.detach()
    m = mask.to(logprobs.dtype)
    if aggregation == "sequence":
        log_ratio = ((logprobs - old_logprobs) * m).sum(dim=1)  # (B,)
        ratio = torch.exp(log_ratio)
        per_seq, used_clip = _clipped_surrogate(ratio, adv, clip_eps)  # (B,)
        loss = per_seq.mean()
        with torch.no_grad():
            metrics = {"clip_frac": used_clip.to(ratio.dtype).mean(), "ratio": ratio.mean()}
        return loss, metrics
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    per_token, used_clip = _clipped_surrogate(ratio, adv[:, None], clip_eps)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        metrics = {
            "clip_frac": masked_mean(used_clip.to(ratio.dtype), mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, metrics
