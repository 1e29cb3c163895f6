"""Tokenisation and padding: records -> (B, T) tensors with masks.

Notation:
    B  batch size
    T  padded sequence length
    P  padded prompt length (left-padded, so every prompt ends at column P - 1)

This module imports torch; the record schema (``records.py``) does not, so the feedback app can share it.
"""

from __future__ import annotations

from typing import Any

import torch

from rlhfkit.data.records import PreferencePair, Prompt, SFTExample
from rlhfkit.data.templates import render_prompt, render_response


def pad_sequences(
    sequences: list[list[int]], pad_id: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to (B, T) ids and a (B, T) 0/1 attention mask, on the ``side`` given."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def encode_prompt(
    tokenizer: Any, prompt: Prompt, max_prompt_length: int, use_chat_template: bool
) -> list[int]:
    """Token ids of a rendered prompt, keeping its last ``max_prompt_length`` tokens."""
    ids = tokenizer(render_prompt(tokenizer, prompt, use_chat_template), add_special_tokens=False).input_ids
    return ids[-max_prompt_length:]


def encode_prompts(
    tokenizer: Any, prompts: list[Prompt], max_prompt_length: int, use_chat_template: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded query ids and mask (B, P) for generation."""
    seqs = [encode_prompt(tokenizer, p, max_prompt_length, use_chat_template) for p in prompts]
    return pad_sequences(seqs, tokenizer.pad_token_id, side="left")


def encode_sft(
    tokenizer: Any, example: SFTExample, max_length: int, max_prompt_length: int, use_chat_template: bool
) -> tuple[list[int], list[int]]:
    """(input ids, loss mask) of one SFT example: the mask is 1 on response tokens (EOS included).

    The prompt keeps its last ``max_prompt_length`` tokens; the response is cut to fit ``max_length``.
    """
    prompt_ids = encode_prompt(tokenizer, example.prompt, max_prompt_length, use_chat_template)
    response_ids = tokenizer(
        render_response(tokenizer, example.response, use_chat_template), add_special_tokens=False
    ).input_ids
    response_ids = response_ids[: max(1, max_length - len(prompt_ids))]
    return prompt_ids + response_ids, [0] * len(prompt_ids) + [1] * len(response_ids)


def collate_sft(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded SFT examples: ``input_ids``, ``attention_mask``, ``loss_mask``, all (B, T)."""
    input_ids, attention_mask = pad_sequences([ids for ids, _ in encoded], pad_id)
    loss_mask, _ = pad_sequences([mask for _, mask in encoded], 0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "loss_mask": loss_mask}


def encode_pair(
    tokenizer: Any, pair: PreferencePair, max_length: int, max_prompt_length: int, use_chat_template: bool
) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """(chosen, rejected), each (input ids, loss mask) as :func:`encode_sft` makes them, same prompt."""
    lengths = (max_length, max_prompt_length, use_chat_template)
    return (
        encode_sft(tokenizer, SFTExample(pair.prompt, pair.chosen), *lengths),
        encode_sft(tokenizer, SFTExample(pair.prompt, pair.rejected), *lengths),
    )


def collate_pairs(encoded: list[tuple[tuple, tuple]], pad_id: int) -> dict[str, torch.Tensor]:
    """Stack B encoded pairs as 2B right-padded rows, all chosen first then all rejected:
    ``input_ids``, ``attention_mask``, ``loss_mask``, each (2B, T). Row b and row B + b are one pair."""
    return collate_sft([chosen for chosen, _ in encoded] + [rejected for _, rejected in encoded], pad_id)
