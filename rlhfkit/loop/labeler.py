"""The simulated labeler: a "gold" reward model answers in place of people.

Notation:
    N  pairs (a, b) to label
    g  gold rewards; g_a, g_b (N,) score response a and response b of each pair

The gold model prefers a with the Bradley-Terry probability p = sigmoid(g_a - g_b) (Bradley & Terry
1952; the preference model reward models are trained under, Christiano et al. 2017 Eq. 1). ``mode``:

    bt      a wins when u < p, u ~ U(0, 1): a labeler whose noise grows as the two responses get closer
    argmax  a wins when g_a > g_b (b when g_a < g_b, a tie when they are equal): a noiseless labeler

then each a/b label is flipped with probability ``noise``, a stand-in for disagreement between people
(InstructGPT's labelers agreed with each other on about 73% of comparisons; Ouyang et al. 2022). This is
the synthetic set-up of Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization" (Sec. 2), where
a gold reward model stands in for humans. Everything is drawn from one seeded generator: the same seed
gives the same labels.

The labels become records of ``round-XX/labels.jsonl`` (see ``rlhfkit.loop.labels``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from rlhfkit.data import PreferencePair, Prompt
from rlhfkit.loop.labels import label_record

SIMULATED = "simulated"
Mode = Literal["bt", "argmax"]
# what scores (prompt, response) pairs: a RewardScorer, or anything with its call signature
Gold = Callable[[Sequence[Prompt], Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class SimulatedLabels:
    """What the simulated labeler said about N pairs."""

    labels: list[str]  # "a" | "b" | "tie", after flipping
    prob_a: torch.Tensor  # (N,) gold Bradley-Terry probability that a is better
    flipped: torch.Tensor  # (N,) bool, whether the label was flipped by the noise


def simulate_labels(
    gold_a: torch.Tensor, gold_b: torch.Tensor, mode: Mode, noise: float, generator: torch.Generator
) -> SimulatedLabels:
    """Label N pairs from their gold rewards (see the module docstring); deterministic given ``generator``.

    Raises:
        ValueError: an unknown ``mode``, ``noise`` outside [0, 1], or shapes that differ.
    """
    if mode not in ("bt", "argmax"):
        raise ValueError(f"mode must be 'bt' or 'argmax', got {mode!r}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise is a probability in [0, 1], got {noise}")
    if gold_a.shape != gold_b.shape or gold_a.dim() != 1:
        raise ValueError(
            f"gold_a and gold_b must both be (N,), got {tuple(gold_a.shape)}, {tuple(gold_b.shape)}"
        )
    n = gold_a.shape[0]
    prob_a = torch.sigmoid(gold_a.double() - gold_b.double())  # (N,)
    u = torch.rand(n, generator=generator, dtype=torch.float64)  # (N,) both draws are always made, so
    flip = torch.rand(n, generator=generator, dtype=torch.float64) < noise  # the modes share the noise
    if mode == "bt":
        a_wins, tie = u < prob_a, torch.zeros(n, dtype=torch.bool)
    else:
        a_wins, tie = gold_a > gold_b, gold_a == gold_b
    flipped = flip & ~tie
    a_final = a_wins ^ flipped
    labels = ["tie" if t else "a" if a else "b" for a, t in zip(a_final.tolist(), tie.tolist(), strict=True)]
    return SimulatedLabels(labels, prob_a.float(), flipped)


class SimulatedLabeler:
    """Labels pairs with a gold reward model (see the module docstring)."""

    def __init__(self, gold: Gold, mode: Mode, noise: float, seed: int):
        self.gold, self.mode, self.noise, self.seed = gold, mode, noise, seed

    def label(self, round_no: int, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Label records for the selected ``pairs`` of round ``round_no``; the draws are seeded by (seed,
        round), so a round's labels do not depend on the rounds before it."""
        prompts = [p["prompt"] for p in pairs]
        gold_a = self.gold(prompts, [p["response_a"] for p in pairs])  # (N,)
        gold_b = self.gold(prompts, [p["response_b"] for p in pairs])  # (N,)
        generator = torch.Generator().manual_seed(1_000_003 * self.seed + round_no)
        out = simulate_labels(gold_a, gold_b, self.mode, self.noise, generator)
        return [
            label_record(round_no, pair, label, SIMULATED, round(prob, 6), flip)
            for pair, label, prob, flip in zip(
                pairs, out.labels, out.prob_a.tolist(), out.flipped.tolist(), strict=True
            )
        ]


def orient_by_gold(pairs: list[PreferencePair], gold: Gold) -> list[PreferencePair]:
    """``pairs`` with chosen and rejected set by the gold model: argmax, no noise (a tie keeps the order).
    The yardstick of reward-model accuracy: the share of these a proxy reward model orders the same way."""
    prompts = [p.prompt for p in pairs]
    keep = gold(prompts, [p.chosen for p in pairs]) >= gold(prompts, [p.rejected for p in pairs])  # (N,)
    return [
        p if k else PreferencePair(p.prompt, p.rejected, p.chosen, p.margin)
        for p, k in zip(pairs, keep.tolist(), strict=True)
    ]
