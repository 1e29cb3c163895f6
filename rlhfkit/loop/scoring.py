"""A reward model loaded once and used to score (prompt, response) pairs: candidates, labels, evaluation.

Notation:
    N  responses scored in one call
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlhfkit.data import PreferencePair, Prompt, join_prompt_response
from rlhfkit.models.loading import load_reward_model
from rlhfkit.models.reward import load_reward_tokenizer, score_texts
from rlhfkit.trainers.reward import evaluate_pairs


@dataclass
class RewardScorer:
    """A frozen reward model with its (left-truncating) tokenizer and scoring settings."""

    model: torch.nn.Module
    tokenizer: object
    max_length: int
    batch_size: int = 32

    @classmethod
    def load(cls, path: str, max_length: int, batch_size: int = 32, dtype: str = "float32") -> RewardScorer:
        """Load the reward model folder (or name) ``path``.

        Raises:
            rlhfkit.errors.ModelNotFoundError: ``path`` cannot be found.
        """
        return cls(load_reward_model(path, dtype), load_reward_tokenizer(path), max_length, batch_size)

    def __call__(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Rewards (N,) of the dialogues prompt + response, as the reward model reads them."""
        texts = [join_prompt_response(p, r) for p, r in zip(prompts, responses, strict=True)]
        return score_texts(self.model, self.tokenizer, texts, self.max_length, self.batch_size)

    def accuracy(self, pairs: list[PreferencePair]) -> float:
        """Share of ``pairs`` whose chosen response this model scores higher than the rejected one."""
        return evaluate_pairs(self.model, self.tokenizer, pairs, self.max_length, self.batch_size)["accuracy"]
