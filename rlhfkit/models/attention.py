"""Causal attention per sequence of a packed row, without an attention mask.

A packed row (:mod:`rlhfkit.models.packing`) holds several sequences end to end, some of them as one shared
prefix followed by the suffixes of the sequences that begin with it. Transformers' SDPA attention takes
such a row with a (W, W) mask: every query meets every key of the row, and an explicit mask keeps the CPU
and GPU kernels from skipping the blocks above the diagonal, so a row of k sequences costs about 2k times
the attention compute of its sequences taken one by one. Here each sequence is attended on its own with
``is_causal=True``: a sequence that shares nothing as its columns; a shared prefix as its columns; each
suffix as prefix + suffix, of which only the suffix's outputs are kept (the prefix's queries are
recomputed there, the prefix's keys and values are the shared ones, so their gradients collect from
every suffix).

The function is registered with transformers' ``AttentionInterface`` as ``"rlhfkit_sdpa"``; a decoder
loaded by :mod:`rlhfkit.models.loading` with SDPA attention is switched to it. It runs per sequence only
when the forward call passes ``packed_groups`` (:attr:`rlhfkit.models.packing.PackedRow.groups`); any
other call (padded batches, generation with a KV cache) goes to transformers' own SDPA function with the
mask transformers built, unchanged. The name is not saved in ``config.json`` (transformers keeps it
private), so saved models load with plain SDPA.

Notation:
    Hq, Hkv  query and key/value heads
    W        tokens of the packed row
    D        head dimension
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SEGMENT_SDPA = "rlhfkit_sdpa"


def segment_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    packed_groups: list[tuple[int, list[int]]] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA over each sequence of one packed row; transformers' SDPA when no layout is given.

    Args:
        query: (1, Hq, W, D); key, value: (1, Hkv, W, D), Hq a multiple of Hkv (grouped-query attention).
        attention_mask: ignored when ``packed_groups`` is given.
        packed_groups: the row's groups in column order, each (shared prefix length, suffix lengths).
    Returns:
        the attention output (1, W, Hq, D) and None (no attention weights).
    Raises:
        ValueError: the groups do not cover the row, or the batch holds more than one row.
    """
    if packed_groups is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    width = sum(shared + sum(suffixes) for shared, suffixes in packed_groups)
    if query.size(0) != 1 or width != query.size(2):
        raise ValueError(
            f"packed_groups cover {width} tokens; the attention got {query.size(0)} rows of {query.size(2)}"
        )
    repeats = query.size(1) // key.size(1)
    key, value = repeat_kv(key, repeats), repeat_kv(value, repeats)  # (1, Hq, W, D)

    def causal(*columns: slice) -> torch.Tensor:  # (1, Hq, n, D): attention over the columns end to end
        q, k, v = (torch.cat([x[:, :, c] for c in columns], 2) for x in (query, key, value))
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)

    outputs = []
    start = 0
    for shared, suffixes in packed_groups:
        prefix = slice(start, start + shared)
        outputs.append(causal(prefix))
        start += shared
        for n in suffixes:
            if n:
                outputs.append(causal(prefix, slice(start, start + n))[:, :, shared:])
                start += n
    return torch.cat(outputs, 2).transpose(1, 2).contiguous(), None


AttentionInterface.register(SEGMENT_SDPA, segment_sdpa_attention)
AttentionMaskInterface.register(SEGMENT_SDPA, sdpa_mask)  # the mask of the fallback path


def use_segment_attention(model: PreTrainedModel) -> None:
    """Switch a decoder loaded with SDPA attention to :func:`segment_sdpa_attention` (others unchanged)."""
    if model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(SEGMENT_SDPA)


def takes_packed_groups(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward takes ``packed_groups`` (it runs :func:`segment_sdpa_attention`)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) == SEGMENT_SDPA
