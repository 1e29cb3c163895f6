"""Padding-free forward passes: the real tokens of a padded batch, packed into short rows.

A padded (B, T) batch spends compute on padding: about a third of the tokens of an HH batch are pad.
Packing drops the pad tokens and concatenates the real tokens of consecutive rows into one row of at
most ``pack_tokens`` tokens (a longer sequence gets a row of its own), with position ids restarting at 0
for every sequence. transformers' decoder-only models build a block-diagonal causal mask from such
position ids when ``attention_mask`` is None and no KV cache is used (``find_packed_sequence_indices``
in ``transformers.masking_utils``: a sequence starts where the position does not grow by one), so each
sequence attends to itself only and its outputs equal those of a padded forward. Each packed row is its
own forward call: attention over a row of W tokens costs O(W^2), so rows are kept short rather than
packing the whole batch into one.

Notation:
    B  rows of the padded batch
    T  padded length
    N  real (non-pad) tokens of the batch
    W  tokens of one packed row (<= max(pack_tokens, longest sequence))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

PACK_TOKENS = 512  # tokens per packed row: longer rows waste attention compute, shorter ones call overhead


@dataclass
class PackedRow:
    """One packed row: ``input_ids`` and ``position_ids`` (1, W), and ``span``, its slice of the N real
    tokens of the batch in row-major order."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    span: slice


def can_pack(model: torch.nn.Module) -> bool:
    """Whether ``model`` may run padding-free: not under DDP, whose gradient hooks expect one forward
    per backward (several packed rows mean several forward calls)."""
    return not isinstance(model, DistributedDataParallel)


def packed_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, pack_tokens: int = PACK_TOKENS
) -> Iterator[PackedRow]:
    """Pack the real tokens of a padded batch into rows of at most ``pack_tokens`` tokens.

    Args:
        input_ids, attention_mask: (B, T); the real tokens of a row must be contiguous (left or right
            padding, not both inside a row).
    Yields:
        :class:`PackedRow` in batch order; concatenated, their spans cover the N real tokens, ordered as
        ``input_ids[attention_mask.bool()]``.
    Raises:
        ValueError: a row's real tokens are not contiguous.
    """
    real = attention_mask.bool()
    lengths = real.sum(1)  # (B,)
    first = real.float().argmax(1)  # (B,) column of each row's first real token
    ends = first + lengths  # (B,)
    cols = torch.arange(real.size(1), device=real.device)
    contiguous = (real == ((cols >= first[:, None]) & (cols < ends[:, None]))).all()
    if not contiguous:
        raise ValueError("packing needs each row's real tokens to be contiguous (left or right padding)")
    flat_ids = input_ids[real]  # (N,)
    positions = (attention_mask.long().cumsum(1) - 1)[real]  # (N,) restarting at 0 in every row
    start = end = 0
    for length in lengths.tolist():
        if end > start and end + length - start > pack_tokens:
            yield PackedRow(flat_ids[None, start:end], positions[None, start:end], slice(start, end))
            start = end
        end += length
    if end > start:
        yield PackedRow(flat_ids[None, start:end], positions[None, start:end], slice(start, end))


def unpack(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scatter (N, ...) values of real tokens back to (B, T, ...), zeros on padding; differentiable."""
    real = attention_mask.bool().flatten()  # (B * T,)
    index = real.nonzero().squeeze(1)  # (N,)
    out = values.new_zeros((real.numel(), *values.shape[1:]))
    return out.index_copy(0, index, values).view(*attention_mask.shape, *values.shape[1:])


def packed_hidden_states(
    backbone: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pack_tokens: int = PACK_TOKENS,
) -> torch.Tensor:
    """Last hidden states (N, H) of the real tokens of a padded batch, from padding-free forwards of a
    decoder ``backbone`` (e.g. ``model.base_model`` of a sequence classifier); in the order of
    ``input_ids[attention_mask.bool()]``."""
    device = next(backbone.parameters()).device
    hidden = [
        backbone(
            input_ids=row.input_ids.to(device), position_ids=row.position_ids.to(device), use_cache=False
        ).last_hidden_state[0]  # (W, H)
        for row in packed_rows(input_ids, attention_mask, pack_tokens)
    ]
    return torch.cat(hidden)


def length_groups(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped for micro-batches: sorted by length, consecutive ones together while
    a group holds at most ``max_tokens`` tokens (a longer item is a group of its own). Items of similar
    length share a group, so padding inside a group is small."""
    groups: list[list[int]] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if groups and total + lengths[i] <= max_tokens:
            groups[-1].append(i)
            total += lengths[i]
        else:
            groups.append([i])
            total = lengths[i]
    return groups
