"""Per-token estimators of KL(policy || reference) from samples of the policy.

Notation:
    B: batch size.
    T: number of response tokens.

With ``log r = ref_logprobs - logprobs`` at a token sampled from the policy (Schulman 2020,
"Approximating KL divergence", http://joschu.net/blog/kl-approx.html):

- ``"k1"``: ``-log r``; unbiased, high variance, can be negative per token.
- ``"k3"``: ``(r - 1) - log r``; unbiased, lower variance, always >= 0.
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k3")


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) (Schulman 2020, k1 and k3).

    Args:
        logprobs: ``(B, T)`` log-probabilities under the policy of the sampled tokens.
        ref_logprobs: ``(B, T)`` log-probabilities under the reference model of the same tokens.
        estimator: one of ``KL_ESTIMATORS``: ``"k1"`` = ``logprobs - ref_logprobs``;
            ``"k3"`` = ``exp(ref - logp) - 1 - (ref - logp)``.

    Returns:
        ``(B, T)`` per-token estimates (padding positions are not masked; the caller does that).

    Raises:
        ValueError: on shape mismatch or an unknown ``estimator``.
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} must match"
        )
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        log_r = ref_logprobs - logprobs  # (B, T)
        return torch.exp(log_r) - 1 - log_r
    raise ValueError(f"unknown KL estimator {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}")
