"""Scoring text with a reward model (a one-label sequence classifier).

Dialogues are truncated from the left, so the end of the conversation (the response being judged) is
always what the reward model reads; HH dialogues often exceed the 256-token budget we train with.

Notation:
    N  number of texts
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.models.loading import load_tokenizer


def load_reward_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The reward model's tokenizer, set to keep the end of long dialogues (left truncation)."""
    tokenizer = load_tokenizer(name)
    tokenizer.truncation_side = "left"
    return tokenizer


def reward_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> torch.Tensor:
    """Rewards (N,) of ``texts`` in one padded batch; differentiable if ``model`` has grads on."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    enc = enc.to(model.device)
    return model(**enc).logits.squeeze(-1).float()


@torch.no_grad()
def score_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    batch_size: int = 32,
) -> torch.Tensor:
    """Rewards (N,) of ``texts``, batched, without gradients."""
    scores = [
        reward_scores(model, tokenizer, texts[i : i + batch_size], max_length)
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(scores).cpu()
