"""Supervised fine-tuning loss: next-token cross-entropy on response tokens.

Notation:
    B: batch size.
    T: sequence length (prompt + response, padded).
"""

from __future__ import annotations

import torch


def sft_loss(logprobs: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-averaged next-token negative log-likelihood.

    Maximum-likelihood language modelling (Radford et al. 2018, "Improving Language Understanding
    by Generative Pre-Training", Eq. 1), restricted to the tokens marked by ``loss_mask``, as in the
    SFT stage of Ouyang et al. 2022 (InstructGPT). ``logprobs[:, t]`` is log p(x_t | x_<t); the first
    column has no prediction and never counts::

        loss = sum_{b, t >= 1} m[b, t] * -logprobs[b, t] / sum_{b, t >= 1} m[b, t]

    Args:
        logprobs: ``(B, T)`` fp32 log-probabilities of the input tokens (as
            :func:`rlhfkit.models.logprobs.next_token_logprobs` gives them).
        loss_mask: ``(B, T)``; 1 for tokens to learn (the response).

    Returns:
        ``(loss, metrics)``: 0-d loss; metrics ``"nll"`` (the detached loss) and ``"tokens"``
        (number of counted target tokens).

    Raises:
        ValueError: on shape mismatch, or if no target token is counted.
    """
    if logprobs.dim() != 2 or loss_mask.shape != logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and loss_mask {tuple(loss_mask.shape)} must both be (B, T)"
        )
    weight = loss_mask[:, 1:].to(logprobs.dtype)  # (B, T-1)
    n_tokens = weight.sum()
    if n_tokens.item() == 0:
        raise ValueError("sft_loss: loss_mask selects no target token (positions 1..T-1 are all 0)")
    loss = -(logprobs[:, 1:] * weight).sum() / n_tokens
    return loss, {"nll": loss.detach(), "tokens": n_tokens.detach()}
