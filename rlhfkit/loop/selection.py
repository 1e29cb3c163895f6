"""Which candidate pairs to label: pure selection strategies over reward-model scores (no models here).

Notation:
    P  prompts of a round, K candidate responses each
    N  candidate pairs: every two distinct responses to the same prompt, at most P * K(K-1)/2
    M  reward models that score them (the current reward model and its ensemble members; M = 0 before
       any reward model exists)

A strategy maps the members' preference probabilities p[m, n] = sigmoid(r_a - r_b) (Bradley-Terry, the
probability that model m prefers response a of pair n) to a priority per pair (N,); :func:`select` takes
the ``budget`` pairs of highest priority (ties: the earlier pair). Registry :data:`STRATEGIES`:

    random       priority ~ U(0, 1) from a seeded generator: a uniform sample without replacement
    uncertainty  priority = -|mean_m p[m, n] - 1/2|: the pairs the reward model is least sure about
                 (uncertainty sampling, Lewis & Gale 1994)
    ensemble     priority = std_m p[m, n]: the pairs the members disagree on most (query by committee,
                 Seung et al. 1992; with reward-model ensembles as in Christiano et al. 2017, Sec. 2.2.4)

:data:`MIN_MEMBERS` says how many reward models a strategy needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "MIN_MEMBERS",
    "STRATEGIES",
    "CandidatePair",
    "Selection",
    "candidate_pairs",
    "pair_rewards",
    "preference_probs",
    "select",
]


@dataclass(frozen=True)
class CandidatePair:
    """Responses ``a`` and ``b`` (indices into the K responses) of prompt ``prompt``."""

    prompt: int
    a: int
    b: int


@dataclass(frozen=True)
class Selection:
    """The chosen pair indices (into the candidate pairs), best first, and each one's priority."""

    indices: list[int]
    scores: list[float]


def candidate_pairs(responses: Sequence[Sequence[str]]) -> list[CandidatePair]:
    """Every pair ``a < b`` of responses to each prompt, leaving out pairs of identical texts (nothing to
    compare) and pairs with an empty response (preference files reject those). ``responses[p]`` holds
    prompt p's K responses."""
    return [
        CandidatePair(p, a, b)
        for p, texts in enumerate(responses)
        for a in range(len(texts))
        for b in range(a + 1, len(texts))
        if texts[a] != texts[b] and texts[a].strip() and texts[b].strip()
    ]


def pair_rewards(rewards: torch.Tensor, pairs: Sequence[CandidatePair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_a, r_b), each (M, N): the rewards (M, P, K) of each pair's two responses."""
    prompt = torch.tensor([c.prompt for c in pairs], dtype=torch.long)  # (N,)
    a = torch.tensor([c.a for c in pairs], dtype=torch.long)  # (N,)
    b = torch.tensor([c.b for c in pairs], dtype=torch.long)  # (N,)
    return rewards[:, prompt, a], rewards[:, prompt, b]


def preference_probs(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """(M, N) Bradley-Terry probability that a is preferred: sigmoid(r_a - r_b)."""
    return torch.sigmoid(r_a - r_b)


def _random(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(p.shape[1], generator=generator, dtype=torch.float64)  # (N,)


def _uncertainty(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return -(p.double().mean(0) - 0.5).abs()  # (N,)


def _ensemble(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return p.double().std(0, unbiased=False)  # (N,) population std over the M members


Strategy = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
STRATEGIES: dict[str, Strategy] = {"random": _random, "uncertainty": _uncertainty, "ensemble": _ensemble}
MIN_MEMBERS = {"random": 0, "uncertainty": 1, "ensemble": 2}


def select(strategy: str, p: torch.Tensor, budget: int, seed: int = 0) -> Selection:
    """The ``min(budget, N)`` pairs of highest priority under ``strategy``, from probabilities ``p`` (M, N).

    Deterministic: ``random`` draws from ``torch.Generator().manual_seed(seed)``; ties in priority go to
    the earlier pair. No pair is chosen twice.

    Raises:
        KeyError: an unknown strategy (the message lists the known ones).
        ValueError: ``budget`` < 1, or fewer than ``MIN_MEMBERS[strategy]`` rows in ``p``.
    """
    if strategy not in STRATEGIES:
        raise KeyError(f"unknown selection strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if p.dim() != 2 or p.shape[0] < MIN_MEMBERS[strategy]:
        need = MIN_MEMBERS[strategy]
        raise ValueError(
            f"strategy {strategy!r} needs p of shape (M, N) with M >= {need}, got {tuple(p.shape)}"
        )
    priority = STRATEGIES[strategy](p, torch.Generator().manual_seed(seed))  # (N,)
    order = torch.argsort(priority, descending=True, stable=True)[:budget]
    return Selection(order.tolist(), priority[order].tolist())
