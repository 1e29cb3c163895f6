"""Critic-free advantages from groups of samples of the same prompt (GRPO, RLOO).

Notation:
    B: number of prompts.
    G: group size, the number of responses sampled per prompt (``G >= 2``).

Scores arrive as ``(B, G)``: row ``b`` holds the sequence-level rewards of the ``G`` responses to
prompt ``b``. A trainer that samples each prompt ``G`` times in a row (prompt-major order) gets that
shape from its ``(B * G,)`` scores with ``scores.view(B, G)``.
"""

from __future__ import annotations

import torch


def _check_groups(rewards: torch.Tensor, name: str) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"{name}: rewards must be (B, G), got shape {tuple(rewards.shape)}")
    if rewards.size(1) < 2:
        raise ValueError(f"{name}: a group needs at least 2 samples, got G={rewards.size(1)}")


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages of GRPO with outcome supervision (Shao et al. 2024, DeepSeekMath,
    Sec. 4.1.2; the ``A_hat_{i,t}`` of Eq. 3)::

        A[b, i] = (r[b, i] - mean_j r[b, j]) / (std_j r[b, j] + eps)

    Every token of response ``i`` gets the same advantage ``A[b, i]``. ``std`` is the unbiased
    (Bessel-corrected) standard deviation over the group, as in TRL's ``GRPOTrainer``; ``eps`` keeps
    a group whose rewards are all equal at advantage 0 instead of 0 / 0.

    With ``scale=False`` the division is dropped, ``A = r - mean`` (Dr. GRPO, Liu et al. 2025,
    "Understanding R1-Zero-Like Training: A Critical Perspective", Sec. 3.1: the std division weights
    prompts that are too easy or too hard more heavily).

    Args:
        rewards: ``(B, G)`` sequence rewards, one row per prompt.
        scale: divide by the group's standard deviation (GRPO) or not (Dr. GRPO).
        eps: added to the standard deviation.

    Returns:
        ``(B, G)`` advantages, detached.

    Raises:
        ValueError: if ``rewards`` is not 2-D or ``G < 2``.
    """
    _check_groups(rewards, "group_advantages")
    r = rewards.detach().float()
    centred = r - r.mean(dim=1, keepdim=True)  # (B, G)
    if not scale:
        return centred
    return centred / (r.std(dim=1, keepdim=True) + eps)


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO advantages: each sample's reward minus the mean reward of the other ``G - 1`` samples of
    its prompt (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
    Learning from Human Feedback in LLMs", Sec. 3.3, the RLOO estimator; Kool et al. 2019)::

        A[b, i] = r[b, i] - 1 / (G - 1) * sum_{j != i} r[b, j]
                = G / (G - 1) * (r[b, i] - mean_j r[b, j])

    The baseline of sample ``i`` does not depend on sample ``i``, so the estimator stays unbiased.

    Args:
        rewards: ``(B, G)`` sequence rewards (for RLOO: score minus the KL penalty), one row per prompt.

    Returns:
        ``(B, G)`` advantages, detached.

    Raises:
        ValueError: if ``rewards`` is not 2-D or ``G < 2``.
    """
    _check_groups(rewards, "leave_one_out_advantages")
    r = rewards.detach().float()
    g = r.size(1)
    baseline = (r.sum(dim=1, keepdim=True) - r) / (g - 1)  # (B, G)
    return r - baseline


def zero_advantage_fraction(rewards: torch.Tensor) -> torch.Tensor:
    """Share of groups whose rewards are all equal, so that every advantage in them is 0 and the
    group teaches nothing (the "zero-advantage groups" that DAPO, Yu et al. 2025, Sec. 3.2, filters).

    Args:
        rewards: ``(B, G)`` sequence rewards, one row per prompt.

    Returns:
        0-d float tensor in ``[0, 1]``.

    Raises:
        ValueError: if ``rewards`` is not 2-D or ``G < 2``.
    """
    _check_groups(rewards, "zero_advantage_fraction")
    r = rewards.detach()
    flat = r.amax(dim=1) == r.amin(dim=1)  # (B,)
    return flat.float().mean()
