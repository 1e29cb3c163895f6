"""Supervised fine-tuning loss: next-token cross-entropy on response tokens.

Notation:
    B: batch size.
    T: sequence length (prompt + response, padded).
    V: vocabulary size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sft_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-averaged next-token negative log-likelihood.

    Maximum-likelihood language modelling (Radford et al. 2018, "Improving Language Understanding
    by Generative Pre-Training", Eq. 1), restricted to the tokens marked by ``loss_mask``, as in the
    SFT stage of Ouyang et al. 2022 (InstructGPT). ``logits[:, t]`` predicts ``input_ids[:, t + 1]``;
    that target counts only if ``loss_mask[:, t + 1]`` is 1::

        loss = sum_{b, t} m[b, t+1] * -log p(x[b, t+1] | x[b, :t+1]) / sum_{b, t} m[b, t+1]

    The log-softmax is computed in float32 whatever the dtype of ``logits``.

    Args:
        logits: ``(B, T, V)`` model outputs.
        input_ids: ``(B, T)`` token ids of the full sequence.
        loss_mask: ``(B, T)`` in input coordinates; 1 for tokens to learn (the response).

    Returns:
        ``(loss, metrics)``: 0-d loss; metrics ``"nll"`` (the detached loss) and ``"tokens"``
        (number of counted target tokens).

    Raises:
        ValueError: on shape mismatch, or if no target token is counted.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    if input_ids.shape != logits.shape[:2] or loss_mask.shape != logits.shape[:2]:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and loss_mask {tuple(loss_mask.shape)} must both be "
            f"(B, T) = {tuple(logits.shape[:2])}"
        )
    pred = logits[:, :-1].float()  # (B, T-1, V)
    target = input_ids[:, 1:]  # (B, T-1)
    weight = loss_mask[:, 1:].to(pred.dtype)  # (B, T-1)
    n_tokens = weight.sum()
    if n_tokens.item() == 0:
        raise ValueError("sft_loss: loss_mask selects no target token (positions 1..T-1 are all 0)")
    nll = F.cross_entropy(pred.reshape(-1, pred.size(-1)), target.reshape(-1), reduction="none")
    loss = (nll.view_as(weight) * weight).sum() / n_tokens
    return loss, {"nll": loss.detach(), "tokens": n_tokens.detach()}
