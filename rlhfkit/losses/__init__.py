"""Pure tensor losses: ``(tensors) -> (loss, metrics)``; imports torch only."""

from rlhfkit.losses.bradley_terry import bradley_terry_loss
from rlhfkit.losses.grpo import AGGREGATIONS, grpo_loss, rloo_loss
from rlhfkit.losses.kl import KL_ESTIMATORS, kl_estimate
from rlhfkit.losses.kto import kto_loss
from rlhfkit.losses.masked import masked_mean, masked_var
from rlhfkit.losses.ppo import ppo_policy_loss, ppo_value_loss
from rlhfkit.losses.sft import sft_loss

__all__ = [
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "bradley_terry_loss",
    "grpo_loss",
    "kl_estimate",
    "kto_loss",
    "masked_mean",
    "masked_var",
    "ppo_policy_loss",
    "ppo_value_loss",
    "rloo_loss",
    "sft_loss",
]
