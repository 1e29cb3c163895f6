"""Sampling responses from a policy with a KV cache, and what the rest of RLHF needs to know about them.

Notation:
    B  batch size (prompts)
    P  prompt length, left-padded
    R  response length (at most ``max_new_tokens``), right-padded after the first EOS
    V  vocabulary size

Details from Huang et al. 2024 ("The N+ implementation details of RLHF with PPO"): responses are cut
after their first EOS token (everything after it is padding and masked out), and ``has_eos`` records
which responses never ended, so a trainer can penalise them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.data.collate import encode_prompts
from rlhfkit.data.hh import join_prompt_response
from rlhfkit.data.records import Prompt
from rlhfkit.rollout.config import SamplingConfig


@dataclass
class Rollout:
    """A batch of prompts with one sampled response each.

    Attributes:
        prompts: the B prompts.
        query_ids, query_mask: (B, P) left-padded prompt tokens.
        response_ids, response_mask: (B, R); the mask is 1 up to and including the first EOS.
        has_eos: (B,) bool, whether the response ended with EOS within ``max_new_tokens``.
        response_texts: the decoded responses, special tokens dropped, whitespace stripped.
        token_starts: for each row, the character offset in its response text where each valid
            response token starts (a token that adds no text, like EOS, starts at the end).
        logprobs: (B, R) fp32 log-probabilities of the sampled tokens under softmax(logits /
            temperature) as the sampler computed them (0 on padding), or None unless asked for.
    """

    prompts: list[Prompt]
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    has_eos: torch.Tensor
    response_texts: list[str]
    token_starts: list[list[int]]
    logprobs: torch.Tensor | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of valid response tokens."""
        return self.response_mask.sum(1)

    def reward_texts(self) -> list[str]:
        """Prompt + response dialogue strings, as a reward model reads them."""
        return [join_prompt_response(p, t) for p, t in zip(self.prompts, self.response_texts, strict=True)]

    def reward_text_starts(self) -> list[list[int]]:
        """Character offset of each valid response token inside :meth:`reward_texts` (the response is
        always the end of that text)."""
        out = []
        for text, resp, starts in zip(
            self.reward_texts(), self.response_texts, self.token_starts, strict=True
        ):
            shift = len(text) - len(resp)
            out.append([shift + s for s in starts])
        return out


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel | None = None) -> list[int]:
    """Token ids that end a response: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids = {tokenizer.eos_token_id}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    ids.discard(None)
    if not ids:
        raise ValueError("the tokenizer has no EOS token, so responses could never end")
    return sorted(ids)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from logits (B, V): greedy when ``temperature == 0``, else softmax of
    logits / temperature restricted to the ``top_k`` most likely tokens and the ``top_p`` nucleus
    (Holtzman et al. 2020)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    # inverse-CDF draw: one uniform number per row (a multinomial draw costs an exponential per token)
    cdf = logits.softmax(-1).cumsum(-1)  # (B, V)
    u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max(cdf.size(-1) - 1)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    with_logprobs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sample up to ``max_new_tokens`` per prompt, one token at a time, reusing the KV cache.

    Identical prompts (a GRPO group) are prefilled once and their KV cache is shared out. A row that has
    produced a stop token leaves the batch: its KV cache rows are dropped
    (``Cache.reorder_cache`` with the indices of the rows still running), so later steps compute only
    the running rows. Generation ends once every row has stopped. Tokens after a row's first stop token
    are ``pad_id``.

    With ``with_logprobs`` (and ``temperature > 0``) the log-probability of each sampled token under
    the full softmax(logits / temperature) is kept as it is sampled: the logprobs a separate forward of
    the policy would give (:func:`rlhfkit.models.logprobs.response_logprobs`, to float rounding of the
    cached forward), without that forward.

    Returns:
        response_ids (B, R), response_mask (B, R) (1 through the first stop token), has_eos (B,), and
        the sampled tokens' logprobs (B, R) fp32 (0 after the first stop) or None.
    """
    device = query_ids.device
    stop = torch.tensor(stop_ids, device=device)
    attention_mask = query_mask.long()
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    rows = torch.cat([query_ids, attention_mask], dim=1)  # (B, 2P): a prompt and its padding
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)  # (U, 2P), (B,)
    width = query_ids.size(1)
    out = model(
        input_ids=distinct[:, :width],
        attention_mask=distinct[:, width:],
        position_ids=(distinct[:, width:].cumsum(-1) - 1).clamp_min(0),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.cache  # the cache the model built for its architecture (transformers >= 5.24 names it so)
    cache.reorder_cache(inverse)  # (U, ...) -> (B, ...): every row gets its prompt's cache
    logits = out.logits[inverse, -1]  # (B_run, V) for the running rows
    next_position = position_ids[:, -1:] + 1  # (B_run, 1)
    running = torch.arange(query_ids.size(0), device=device)  # (B_run,) their rows in the batch
    done = torch.zeros(query_ids.size(0), dtype=torch.bool, device=device)
    keep_logprobs = with_logprobs and temperature > 0
    tokens, masks, logprobs = [], [], []
    for _ in range(max_new_tokens):
        sampled = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B_run,)
        masks.append(~done)
        tokens.append(torch.full_like(done, pad_id, dtype=torch.long).index_copy(0, running, sampled))
        if keep_logprobs:
            scaled = logits.float() / temperature  # (B_run, V)
            picked = scaled.gather(1, sampled[:, None]).squeeze(1) - torch.logsumexp(scaled, dim=-1)
            logprobs.append(torch.zeros(done.shape, device=device).index_copy(0, running, picked))
        stopped = torch.isin(sampled, stop)  # (B_run,)
        done[running[stopped]] = True
        if bool(done.all()):
            break
        if bool(stopped.any()):  # drop the stopped rows from the batch and the cache
            keep = (~stopped).nonzero().squeeze(1)
            cache.reorder_cache(keep)
            running, sampled = running[keep], sampled[keep]
            attention_mask, next_position = attention_mask[keep], next_position[keep]
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        out = model(
            input_ids=sampled[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            cache=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1]
        next_position = next_position + 1
    return (
        torch.stack(tokens, 1),
        torch.stack(masks, 1).long(),
        done,
        torch.stack(logprobs, 1) if keep_logprobs else None,
    )


def _decode_with_starts(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> tuple[str, list[int]]:
    """Decoded, stripped text of ``ids`` and the character where each token starts in it."""
    prefixes = tokenizer.batch_decode([ids[:k] for k in range(len(ids) + 1)], skip_special_tokens=True)
    text = prefixes[-1]
    lead = len(text) - len(text.lstrip())
    stripped = text.strip()
    starts = [min(max(len(p) - lead, 0), len(stripped)) for p in prefixes[:-1]]
    return stripped, starts


def rollout(
    policy: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    sampling: SamplingConfig,
    *,
    use_chat_template: bool,
    generator: torch.Generator | None = None,
    with_logprobs: bool = False,
) -> Rollout:
    """Render ``prompts`` (with the tokenizer's chat template when ``use_chat_template``), tokenise them,
    sample one response each as ``sampling`` says (a config's ``sampling`` section), and decode them;
    with ``with_logprobs``, keep the sampled tokens' logprobs (see :func:`generate`)."""
    query_ids, query_mask = encode_prompts(tokenizer, prompts, sampling.max_prompt_length, use_chat_template)
    device = next(policy.parameters()).device
    query_ids, query_mask = query_ids.to(device), query_mask.to(device)
    was_training = policy.training
    policy.eval()  # gradient checkpointing (a train-mode feature) would switch the KV cache off
    try:
        response_ids, response_mask, has_eos, logprobs = generate(
            policy,
            query_ids,
            query_mask,
            sampling.max_new_tokens,
            stop_token_ids(tokenizer, policy),
            tokenizer.pad_token_id,
            sampling.temperature,
            sampling.top_k,
            sampling.top_p,
            generator,
            with_logprobs,
        )
    finally:
        policy.train(was_training)
    texts, starts = [], []
    for row, length in enumerate(response_mask.sum(1).tolist()):
        text, row_starts = _decode_with_starts(tokenizer, response_ids[row, :length].tolist())
        texts.append(text)
        starts.append(row_starts)
    return Rollout(
        prompts, query_ids, query_mask, response_ids, response_mask, has_eos, texts, starts, logprobs
    )
