"""Reductions over the valid entries of a padded tensor.

Notation:
    B: batch size.
    T: number of response tokens (padded length).

A mask is a float or bool tensor with the same shape as ``values``; 1 (True) marks a valid
entry, 0 (False) a padded one. It is converted internally with ``mask.to(values.dtype)``.
"""

from __future__ import annotations

import torch


def _check_same_shape(values: torch.Tensor, mask: torch.Tensor) -> None:
    if values.shape != mask.shape:
        raise ValueError(
            f"values and mask must have the same shape, got {tuple(values.shape)} and {tuple(mask.shape)}"
        )


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1.

    Computes ``sum(values * mask) / sum(mask)``, over all entries (``dim=None``, 0-d result) or
    along ``dim`` (that dimension is reduced away, e.g. ``(B, T) -> (B,)`` for ``dim=1``).
    Where the mask sums to 0 the result is exactly 0, never NaN. Masked-out entries never reach
    the sum, so padding holding ``inf`` or ``NaN`` does not poison the result.

    Args:
        values: tensor of any shape, typically ``(B, T)``.
        mask: same shape as ``values``; 1 for valid entries.
        dim: dimension to reduce, or ``None`` to reduce everything.

    Returns:
        0-d tensor if ``dim`` is ``None``, else ``values`` with ``dim`` removed.

    Raises:
        ValueError: if ``values`` and ``mask`` differ in shape.
    """
    _check_same_shape(values, mask)
    m = mask.to(values.dtype)
    weighted = torch.where(m != 0, values * m, torch.zeros_like(values))
    if dim is None:
        num, den = weighted.sum(), m.sum()
    else:
        num, den = weighted.sum(dim=dim), m.sum(dim=dim)
    nonempty = den != 0
    safe_den = torch.where(nonempty, den, torch.ones_like(den))
    return torch.where(nonempty, num / safe_den, torch.zeros_like(num))


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` over the entries where ``mask`` is 1 (all dimensions pooled).

    ``var = masked_mean((values - mu)^2)`` with ``mu = masked_mean(values)``; with ``unbiased`` the
    result is multiplied by Bessel's correction ``n / (n - 1)``, where ``n = sum(mask)``.

    Args:
        values: tensor of any shape, typically ``(B, T)``.
        mask: same shape as ``values``; 1 for valid entries.
        unbiased: apply Bessel's correction.

    Returns:
        0-d tensor.

    Raises:
        ValueError: if the shapes differ, or if ``unbiased`` and fewer than 2 entries are valid.
    """
    _check_same_shape(values, mask)
    m = mask.to(values.dtype)
    mean = masked_mean(values, m)
    var = masked_mean((values - mean) ** 2, m)
    if unbiased:
        n = m.sum()
        if n.item() < 2:
            raise ValueError(f"unbiased masked_var needs at least 2 valid entries, got {n.item():g}")
        var = var * n / (n - 1)
    return var
