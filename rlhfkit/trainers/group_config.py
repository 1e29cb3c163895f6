"""The config shared by the critic-free trainers (GRPO, RLOO): sampling, rewards, KL, optimisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlhfkit.config import option
from rlhfkit.data.split import DataConfig
from rlhfkit.models.lora import LoRAConfig
from rlhfkit.rewards import RewardSpec, check_reward_specs
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.trainers.checkpoint import CheckpointConfig
from rlhfkit.trainers.metrics import ReportTo
from rlhfkit.trainers.rl_run import REWARD_NORM_HELP
from rlhfkit.trainers.runtime import BF16_HELP
from rlhfkit.trainers.sharding import FSDP_HELP


@dataclass
class GroupRLConfig:
    """What GRPO and RLOO share: G samples per prompt from the policy, scored by weighted reward sources,
    with a KL term to a frozen reference. Each trainer subclasses it for its defaults and extra fields."""

    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    policy: str = option("smollm2-135m-instruct", "policy to train (usually the SFT output)")
    reference: str | None = option(None, "frozen reference for the KL term (default: policy)")
    rewards: list[RewardSpec] = option(
        [RewardSpec(kind="model", path="runs/reward")],
        "reward sources, summed with their weights; each {kind: model|function|length|format, "
        "path, name, weight, options} (see rlhfkit.rewards.RewardSpec)",
    )
    output_dir: str = option("runs/group-rl", "where the trained policy is saved")
    data: DataConfig = option(DataConfig, "prompts (prompt-only or preference files)")
    use_chat_template: bool = option(True, "render prompts with the policy tokenizer's chat template")
    steps: int = option(10, "batches of prompts (each sampled, scored and trained on)")
    batch_size: int = option(4, "B: prompts per step (per process)")
    group_size: int = option(4, "G: responses sampled per prompt (>= 2)")
    mini_batch_size: int = option(16, "sequences per gradient step; batch_size * group_size is a multiple")
    micro_batch_size: int | None = option(
        8,
        "sequences per forward + backward inside a gradient step (gradients accumulated: the same update, "
        "less memory); null: the whole minibatch at once",
    )
    inner_epochs: int = option(1, "passes over each batch")
    sampling: SamplingConfig = option(
        SamplingConfig, "how responses are sampled (temperature > 0; logprobs use logits / temperature too)"
    )
    lr: float = option(1e-5, "policy learning rate")
    kl_coef: float = option(0.05, "beta of the KL term; 0 loads no reference model")
    clip_eps: float | None = option(0.2, "ratio clip range")
    loss_aggregation: Literal["token", "sequence"] = option(
        "token", "token: mean over all tokens of the batch; sequence: mean per response, then over responses"
    )
    missing_eos_penalty: float = option(
        1.0, "subtracted from the (normalised) reward of responses with no EOS within max_new_tokens"
    )
    reward_norm_samples: int = option(0, REWARD_NORM_HELP)
    reward_max_length: int = option(256, "reward model tokens per dialogue (cut from the left)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    lora: LoRAConfig = option(
        LoRAConfig, "LoRA on the policy (lora.r > 0); the reference is then the base with the adapter off"
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, slower"
    )
    fsdp: bool = option(False, FSDP_HELP)
    checkpoint: CheckpointConfig = option(CheckpointConfig, "training checkpoints and resuming")
    report_to: ReportTo = option(
        "none", "also send metrics.jsonl rows to: none, tensorboard, wandb (offline)"
    )
    seed: int = option(0, "seed for prompt order and sampling")
    dtype: str = option("float32", "weights: float32, bfloat16 or float16 (to train: float32 and bf16)")
    bf16: bool = option(False, BF16_HELP)
    threads: int | None = option(None, "CPU threads (default: all cores)")

    @property
    def uses_reference(self) -> bool:
        """Whether the run has a KL term, hence a reference; with ``kl_coef = 0`` none is loaded."""
        return self.kl_coef > 0

    def __post_init__(self):
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2: advantages compare the responses to one prompt")
        if (self.batch_size * self.group_size) % self.mini_batch_size:
            raise ValueError("batch_size * group_size must be a multiple of mini_batch_size")
        if self.inner_epochs < 1:
            raise ValueError("inner_epochs must be >= 1")
        if self.sampling.temperature <= 0:
            raise ValueError(
                "sampling.temperature must be > 0: training needs sampled responses and their logprobs"
            )
        if self.kl_coef < 0:
            raise ValueError("kl_coef must be >= 0")
        if self.reward_norm_samples < 0:
            raise ValueError("reward_norm_samples must be >= 0 (0: no normalisation)")
        check_reward_specs(self.rewards)
