"""Scoring text with a reward model (a one-label sequence classifier).

Dialogues are truncated from the left, so the end of the conversation (the response being judged) is
always what the reward model reads; HH dialogues often exceed the 256-token budget we train with.

Notation:
    N  number of texts
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import BertModel, PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.data.collate import pad_sequences
from rlhfkit.models.loading import load_tokenizer
from rlhfkit.models.packing import PACK_TOKENS, can_pack, packed_hidden_states


def load_reward_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The reward model's tokenizer, set to keep the end of long dialogues (left truncation)."""
    tokenizer = load_tokenizer(name)
    tokenizer.truncation_side = "left"
    return tokenizer


def reward_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    pack_tokens: int | None = PACK_TOKENS,
) -> torch.Tensor:
    """Rewards (N,) of ``texts``; differentiable if ``model`` has grads on.

    A decoder-only reward model (a ``score`` head read at the last token) runs padding-free when
    ``pack_tokens`` is set and it is not wrapped in DDP (:mod:`rlhfkit.models.packing`); other models
    (BERT-style encoders attend both ways, so packing does not apply) and ``pack_tokens=None`` run one
    padded batch, a BERT encoder's last layer only for the first token when ``pack_tokens`` is set
    (:func:`first_token_last_layer`). Every path gives the same rewards to float rounding.
    """
    device = next(model.parameters()).device  # works for DDP-wrapped models too
    plain = getattr(model, "module", model)  # under DDP
    plain = plain.get_base_model() if hasattr(plain, "get_base_model") else plain  # under a peft wrapper
    if pack_tokens is None or not hasattr(plain, "score") or not can_pack(model):
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        with first_token_last_layer(plain, pack_tokens is not None):
            return model(**enc.to(device)).logits.squeeze(-1).float()
    ids, mask = pad_sequences(tokenizer(texts, truncation=True, max_length=max_length).input_ids, 0)
    ends = mask.sum(1).cumsum(0) - 1  # (N,) index of each text's last token among the real tokens
    hidden = packed_hidden_states(plain.base_model, ids, mask, pack_tokens)  # (real tokens, H)
    return plain.score(hidden[ends.to(device)]).squeeze(-1).float()  # (N,)


class _FirstTokenLayer(nn.Module):
    """A BERT layer computed for the first token only: keys and values from every token; the query,
    the attention output and the feed-forward block only at token 0 (hidden states (B, T, H) in,
    (B, 1, H) out)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs
    ):
        attention = self.layer.attention
        heads = attention.self
        first = hidden_states[:, :1]  # (B, 1, H)

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, H / heads)
            return x.view(x.size(0), x.size(1), -1, heads.attention_head_size).transpose(1, 2)

        if attention_mask is not None and attention_mask.dim() == 4:  # (B, 1, T or 1, T): token 0's row
            attention_mask = attention_mask[:, :, :1]
        context = nn.functional.scaled_dot_product_attention(
            split(heads.query(first)),
            split(heads.key(hidden_states)),
            split(heads.value(hidden_states)),
            attn_mask=attention_mask,
            scale=heads.scaling,
        )  # (B, heads, 1, H / heads)
        context = context.transpose(1, 2).reshape(first.shape)
        return self.layer.feed_forward_chunk(attention.output(context, first))  # (B, 1, H)


@contextmanager
def first_token_last_layer(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, a BERT sequence classifier's last encoder layer runs for the first token only.

    The classifier reads the pooler, which reads token 0 of the last layer; the last layer's outputs at
    every other token are computed and thrown away. Here they are not computed: only token 0's query,
    attention output and feed-forward (keys and values still come from every token), about a sixth of a
    6-layer MiniLM's compute. Logits and gradients are those of the full forward. Models that are not a
    ``BertModel`` with a pooler (and ``enabled=False``) run unchanged.
    """
    base = getattr(model, "base_model", None)
    if not enabled or not isinstance(base, BertModel) or base.pooler is None or base.config.is_decoder:
        yield
        return
    layers = base.encoder.layer
    last = layers[-1]
    layers[-1] = _FirstTokenLayer(last)
    try:
        yield
    finally:
        layers[-1] = last


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


@torch.no_grad()
def normalize_reward_head(model: PreTrainedModel, mean: float, std: float) -> bool:
    """Rescale the scalar head in place so rewards become ``(r - mean) / std``.

    Ziegler et al. 2019 (Sec. 2.2) normalise the reward model so that its outputs have mean 0 and
    variance 1; PPO's KL coefficient and missing-EOS penalty are then in units of reward std.
    The head is the last ``nn.Linear`` with one output. A head without a bias (Llama's ``score``) can only
    be scaled, not shifted: then the mean stays at ``mean / std``.

    Returns:
        True if the mean was removed too (the head has a bias).
    Raises:
        ValueError: ``std`` is not positive, or the model has no one-output linear layer.
    """
    if not std > 0:
        raise ValueError(f"cannot normalise rewards with std {std}")
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no one-output linear head to normalise")
    head = heads[-1]
    head.weight.div_(std)
    if head.bias is None:
        return False
    head.bias.sub_(mean).div_(std)
    return True
