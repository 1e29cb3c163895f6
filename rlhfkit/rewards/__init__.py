"""Reward sources for RL trainers: reward models, Python functions and built-in rules, weighted and
summed by :class:`CombinedReward`; :class:`RewardSpec` is how a config lists them."""

from rlhfkit.rewards.combined import CombinedReward, RewardBatch, build_reward, build_source
from rlhfkit.rewards.sources import (
    FormatReward,
    FunctionReward,
    LengthReward,
    ModelReward,
    RewardError,
    RewardSource,
    check_scores,
    load_function,
)
from rlhfkit.rewards.spec import RewardKind, RewardSpec, check_reward_specs

__all__ = [
    "CombinedReward",
    "FormatReward",
    "FunctionReward",
    "LengthReward",
    "ModelReward",
    "RewardBatch",
    "RewardError",
    "RewardKind",
    "RewardSource",
    "RewardSpec",
    "build_reward",
    "build_source",
    "check_reward_specs",
    "check_scores",
    "load_function",
]
