"""Log-probabilities of given response tokens under a causal LM.

Notation:
    B  batch size
    T  padded sequence length
    P  prompt (query) length, left-padded
    R  response length, right-padded after the first EOS
    V  vocabulary size

The policy and the reference are scored with logits / temperature, the same temperature the rollout
sampled with (Huang et al. 2024, N+ implementation details, detail 4), so that old logprobs, new logprobs
and reference logprobs describe the same distribution.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from rlhfkit.models.packing import PACK_TOKENS, can_pack, model_dtype, pack, unpack


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ``tokens``, without a second (B, R, V) tensor.

    Args:
        logits: (B, R, V) next-token logits aligned with ``tokens``.
        tokens: (B, R) token ids.
    Returns:
        (B, R) fp32 log-probabilities.
    """
    scaled = logits.float() / temperature  # (B, R, V)
    picked = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, R)
    return picked - torch.logsumexp(scaled, dim=-1)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy (nats) of softmax(logits / temperature) at each position: (B, R, V) -> (B, R)."""
    scaled = logits.float() / temperature
    logz = torch.logsumexp(scaled, dim=-1, keepdim=True)  # (B, R, 1)
    probs = torch.exp(scaled - logz)
    return (logz.squeeze(-1) - (probs * scaled).sum(-1)).detach()


def next_token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    pack_tokens: int | None = PACK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(x_t | x_<t) at every position t marked by ``target_mask``, and optionally the entropy there.

    The LM head runs only on the positions that predict a target (``logits_to_keep``), so neither the
    (B, T, V) logits of the batch nor those of prompt tokens are ever built. With ``pack_tokens`` set (and
    a model not wrapped in DDP) the forward is padding-free and a prefix shared by several rows (a GRPO
    group's prompt, a preference pair's dialogue) is computed once (:mod:`rlhfkit.models.packing`); with
    ``pack_tokens=None`` it is one padded forward. Both give the same values to float rounding.

    Args:
        input_ids, attention_mask: (B, T), each row's real tokens contiguous (left or right padding).
        target_mask: (B, T) 0/1; the tokens to score. The first real token of a row has no prediction.
        temperature: logits are divided by it (the rollout's sampling temperature).
        pack_tokens: tokens per packed row, or None for the padded forward.
    Returns:
        ``(logprobs, entropy)``: (B, T) fp32, zero where ``target_mask`` is 0 (entropy None unless asked).
    Raises:
        ValueError: a target is the first real token of its row, or lies on padding.
    """
    real = attention_mask.bool()
    target = target_mask.bool()
    positions = attention_mask.long().cumsum(1) - 1  # (B, T) position of each real token
    if (target & ~real).any() or (target & (positions == 0)).any():
        raise ValueError("next_token_logprobs: a target is padding or the first token of its row")
    if not target.any():
        zeros = torch.zeros(target.shape, device=target.device)
        return zeros, zeros.clone() if with_entropy else None
    if pack_tokens is not None and can_pack(model):
        return _packed_logprobs(
            model, input_ids, attention_mask, target, temperature, with_entropy, pack_tokens
        )
    cols = target.any(0).nonzero().squeeze(1)  # (C,) columns holding a target
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions.clamp_min(0),
        logits_to_keep=cols - 1,  # the column before a target predicts it
        use_cache=False,
    )
    logits = out.logits  # (B, C, V)
    weight = target[:, cols].to(torch.float32)  # (B, C)

    def spread(values: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, T), zero off target
        return values.new_zeros(target.shape).index_copy(1, cols, values * weight)

    logprobs = spread(token_logprobs(logits, input_ids[:, cols], temperature))
    entropy = spread(token_entropy(logits, temperature)) if with_entropy else None
    return logprobs, entropy


def _packed_logprobs(model, input_ids, attention_mask, target, temperature, with_entropy, pack_tokens):
    real = attention_mask.bool()
    packing = pack(input_ids, attention_mask, pack_tokens)
    device, dtype = input_ids.device, model_dtype(model)
    flat_ids = input_ids[real]  # (N,)
    index = target[real].nonzero().squeeze(1)  # (K,) targets among the N real tokens
    # the token before a target predicts it (same batch row: a target is never a row's first token)
    predictors = packing.columns[index - 1]  # (K,) columns of the packed rows
    offsets = packing.offsets.to(device)
    row_of = torch.searchsorted(offsets, predictors, right=True) - 1  # (K,)
    logprobs = torch.zeros(len(index), device=device)
    entropies = torch.zeros(len(index), device=device) if with_entropy else None
    for r, row in enumerate(packing.rows):
        mine = (row_of == r).nonzero().squeeze(1)  # (K_r,) this row's targets
        if not len(mine):
            continue
        out = model(
            **row.inputs(device, dtype), logits_to_keep=predictors[mine] - offsets[r], use_cache=False
        )
        logits = out.logits[0]  # (K_r, V): one per target
        logprobs = logprobs.index_copy(0, mine, token_logprobs(logits, flat_ids[index[mine]], temperature))
        if entropies is not None:
            entropies = entropies.index_copy(0, mine, token_entropy(logits, temperature))

    def spread(values: torch.Tensor) -> torch.Tensor:  # (K,) -> (B, T), zero off target
        return unpack(values.new_zeros(len(flat_ids)).index_copy(0, index, values), attention_mask)

    return spread(logprobs), spread(entropies) if entropies is not None else None


def response_logprobs(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    pack_tokens: int | None = PACK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token logprobs (B, R) of the response under ``model``, and optionally entropy (B, R).

    Args:
        query_ids, query_mask: (B, P), left-padded.
        response_ids, response_mask: (B, R), right-padded.
        temperature, pack_tokens: as in :func:`next_token_logprobs`.
    Returns:
        (B, R) fp32 logprobs (and entropies), zero where ``response_mask`` is 0.
    """
    logprobs, entropy = next_token_logprobs(
        model,
        torch.cat([query_ids, response_ids], dim=1),  # (B, P + R)
        torch.cat([query_mask, response_mask], dim=1).long(),
        torch.cat([torch.zeros_like(query_mask), response_mask], dim=1),
        temperature,
        with_entropy,
        pack_tokens,
    )
    width = query_ids.size(1)
    return logprobs[:, width:], entropy[:, width:] if entropy is not None else None


def sequence_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    pack_tokens: int | None = PACK_TOKENS,
) -> torch.Tensor:
    """Summed log-probabilities of the tokens marked by ``loss_mask`` (B,), right padding.

    Each row is prompt + response + right padding (as :func:`rlhfkit.data.collate.collate_sft` builds
    it); ``loss_mask`` is 1 on the response tokens. The first token of a row has no prediction and is
    never counted.

    Args:
        input_ids, attention_mask, loss_mask: (B, T), right-padded.
        pack_tokens: as in :func:`next_token_logprobs`.
    Returns:
        (B,) fp32 sums of log p(x_t | x_<t) over the masked tokens (with grad if the model has it).
    Raises:
        ValueError: ``loss_mask`` selects no token after the first column.
    """
    mask = loss_mask.clone()
    mask[:, 0] = 0
    if not mask.any():
        raise ValueError("sequence_logprobs: loss_mask selects no token after the first column")
    logprobs, _ = next_token_logprobs(model, input_ids, attention_mask, mask, pack_tokens=pack_tokens)
    return logprobs.sum(dim=1)
