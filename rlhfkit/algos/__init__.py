"""Advantage and reward shaping for RL fine-tuning; imports torch only."""

from rlhfkit.algos.gae import compute_gae
from rlhfkit.algos.group import group_advantages, leave_one_out_advantages, zero_advantage_fraction
from rlhfkit.algos.kl_control import AdaptiveKLController, FixedKLController
from rlhfkit.algos.rewards import kl_shaped_rewards
from rlhfkit.algos.value_stats import explained_variance
from rlhfkit.algos.whiten import masked_whiten

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "compute_gae",
    "explained_variance",
    "group_advantages",
    "kl_shaped_rewards",
    "leave_one_out_advantages",
    "masked_whiten",
    "zero_advantage_fraction",
]
