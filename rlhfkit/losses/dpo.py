"""Direct preference optimisation and its family: losses on summed sequence log-probabilities.

Notation:
    B: batch size (number of preference pairs).

Every loss takes a :class:`PairLogps` (the (B,) summed log-probabilities of the chosen and rejected
responses under the policy, under the reference where the loss has one, and the response token counts
where it normalises by length) and a :class:`DPOParams`, and returns ``(loss, metrics)``. The trainer
picks one through :data:`DPO_LOSSES` (or :func:`get_dpo_loss`); there is no ``if loss_type == ...``
chain anywhere.

With ``h = (logp_c - ref_c) - (logp_r - ref_r)`` the reference-normalised margin of a pair:

- ``sigmoid``: ``-log sigmoid(beta h)``; DPO, Rafailov et al. 2023, Eq. 7.
- ``ipo``: ``(h - 1 / (2 beta))^2``; IPO, Azar et al. 2023, Eq. 17.
- ``robust``: ``-(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)``; conservative DPO with
  label smoothing eps (cDPO), Mitchell 2023, Eq. 3.
- ``hinge``: ``max(0, 1 - beta h)``; SLiC, Zhao et al. 2023, Eq. 1.
- ``simpo``: ``-log sigmoid(beta logp_c / |y_c| - beta logp_r / |y_r| - gamma)``; reference-free and
  length-normalised; SimPO, Meng et al. 2024, Eq. 6.

Metrics (all detached 0-d tensors): ``chosen_reward`` and ``rejected_reward`` (means of the implicit
rewards, ``beta * (logp - ref)``; for SimPO ``beta * logp / |y|``, its Eq. 4), ``accuracy`` (share of
pairs with chosen reward > rejected reward, strictly), ``margin`` (mean reward difference),
``chosen_logps`` and ``rejected_logps`` (means of the policy's summed log-probabilities).

Imports torch only.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

Metrics = dict[str, torch.Tensor]


class PairLogps(NamedTuple):
    """Summed log-probabilities of a batch of pairs' response tokens, each ``(B,)``.

    ``ref_chosen``/``ref_rejected`` are the reference model's (None for reference-free losses);
    ``chosen_tokens``/``rejected_tokens`` are the response lengths in tokens (needed by SimPO only).
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    chosen_tokens: torch.Tensor | None = None
    rejected_tokens: torch.Tensor | None = None


class DPOParams(NamedTuple):
    """Hyper-parameters of the family; each loss reads the ones its docstring names.

    ``beta > 0``; ``label_smoothing`` in [0, 0.5) (robust); ``gamma`` the SimPO target margin.
    """

    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 0.5


def check_params(p: DPOParams) -> None:
    """Raise ValueError unless ``beta > 0`` and ``0 <= label_smoothing < 0.5``."""
    if not p.beta > 0:
        raise ValueError(f"beta must be > 0, got {p.beta}")
    if not 0.0 <= p.label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {p.label_smoothing}")


def _check(x: PairLogps, p: DPOParams, reference: bool = True, tokens: bool = False) -> None:
    """Raise ValueError unless the parameters are valid and the tensors the loss needs are all present
    and (B,) with B >= 1."""
    check_params(p)
    needed = ["chosen", "rejected"]
    needed += ["ref_chosen", "ref_rejected"] if reference else []
    needed += ["chosen_tokens", "rejected_tokens"] if tokens else []
    if x.chosen.dim() != 1 or x.chosen.numel() == 0:
        raise ValueError(f"chosen must be a non-empty (B,) tensor, got shape {tuple(x.chosen.shape)}")
    for name in needed:
        value = getattr(x, name)
        if value is None:
            raise ValueError(f"this loss needs {name} (got None)")
        if value.shape != x.chosen.shape:
            raise ValueError(f"{name} {tuple(value.shape)} must match chosen {tuple(x.chosen.shape)}")


