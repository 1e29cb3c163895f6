"""Kahneman-Tversky optimisation (KTO) on unpaired desirable / undesirable examples.

Ethayarajh, Xu, Muennighoff, Jurafsky and Kiela 2024, "KTO: Model Alignment as Prospect Theoretic
Optimization" (arXiv:2402.01306), Section 4.1, the objective L_KTO. Each example is one completion y of
a prompt x with a binary label, desirable or undesirable; nothing is paired.

Notation:
    B: batch size (number of examples).

With ``r = log pi(y|x) - log pi_ref(y|x)`` (summed response log-probabilities, per example) the implied
reward and ``z0`` the reference point, an estimate of KL(pi || pi_ref) that no gradient flows through::

    desirable:    loss = lambda_D * (1 - sigmoid(beta * (r - z0)))
    undesirable:  loss = lambda_U * (1 - sigmoid(beta * (z0 - r)))

i.e. ``lambda_y - v(x, y)`` with the paper's value function ``v``; the batch loss is the mean over its
B examples. The paper estimates ``z0`` from *mismatched* pairs: completions y' scored as replies to a
prompt they were not written for (``z0 = max(0, mean_b log pi(y'_b|x_b) - log pi_ref(y'_b|x_b))``),
detached and clamped at 0, as the paper does. A desirable example lowers its loss only
by gaining log-likelihood *relative to* that reference point, an undesirable one by losing it, so the
policy cannot win by raising or lowering every completion alike.

``desirable_weight`` and ``undesirable_weight`` are the paper's lambda_D and lambda_U (loss aversion);
its advice for imbalanced data: choose them so that ``lambda_D n_D / (lambda_U n_U)`` lies in
``[1, 4/3]``, n_D and n_U the numbers of desirable and undesirable examples (:func:`weight_ratio`).

Imports torch only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

Metrics = dict[str, torch.Tensor]

RECOMMENDED_RATIO = (1.0, 4.0 / 3.0)
"""The paper's advised range for ``lambda_D n_D / (lambda_U n_U)`` (for imbalanced data)."""


class UnpairedLogps(NamedTuple):
    """Summed log-probabilities of a batch of unpaired examples, each ``(B,)``.

    ``policy`` / ``reference``: of each example's own completion y_b given its prompt x_b.
    ``kl_policy`` / ``kl_reference``: ``(M,)``, of mismatched completions (y' given an x it was not
    written for), the rows that estimate the reference point z0: usually one per example (M = B), or
    those of a whole multi-process batch.
    ``desirable``: ``(B,)`` bool, True for a desirable example, False for an undesirable one.
    """

    policy: torch.Tensor
    reference: torch.Tensor
    kl_policy: torch.Tensor
    kl_reference: torch.Tensor
    desirable: torch.Tensor


class KTOParams(NamedTuple):
    """``beta > 0`` (the paper's risk aversion); ``desirable_weight`` lambda_D > 0 and
    ``undesirable_weight`` lambda_U > 0 (loss aversion)."""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0


def check_params(p: KTOParams) -> None:
    """Raise ValueError unless ``beta``, ``desirable_weight`` and ``undesirable_weight`` are all > 0."""
    for name in ("beta", "desirable_weight", "undesirable_weight"):
        if not getattr(p, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(p, name)}")


def weight_ratio(p: KTOParams, n_desirable: int, n_undesirable: int) -> float:
    """``lambda_D n_D / (lambda_U n_U)``, which the paper advises keeping in :data:`RECOMMENDED_RATIO`;
    ``inf`` when there are no undesirable examples."""
    if n_undesirable == 0:
        return float("inf")
    return p.desirable_weight * n_desirable / (p.undesirable_weight * n_undesirable)


def kl_reference_point(kl_policy: torch.Tensor, kl_reference: torch.Tensor) -> torch.Tensor:
    """The reference point ``z0 = max(0, mean_b(kl_policy - kl_reference))``, detached: a 0-d tensor.

    Args:
        kl_policy, kl_reference: ``(B,)`` summed log-probabilities of mismatched completions under the
            policy and the reference.
    """
    return (kl_policy - kl_reference).mean().clamp_min(0).detach()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; NaN when the mask is empty (no such example in the batch)."""
    if not mask.any():
        return torch.tensor(float("nan"), dtype=values.dtype, device=values.device)
    return values[mask].mean()


def kto_loss(x: UnpairedLogps, p: KTOParams) -> tuple[torch.Tensor, Metrics]:
    """KTO (Ethayarajh et al. 2024, Section 4.1, L_KTO), the mean over the batch of::

        desirable b:    lambda_D * (1 - sigmoid(beta * (r[b] - z0)))
        undesirable b:  lambda_U * (1 - sigmoid(beta * (z0 - r[b])))

    with ``r = policy - reference`` and ``z0 = kl_reference_point(kl_policy, kl_reference)``.

    Returns:
        ``(loss, metrics)``; metrics (detached 0-d tensors): ``kl`` (z0), ``desirable_reward`` and
        ``undesirable_reward`` (means of the implicit reward ``beta * r`` over each kind; NaN when the
        batch has none of that kind), ``reward_margin`` (their difference), ``desirable_logps`` and
        ``undesirable_logps`` (means of the policy's summed log-probabilities), ``desirable_share``.

    Raises:
        ValueError: a bad parameter, an empty batch, or mis-shaped tensors (``reference`` and
            ``desirable`` must match ``policy``, ``kl_reference`` must match ``kl_policy``).
    """
    check_params(p)
    for name in ("policy", "kl_policy"):
        if getattr(x, name).dim() != 1 or getattr(x, name).numel() == 0:
            raise ValueError(
                f"{name} must be a non-empty 1-d tensor, got shape {tuple(getattr(x, name).shape)}"
            )
    for name, like in (("reference", "policy"), ("desirable", "policy"), ("kl_reference", "kl_policy")):
        if getattr(x, name).shape != getattr(x, like).shape:
            shapes = tuple(getattr(x, name).shape), tuple(getattr(x, like).shape)
            raise ValueError(f"{name} {shapes[0]} must match {like} {shapes[1]}")
    desirable = x.desirable.to(torch.bool)  # (B,)
    z0 = kl_reference_point(x.kl_policy, x.kl_reference)  # ()
    r = x.policy - x.reference  # (B,)
    losses = torch.where(
        desirable,
        p.desirable_weight * (1 - torch.sigmoid(p.beta * (r - z0))),
        p.undesirable_weight * (1 - torch.sigmoid(p.beta * (z0 - r))),
    )  # (B,)
    reward = p.beta * r.detach()  # (B,)
    logps = x.policy.detach()  # (B,)
    metrics = {
        "kl": z0,
        "desirable_reward": _masked_mean(reward, desirable),
        "undesirable_reward": _masked_mean(reward, ~desirable),
        "desirable_logps": _masked_mean(logps, desirable),
        "undesirable_logps": _masked_mean(logps, ~desirable),
        "desirable_share": desirable.float().mean(),
    }
    metrics["reward_margin"] = metrics["desirable_reward"] - metrics["undesirable_reward"]
    return losses.mean(), metrics
