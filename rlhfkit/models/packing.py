"""Padding-free forward passes: the real tokens of a padded batch, packed into short rows.

A padded (B, T) batch spends compute on padding: about a third of the tokens of an HH batch are pad.
Packing drops the pad tokens and concatenates the real tokens of several sequences into one row of at
most ``pack_tokens`` tokens (a longer sequence gets a row of its own), with position ids restarting at 0
for every sequence. Each packed row is its own forward call: attention over a row of W tokens costs
O(W^2), so rows are kept short rather than packing the whole batch into one.

Shared prefixes. Sequences of a batch often begin with the same tokens: the G responses of one GRPO/RLOO
prompt, the chosen and rejected dialogue of a preference pair (DPO, reward model). In a causal model the
hidden states of a common prefix are the same in every sequence that has it, so the prefix is computed
once: the sequences are sorted, those with a long common prefix form a group, and the group is laid out
as ``prefix, suffix_1, ..., suffix_k`` with a 4D attention mask in which each suffix attends to the prefix
and to itself, causally, and each suffix's position ids continue from the prefix. A token's output is
then read from the prefix column for the prefix part of every sequence, and from its own suffix column
otherwise; gradients flow back through the shared columns to every sequence that uses them. Rows
without a shared prefix pass no mask: transformers' decoder-only models build the block-diagonal causal
mask from the restarting position ids (``find_packed_sequence_indices`` in
``transformers.masking_utils``). Either way each sequence's outputs equal those of a padded forward.

Notation:
    B  rows of the padded batch
    T  padded length
    N  real (non-pad) tokens of the batch
    W  tokens of one packed row
    C  columns of all packed rows together (N minus the tokens saved by sharing)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

PACK_TOKENS = 512  # tokens per packed row: longer rows waste attention compute, shorter ones call overhead
MIN_SHARED_TOKENS = 16  # a shorter common prefix is not worth a group (and its attention mask)


@dataclass
class PackedRow:
    """One packed row: ``input_ids`` and ``position_ids`` (1, W) and, where it holds a group with a shared
    prefix, ``allowed`` (W, W) bool (query, key) pairs that may attend; None otherwise."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    allowed: torch.Tensor | None

    def inputs(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Keyword arguments of the model's forward: ids, positions and the additive (1, 1, W, W) mask of
        ``dtype`` (0 where allowed, the dtype's minimum elsewhere), if any."""
        out = {"input_ids": self.input_ids.to(device), "position_ids": self.position_ids.to(device)}
        if self.allowed is not None:
            blocked = torch.full(self.allowed.shape, torch.finfo(dtype).min, dtype=dtype, device=device)
            out["attention_mask"] = blocked.masked_fill(self.allowed.to(device), 0.0)[None, None]
        return out


@dataclass
class Packing:
    """The packed rows of a batch and ``columns`` (N,): the column of each real token (in the order of
    ``input_ids[attention_mask.bool()]``) among the C columns of the rows laid end to end."""

    rows: list[PackedRow]
    columns: torch.Tensor

    @property
    def offsets(self) -> torch.Tensor:
        """(rows + 1,) first column of every row, then C."""
        widths = torch.tensor([0] + [row.input_ids.size(1) for row in self.rows])
        return widths.cumsum(0)


def can_pack(model: torch.nn.Module) -> bool:
    """Whether ``model`` may run padding-free: not under DDP, whose gradient hooks expect one forward
    per backward (several packed rows mean several forward calls)."""
    return not isinstance(model, DistributedDataParallel)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Group:
    """Sequences (batch rows) laid out as one shared prefix of ``shared`` tokens plus their suffixes."""

    members: list[int]
    shared: int
    width: int  # tokens of the layout

    def extended(self, seq: list[int], last: list[int], b: int, pack_tokens: int) -> _Group | None:
        """This group with sequence ``b`` (``seq``; ``last`` is the group's last member's) added, or None
        when that saves fewer tokens than leaving it out or the layout would outgrow ``pack_tokens``."""
        shared = min(self.shared, _common_prefix(last, seq))
        width = self.width + (len(self.members) - 1) * (self.shared - shared) + len(seq) - shared
        saved, saved_before = len(self.members) * shared, (len(self.members) - 1) * self.shared
        if shared < MIN_SHARED_TOKENS or saved <= saved_before or width > pack_tokens:
            return None
        return _Group(self.members + [b], shared, width)


def _groups(seqs: list[list[int]], pack_tokens: int) -> list[_Group]:
    """Sequences in sorted order (a common prefix makes them neighbours), grouped greedily."""
    groups: list[_Group] = []
    for b in sorted(range(len(seqs)), key=lambda i: seqs[i]):
        grown = groups[-1].extended(seqs[b], seqs[groups[-1].members[-1]], b, pack_tokens) if groups else None
        if grown is None:
            groups.append(_Group([b], len(seqs[b]), len(seqs[b])))
        else:
            groups[-1] = grown
    return groups


def pack(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pack_tokens: int = PACK_TOKENS,
    share_prefixes: bool = True,
) -> Packing:
    """Pack the real tokens of a padded batch into rows of at most ``pack_tokens`` tokens.

    Args:
        input_ids, attention_mask: (B, T); the real tokens of a row must be contiguous (left or right
            padding, not both inside a row).
        share_prefixes: compute a common prefix of several sequences once (causal models only: in an
            encoder the prefix attends to what follows it).
    Returns:
        the :class:`Packing`; a group of sequences with a shared prefix always lies in one row.
    Raises:
        ValueError: a row's real tokens are not contiguous.
    """
    real = attention_mask.bool()
    lengths = real.sum(1)  # (B,)
    first = real.float().argmax(1)  # (B,) column of each row's first real token
    cols = torch.arange(real.size(1), device=real.device)
    contiguous = (real == ((cols >= first[:, None]) & (cols < (first + lengths)[:, None]))).all()
    if not contiguous:
        raise ValueError("packing needs each row's real tokens to be contiguous (left or right padding)")
    flat_ids = input_ids[real].cpu()  # (N,)
    starts = [0, *lengths.cumsum(0).tolist()]
    seqs = [flat_ids[a:b].tolist() for a, b in zip(starts, starts[1:], strict=False)]
    if share_prefixes:
        groups = _groups(seqs, pack_tokens)
    else:
        groups = [_Group([b], len(s), len(s)) for b, s in enumerate(seqs)]
    columns = torch.empty(len(flat_ids), dtype=torch.long)
    rows: list[PackedRow] = []
    laid: list[_Group] = []  # the groups of the row being filled
    offset = width = 0  # first column and width of that row
    for group in [*groups, None]:
        if laid and (group is None or width + group.width > pack_tokens):
            rows.append(_layout(laid, seqs, starts, offset, columns))
            offset, laid, width = offset + width, [], 0
        if group is not None:
            laid.append(group)
            width += group.width
    return Packing(rows, columns.to(input_ids.device))


def _layout(
    groups: list[_Group], seqs: list[list[int]], starts: list[int], offset: int, columns: torch.Tensor
) -> PackedRow:
    """One packed row holding ``groups`` from column ``offset`` on; fills their tokens' ``columns``."""
    ids: list[int] = []
    positions: list[int] = []
    blocks: list[int] = []  # the group of each column
    branches: list[int] = []  # 0 on a shared prefix, k on the suffix of the group's k-th sequence
    for g, group in enumerate(groups):
        shared, prefix_column = group.shared, offset + len(ids)
        ids += seqs[group.members[0]][:shared]
        positions += range(shared)
        blocks += [g] * shared
        branches += [0] * shared
        for k, b in enumerate(group.members, start=1):
            seq, at = seqs[b], starts[b]
            columns[at : at + shared] = torch.arange(prefix_column, prefix_column + shared)
            columns[at + shared : at + len(seq)] = torch.arange(len(seq) - shared) + offset + len(ids)
            ids += seq[shared:]
            positions += range(shared, len(seq))
            blocks += [g] * (len(seq) - shared)
            branches += [k] * (len(seq) - shared)
    allowed = None
    if any(len(group.members) > 1 for group in groups):
        block, branch, index = torch.tensor(blocks), torch.tensor(branches), torch.arange(len(ids))
        allowed = (
            (block[:, None] == block[None, :])
            & (index[None, :] <= index[:, None])  # causal: keys up to the query's column
            & ((branch[None, :] == 0) | (branch[None, :] == branch[:, None]))  # the prefix or its own suffix
        )
    return PackedRow(torch.tensor([ids]), torch.tensor([positions]), allowed)


def unpack(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scatter (N, ...) values of real tokens back to (B, T, ...), zeros on padding; differentiable."""
    real = attention_mask.bool().flatten()  # (B * T,)
    index = real.nonzero().squeeze(1)  # (N,)
    out = values.new_zeros((real.numel(), *values.shape[1:]))
    return out.index_copy(0, index, values).view(*attention_mask.shape, *values.shape[1:])


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s parameters (the attention mask's dtype)."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def packed_hidden_states(
    backbone: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pack_tokens: int = PACK_TOKENS,
) -> torch.Tensor:
    """Last hidden states (N, H) of the real tokens of a padded batch, from padding-free forwards (shared
    prefixes computed once) of a decoder ``backbone`` (e.g. ``model.base_model`` of a sequence
    classifier); in the order of ``input_ids[attention_mask.bool()]``."""
    device, dtype = next(backbone.parameters()).device, model_dtype(backbone)
    packing = pack(input_ids, attention_mask, pack_tokens)
    hidden = [
        backbone(**row.inputs(device, dtype), use_cache=False).last_hidden_state[0]  # (W, H)
        for row in packing.rows
    ]
    return torch.cat(hidden)[packing.columns.to(device)]  # (C, H) -> (N, H)


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
