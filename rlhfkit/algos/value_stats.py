"""How well the value function predicts the returns; imports torch only.

Notation:
    B  sequences
    R  response length
"""

from __future__ import annotations

import torch


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[returns - values] / Var[returns] over the tokens where ``mask`` is 1 (a scalar tensor).

    1 is a perfect value function, 0 is no better than predicting the mean return, below 0 is worse
    than that (the diagnostic of OpenAI Baselines' ``explained_variance`` and Huang et al. 2024,
    "The N+ Implementation Details of RLHF with PPO"). Both variances are population variances over the
    masked tokens.

    Args:
        values, returns: (B, R) value predictions V(s_t) and returns (GAE targets).
        mask: (B, R) 0/1, the response tokens.
    Returns:
        a scalar; NaN when the returns do not vary.
    Raises:
        ValueError: the shapes differ or the mask selects no token.
    """
    if values.shape != returns.shape or values.shape != mask.shape:
        raise ValueError(f"shapes differ: values {values.shape}, returns {returns.shape}, mask {mask.shape}")
    m = mask.bool()
    if not m.any():
        raise ValueError("explained_variance: the mask selects no token")
    v, r = values[m].double(), returns[m].double()  # (N,)
    var_r = r.var(unbiased=False)
    if var_r == 0:
        return torch.tensor(float("nan"))
    return (1 - (r - v).var(unbiased=False) / var_r).float()
