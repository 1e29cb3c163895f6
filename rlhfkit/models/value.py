"""The PPO value model: per-token values of the policy's response tokens.

The value model is initialised from the reward model (Huang et al. 2024, N+ implementation details)
and run with a causal attention mask, so the value read at a token depends only on the text up to it.
Its tokenizer may differ from the policy's (SmolLM2 policy, MiniLM reward/value): the response is decoded
to text, re-tokenised with the value model's tokenizer, and each policy token is mapped through
character offsets to the last value-model token that ends at or before the policy token's first
character. That value-model token's output is V(s_t), the value of the state before response token t.

Notation:
    B  batch size
    R  policy response length
    L  value-model sequence length
    H  hidden size
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.models.packing import packed_hidden_states, unpack


def _token_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Apply a sequence classifier's scalar head at every position: (B, L, H) -> (B, L).

    Raises:
        ValueError: the architecture's head is not one we know how to apply per token.
    """
    if hasattr(model, "score"):  # decoder-only LMs (Llama, Qwen, Mistral, GPT-2, ...)
        return model.score(hidden).squeeze(-1)
    pooler = getattr(model.base_model, "pooler", None)
    if hasattr(model, "classifier") and pooler is not None:  # BERT-style: classifier(tanh(dense(h)))
        return model.classifier(pooler.activation(pooler.dense(hidden))).squeeze(-1)
    raise ValueError(
        f"cannot use {type(model).__name__} as a value model: supported heads are a decoder's `score` "
        "layer and a BERT-style pooler + classifier"
    )


class ValueModel(nn.Module):
    """Per-token values from a (causally masked) reward-model checkpoint.

    Args:
        model: a one-label ``AutoModelForSequenceClassification`` loaded with ``causal=True``
            (see :func:`rlhfkit.models.loading.load_reward_model`).
        tokenizer: its tokenizer; must be a fast tokenizer (character offsets are needed).
        max_length: value-model tokens kept per sequence (truncated from the left).
    Raises:
        ValueError: the tokenizer is not a fast tokenizer.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int):
        super().__init__()
        if not tokenizer.is_fast:
            raise ValueError("the value model needs a fast tokenizer (character offsets)")
        self.model = model
        self.tokenizer = copy.copy(tokenizer)
        self.tokenizer.truncation_side = "left"  # keep the response, the end of the dialogue
        self.max_length = max_length

    def encode(
        self, texts: list[str], response_starts: list[list[int]], width: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenise full texts and find, for each policy response token, its value-model position.

        Args:
            texts: B dialogue strings (prompt + response), as the reward model reads them.
            response_starts: for each text, the character offset at which each policy response token
                starts (R_b offsets for row b; the EOS token starts at ``len(text)``).
        Returns:
            ``input_ids`` and ``attention_mask`` (B, L), and ``positions`` (B, R) long, padded with 0.
        """
        enc = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            padding_side="right",
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        width = width or max(len(s) for s in response_starts)
        positions = torch.zeros(len(texts), width, dtype=torch.long)
        for row, starts in enumerate(response_starts):
            length = int(enc["attention_mask"][row].sum())
            ends = enc["offset_mapping"][row, :length, 1].clone()  # (L_b,)
            special = enc["special_tokens_mask"][row, :length].bool()
            # special tokens carry (0, 0): give them the end of the text before them, so ends stay sorted
            ends[special] = 0
            ends = torch.cummax(ends, dim=0).values
            index = torch.searchsorted(ends, torch.tensor(starts), right=True) - 1
            positions[row, : len(starts)] = index.clamp_min(0)
        return {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "positions": positions,
        }

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Values (B, R) at the value-model ``positions`` (B, R) of each response token.

        A decoder value model runs padding-free (:mod:`rlhfkit.models.packing`); an encoder one (BERT-style,
        run causally) takes the padded batch.
        """
        if hasattr(self.model, "score"):
            real = packed_hidden_states(self.model.base_model, input_ids, attention_mask)  # (N, H)
            hidden = unpack(real, attention_mask)  # (B, L, H)
        else:
            hidden = self.model.base_model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state  # (B, L, H)
        values = _token_head(self.model, hidden)  # (B, L)
        return values.gather(1, positions)


class ValueHead(nn.Module):
    """A value head on the policy's own last hidden state: V(s_t) = w . h_t + b, one trunk for the policy
    and the value function (``PPOConfig.shared_value_head``; the layout of TRL's earlier
    ``AutoModelForCausalLMWithValueHead``), instead of a separate value model.

    h_t is the final (normed) hidden state at the token before response token t, the one that predicts
    it (:func:`rlhfkit.models.logprobs.next_token_logprobs` applies the head there). The head starts at
    zero: every value is 0 and, until the head has learned, the value loss sends no gradient into the
    policy's trunk.

    With ``trunk_grad=False`` the head reads the hidden states with the gradient stopped: the value loss
    trains the head alone and never moves the policy (a value function on the policy's own features).
    The attribute may be switched between steps (PPO's value warm-up switches it off).

    Args:
        hidden_size: H, the policy's hidden size.
        dtype: the policy's parameter dtype.
        trunk_grad: whether the value loss's gradient flows into the trunk.
    """

    def __init__(self, hidden_size: int, dtype: torch.dtype = torch.float32, trunk_grad: bool = True):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.trunk_grad = trunk_grad

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) hidden states -> (...) fp32 values."""
        if not self.trunk_grad:
            hidden = hidden.detach()
        return self.linear(hidden).squeeze(-1).float()
