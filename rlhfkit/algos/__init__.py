"""Advantage and reward shaping for RL fine-tuning; imports torch only."""

from rlhfkit.algos.gae import compute_gae
from rlhfkit.algos.kl_control import AdaptiveKLController, FixedKLController
from rlhfkit.algos.rewards import kl_shaped_rewards
from rlhfkit.algos.whiten import masked_whiten

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "compute_gae",
    "kl_shaped_rewards",
    "masked_whiten",
]
