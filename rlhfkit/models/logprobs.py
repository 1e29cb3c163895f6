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

from dataclasses import dataclass

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


@dataclass
class TokenOutputs:
    """What one forward pass gives at each scored token: (B, T) fp32 each (B, R for responses), zero where
    nothing is scored; ``entropy`` and ``values`` are None unless asked for."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def sliced(self, start: int) -> TokenOutputs:
        """The outputs from column ``start`` on."""
        parts = (self.logprobs, self.entropy, self.values)
        return TokenOutputs(*(t[:, start:] if t is not None else None for t in parts))


def next_token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    target_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    value_head: torch.nn.Module | None = None,
    pack_tokens: int | None = PACK_TOKENS,
) -> TokenOutputs:
    """log p(x_t | x_<t) at every position t marked by ``target_mask``; optionally the entropy there and
    the value V(x_<t) of the state before t, ``value_head`` applied to the last hidden state that predicts
    x_t (a value head sharing the model's trunk).

    The LM head runs only on the positions that predict a target (``logits_to_keep``), so neither the
    (B, T, V) logits of the batch nor those of prompt tokens are ever built. With ``pack_tokens`` set (and
    a model not wrapped in DDP) the forward is padding-free and a prefix shared by several rows (a GRPO
    group's prompt, a preference pair's dialogue) is computed once (:mod:`rlhfkit.models.packing`); with
    ``pack_tokens=None`` it is one padded forward. Both give the same values to float rounding.

    Args:
        input_ids, attention_mask: (B, T), each row's real tokens contiguous (left or right padding).
        target_mask: (B, T) 0/1; the tokens to score. The first real token of a row has no prediction.
        temperature: logits are divided by it (the rollout's sampling temperature).
        value_head: maps (..., H) hidden states to (...) values.
        pack_tokens: tokens per packed row, or None for the padded forward.
    Returns:
        :class:`TokenOutputs` of shape (B, T).
    Raises:
        ValueError: a target is the first real token of its row, or lies on padding.
    """
    real = attention_mask.bool()
    target = target_mask.bool()
    positions = attention_mask.long().cumsum(1) - 1  # (B, T) position of each real token
    if (target & ~real).any() or (target & (positions == 0)).any():
        raise ValueError("next_token_logprobs: a target is padding or the first token of its row")
    heads = (temperature, with_entropy, value_head)
    if not target.any():
        zeros = torch.zeros(target.shape, device=target.device)
        return TokenOutputs(zeros, *(zeros.clone() if on else None for on in (with_entropy, value_head)))
    if pack_tokens is not None and can_pack(model):
        return _packed_outputs(model, input_ids, attention_mask, target, heads, pack_tokens)
    cols = target.any(0).nonzero().squeeze(1)  # (C,) columns holding a target
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions.clamp_min(0),
        logits_to_keep=cols - 1,  # the column before a target predicts it
        output_hidden_states=value_head is not None,
        use_cache=False,
    )
    outputs = _at_targets(out, cols - 1, input_ids[:, cols], *heads)  # each (B, C)
    weight = target[:, cols].to(torch.float32)  # (B, C)
    return TokenOutputs(
        *(
            v.new_zeros(target.shape).index_copy(1, cols, v * weight) if v is not None else None
            for v in outputs
        )
    )


def _at_targets(out, predictors, tokens, temperature, with_entropy, value_head) -> list[torch.Tensor | None]:
    """Logprobs, entropies and values (or None) at the targets of one forward's output ``out``, whose logits
    are those of the ``predictors`` positions (last dim of ``tokens``' shape)."""
    logits = out.logits  # (..., K, V)
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1]  # (..., W, H): the final (normed) hidden states
        values = value_head(hidden[..., predictors, :])  # (..., K)
    return [
        token_logprobs(logits, tokens, temperature),
        token_entropy(logits, temperature) if with_entropy else None,
        values,
    ]


def _packed_outputs(model, input_ids, attention_mask, target, heads, pack_tokens) -> TokenOutputs:
    real = attention_mask.bool()
    packing = pack(input_ids, attention_mask, pack_tokens)
    device, dtype = input_ids.device, model_dtype(model)
    flat_ids = input_ids[real]  # (N,)
    index = target[real].nonzero().squeeze(1)  # (K,) targets among the N real tokens
    # the token before a target predicts it (same batch row: a target is never a row's first token)
    predictors = packing.columns[index - 1]  # (K,) columns of the packed rows
    offsets = packing.offsets.to(device)
    row_of = torch.searchsorted(offsets, predictors, right=True) - 1  # (K,)
    found: list[torch.Tensor | None] = [None, None, None]  # logprobs, entropies, values: (K,) each
    for r, row in enumerate(packing.rows):
        mine = (row_of == r).nonzero().squeeze(1)  # (K_r,) this row's targets
        if not len(mine):
            continue
        local = predictors[mine] - offsets[r]  # (K_r,) columns within the row
        out = model(
            **row.inputs(device, dtype),
            logits_to_keep=local,
            output_hidden_states=heads[2] is not None,
            use_cache=False,
        )
        outputs = _at_targets(out, local, flat_ids[index[mine]][None], *heads)  # each (1, K_r)
        for i, values in enumerate(outputs):
            if values is not None:
                start = found[i] if found[i] is not None else values.new_zeros(len(index))
                found[i] = start.index_copy(0, mine, values[0])

    def spread(values: torch.Tensor) -> torch.Tensor:  # (K,) -> (B, T), zero off target
        return unpack(values.new_zeros(len(flat_ids)).index_copy(0, index, values), attention_mask)

    return TokenOutputs(*(spread(v) if v is not None else None for v in found))


def response_logprobs(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
    value_head: torch.nn.Module | None = None,
    pack_tokens: int | None = PACK_TOKENS,
) -> TokenOutputs:
    """:func:`next_token_logprobs` of the response tokens: logprobs (and entropies, values) (B, R).

    Args:
        query_ids, query_mask: (B, P), left-padded.
        response_ids, response_mask: (B, R), right-padded.
        temperature, value_head, pack_tokens: as in :func:`next_token_logprobs`.
    Returns:
        :class:`TokenOutputs` of shape (B, R), zero where ``response_mask`` is 0.
    """
    outputs = next_token_logprobs(
        model,
        torch.cat([query_ids, response_ids], dim=1),  # (B, P + R)
        torch.cat([query_mask, response_mask], dim=1).long(),
        torch.cat([torch.zeros_like(query_mask), response_mask], dim=1),
        temperature,
        with_entropy,
        value_head,
        pack_tokens,
    )
    return outputs.sliced(query_ids.size(1))


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
    outputs = next_token_logprobs(model, input_ids, attention_mask, mask, pack_tokens=pack_tokens)
    return outputs.logprobs.sum(dim=1)