def _logratio_margin(x: PairLogps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(h, chosen log-ratio, rejected log-ratio), each (B,): h = (logp_c - ref_c) - (logp_r - ref_r)."""
    chosen = x.chosen - x.ref_chosen  # (B,)
    rejected = x.rejected - x.ref_rejected  # (B,)
    return chosen - rejected, chosen, rejected


def _metrics(x: PairLogps, chosen_reward: torch.Tensor, rejected_reward: torch.Tensor) -> Metrics:
    c, r = chosen_reward.detach(), rejected_reward.detach()
    return {
        "chosen_reward": c.mean(),
        "rejected_reward": r.mean(),
        "accuracy": (c > r).float().mean(),
        "margin": (c - r).mean(),
        "chosen_logps": x.chosen.detach().mean(),
        "rejected_logps": x.rejected.detach().mean(),
    }


def sigmoid_loss(x: PairLogps, p: DPOParams) -> tuple[torch.Tensor, Metrics]:
    """DPO (Rafailov et al. 2023, "Direct Preference Optimization", Eq. 7)::

        loss = mean_b( -log sigmoid(beta * h[b]) ),  h = (logp_c - ref_c) - (logp_r - ref_r)

    Reads ``p.beta``. Raises ValueError on missing or mis-shaped inputs.
    """
    _check(x, p)
    h, chosen, rejected = _logratio_margin(x)
    loss = -F.logsigmoid(p.beta * h).mean()
    return loss, _metrics(x, p.beta * chosen, p.beta * rejected)


def ipo_loss(x: PairLogps, p: DPOParams) -> tuple[torch.Tensor, Metrics]:
    """IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", Eq. 17), with ``beta`` in the role of the paper's tau::

        loss = mean_b( (h[b] - 1 / (2 * beta))^2 )

    It regresses the margin onto a finite target instead of pushing it to infinity. ``h`` uses summed
    sequence log-probabilities, as in the paper. Reads ``p.beta``.
    """
    _check(x, p)
    h, chosen, rejected = _logratio_margin(x)
    loss = ((h - 1.0 / (2.0 * p.beta)) ** 2).mean()
    return loss, _metrics(x, p.beta * chosen, p.beta * rejected)


def robust_loss(x: PairLogps, p: DPOParams) -> tuple[torch.Tensor, Metrics]:
    """Conservative DPO, cDPO (Mitchell 2023, "A note on DPO with noisy preferences & relationship to
    IPO", Eq. 3): DPO with label smoothing, i.e. each label is assumed flipped with probability eps::

        loss = mean_b( -(1 - eps) log sigmoid(beta h[b]) - eps log sigmoid(-beta h[b]) )

    ``eps = 0`` is DPO. Unlike DPO its minimum is at a finite margin (``beta h = log((1-eps)/eps)``).
    (TRL's ``loss_type="robust"`` is a different, unbiased estimator, Chowdhury et al. 2024.)
    Reads ``p.beta`` and ``p.label_smoothing``.
    """
    _check(x, p)
    h, chosen, rejected = _logratio_margin(x)
    eps = p.label_smoothing
    losses = -(1.0 - eps) * F.logsigmoid(p.beta * h) - eps * F.logsigmoid(-p.beta * h)  # (B,)
    return losses.mean(), _metrics(x, p.beta * chosen, p.beta * rejected)


def hinge_loss(x: PairLogps, p: DPOParams) -> tuple[torch.Tensor, Metrics]:
    """SLiC hinge (Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback",
    Eq. 1, the rank calibration term ``max(0, delta - log P(y+) + log P(y-))``), applied to the
    reference-normalised margin with ``delta = 1 / beta`` and scaled by beta::

        loss = mean_b( max(0, 1 - beta * h[b]) )

    Pairs already separated by a margin of ``1 / beta`` give no gradient. Reads ``p.beta``.
    """
    _check(x, p)
    h, chosen, rejected = _logratio_margin(x)
    loss = torch.relu(1.0 - p.beta * h).mean()
    return loss, _metrics(x, p.beta * chosen, p.beta * rejected)


def simpo_loss(x: PairLogps, p: DPOParams) -> tuple[torch.Tensor, Metrics]:
    """SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
    Eq. 6): no reference model; the reward is the length-normalised log-likelihood ``beta * logp / |y|``
    (its Eq. 4) and the chosen one must win by a target margin gamma::

        loss = mean_b( -log sigmoid(beta * logp_c[b] / |y_c[b]| - beta * logp_r[b] / |y_r[b]| - gamma) )

    Reads ``p.beta`` (the paper uses 2 to 2.5) and ``p.gamma``; needs ``chosen_tokens`` and
    ``rejected_tokens`` and ignores the reference.
    """
    _check(x, p, reference=False, tokens=True)
    chosen = p.beta * x.chosen / x.chosen_tokens.to(x.chosen.dtype).clamp_min(1)  # (B,)
    rejected = p.beta * x.rejected / x.rejected_tokens.to(x.rejected.dtype).clamp_min(1)  # (B,)
    loss = -F.logsigmoid(chosen - rejected - p.gamma).mean()
    return loss, _metrics(x, chosen, rejected)


class DPOLoss(Protocol):
    """What every entry of :data:`DPO_LOSSES` is: ``(pairs, params) -> (loss, metrics)``."""

    def __call__(self, x: PairLogps, p: DPOParams) -> tuple[torch.Tensor, Metrics]: ...


DPO_LOSSES: dict[str, DPOLoss] = {
    "sigmoid": sigmoid_loss,
    "ipo": ipo_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
}

REFERENCE_FREE = frozenset({"simpo"})
"""Loss types that never read reference log-probabilities (no reference pass is made for them)."""


def get_dpo_loss(name: str) -> DPOLoss:
    """The loss function registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return DPO_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown DPO loss type {name!r}; valid: {', '.join(DPO_LOSSES)}") from None
