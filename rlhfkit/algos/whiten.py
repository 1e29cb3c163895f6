"""Masked whitening (standardisation) of advantages or rewards over a batch.

Notation:
    B: batch size.
    T: number of response tokens.
"""

from __future__ import annotations

import torch

from rlhfkit.losses.masked import masked_mean, masked_var


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Standardise the masked entries of ``values`` to mean 0 and variance 1, jointly over (B, T).

    ``out = (values - mu) / sqrt(var + eps)`` where ``mu`` and the unbiased ``var`` are taken over
    the masked entries only (``masked_mean`` / ``masked_var``). With ``shift_mean=False`` the mean
    is added back after scaling (``out + mu``), which rescales without re-centring (the usual choice
    for optional reward whitening; advantages use the centred form). There is no paper equation to
    cite: advantage whitening is an implementation detail of PPO, listed among those of Huang et al.
    2024, "The N+ Implementation Details of RLHF with PPO".

    Args:
        values: ``(B, T)`` values to whiten.
        mask: ``(B, T)`` 1 for valid entries.
        shift_mean: if False, keep the original mean.
        eps: added to the variance for numerical stability.

    Returns:
        ``(B, T)`` whitened values; exactly 0 where ``mask`` is 0.

    Raises:
        ValueError: on shape mismatch or fewer than 2 valid entries (from ``masked_var``).
    """
    m = mask.to(values.dtype)
    mean = masked_mean(values, m)
    var = masked_var(values, m, unbiased=True)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m != 0, out, torch.zeros_like(out))
