"""The ``sampling`` section shared by every config that samples responses (PPO, GRPO, RLOO, eval, the
loop's candidates): how long the prompt and the response may be, and how tokens are drawn.

Each config holds one as ``cfg.sampling`` and hands it to :func:`rlhfkit.rollout.sampling.rollout`
(with its own ``use_chat_template``, a prompt-rendering choice that stays a flat key). Configs that need
``temperature > 0`` (training and KL need sampled responses) check that in their own ``__post_init__``.

This module must not import torch (configs load without it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rlhfkit.config import option


@dataclass
class SamplingConfig:
    """How responses are sampled: prompt and response lengths, temperature, top-k and nucleus."""

    max_prompt_length: int = option(128, "prompt tokens kept (from the end)")
    max_new_tokens: int = option(48, "response tokens sampled at most")
    temperature: float = option(0.7, "sampling temperature (0: greedy); logprobs use logits / temperature")
    top_k: int = option(0, "sample among the k most likely tokens (0: all)")
    top_p: float = option(1.0, "nucleus sampling mass")

    def __post_init__(self):
        if self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: all tokens), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


# Each config that moved its flat sampling keys into ``sampling`` lists them as renamed, so that an old
# key fails with a message naming the new one.
SAMPLING_RENAMED_KEYS: dict[str, str] = {f.name: f"sampling.{f.name}" for f in fields(SamplingConfig)}
