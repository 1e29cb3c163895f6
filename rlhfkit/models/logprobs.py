"""Log-probabilities of given response tokens under a causal LM.

Notation:
    B  batch size
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


def response_logits(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """Logits that predict each response token, from one forward pass over prompt + response.

    Only the last R + 1 positions go through the LM head (``logits_to_keep``), so the (B, P + R, V)
    logits of the prompt are never built.

    Args:
        query_ids, query_mask: (B, P), left-padded.
        response_ids, response_mask: (B, R), right-padded.
    Returns:
        (B, R, V) logits; row t predicts ``response_ids[:, t]``.
    """
    input_ids = torch.cat([query_ids, response_ids], dim=1)  # (B, P + R)
    attention_mask = torch.cat([query_mask, response_mask], dim=1).long()
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    response_len = response_ids.size(1)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=response_len + 1,
        use_cache=False,
    )
    return out.logits[:, :-1]  # (B, R, V)


def response_logprobs(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token logprobs (B, R) of the response under ``model``, and optionally entropy (B, R).

    Values at padded response positions are meaningless; callers mask them with ``response_mask``.
    """
    logits = response_logits(model, query_ids, query_mask, response_ids, response_mask)
    logprobs = token_logprobs(logits, response_ids, temperature)
    entropy = token_entropy(logits, temperature) if with_entropy else None
    return logprobs, entropy


def sequence_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
) -> torch.Tensor:
    """Summed log-probabilities of the tokens marked by ``loss_mask``, one forward pass, right padding.

    Each row is prompt + response + right padding (as :func:`rlhfkit.data.collate.collate_sft` builds
    it); ``loss_mask`` is 1 on the response tokens. Logits are only built from the first response
    position of the batch on (``logits_to_keep``), so the (B, T, V) logits of long prompts never exist.
    The first token of a row has no prediction and is never counted.

    Args:
        input_ids, attention_mask, loss_mask: (B, T), right-padded.
    Returns:
        (B,) fp32 sums of log p(x_t | x_<t) over the masked tokens (with grad if the model has it).
    """
    mask = loss_mask.clone()
    mask[:, 0] = 0
    if not mask.any():
        raise ValueError("sequence_logprobs: loss_mask selects no token after the first column")
    first = int(mask.float().argmax(dim=1)[mask.any(dim=1)].min())  # earliest scored column, >= 1
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        logits_to_keep=input_ids.size(1) - first + 1,
        use_cache=False,
    )
    logits = out.logits[:, :-1]  # (B, T - first, V): column j predicts input_ids[:, first + j]
    logprobs = token_logprobs(logits, input_ids[:, first:])  # (B, T - first)
    return (logprobs * mask[:, first:].to(logprobs.dtype)).sum(dim=1)
