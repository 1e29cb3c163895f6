"""Sampling with a KV cache (rlhfkit.rollout.sampling) on the tiny random Llama policy.

Greedy decoding is checked token for token against ``transformers``' own ``generate``; stop handling,
``has_eos``, the sampler's filters and the character offsets a rollout reports are checked by hand.
"""

import logging
import warnings

import pytest
import torch
from transformers import GenerationConfig

from rlhfkit.data.collate import encode_prompts
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.rollout.config import SamplingConfig
from rlhfkit.rollout.sampling import (
    Rollout,
    _decode_with_starts,
    generate,
    rollout,
    sample_next_token,
)

PROMPTS = [
    "\n\nHuman: Is this a good idea?\n\nAssistant:",
    "\n\nHuman: Hi\n\nAssistant:",
    "\n\nHuman: Can you help me write a short letter to my friend?\n\nAssistant:",
]
MAX_NEW = 10


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def policy_dir(request):
    """The rotary Llama, and GPT-2 whose absolute positions notice wrong position ids under left padding."""
    return request.getfixturevalue("tiny_policy_dir" if request.param == "llama" else "tiny_gpt2_policy_dir")


@pytest.fixture(scope="module")
def policy(policy_dir):
    return load_policy(policy_dir, trainable=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_policy_dir):
    return load_tokenizer(tiny_policy_dir)


@pytest.fixture(scope="module")
def queries(tokenizer):
    query_ids, query_mask = encode_prompts(tokenizer, PROMPTS, 64, use_chat_template=False)
    lengths = query_mask.sum(1)
    assert len(set(lengths.tolist())) == len(PROMPTS)  # really left-padded to different lengths
    return query_ids, query_mask


@pytest.fixture(scope="module")
def hf_greedy(policy, tokenizer, queries):
    """(B, MAX_NEW) greedy continuation from transformers' generate, EOS handling off."""
    query_ids, query_mask = queries
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=MAX_NEW,
        min_new_tokens=0,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    out = policy.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
    ref = out[:, query_ids.size(1) :]
    assert ref.shape == (len(PROMPTS), MAX_NEW)
    return ref


def _first(row: list[int], stop: set[int]) -> int | None:
    return next((i for i, t in enumerate(row) if t in stop), None)


def test_greedy_matches_transformers_generate(policy, tokenizer, queries, hf_greedy):
    query_ids, query_mask = queries
    # a stop id that greedy decoding never emits, so no row ends early and nothing is masked
    never = min(set(range(len(tokenizer))) - set(hf_greedy.flatten().tolist()))
    ids, mask, has_eos, _ = generate(
        policy, query_ids, query_mask, MAX_NEW, [never], tokenizer.pad_token_id, temperature=0.0
    )
    assert torch.equal(ids, hf_greedy)
    assert torch.equal(mask, torch.ones_like(ids))
    assert has_eos.dtype == torch.bool
    assert not has_eos.any()


def test_repeated_prompts_share_one_prefill_and_match_transformers(policy, tokenizer, queries, hf_greedy):
    query_ids, query_mask = queries
    order = torch.tensor([1, 0, 1, 2, 0])  # a group-sampling batch: prompts repeated, interleaved
    never = min(set(range(len(tokenizer))) - set(hf_greedy.flatten().tolist()))
    calls = []
    hook = policy.register_forward_pre_hook(
        lambda _, args, kw: calls.append(kw["input_ids"].shape), with_kwargs=True
    )
    try:
        ids, _, _, _ = generate(
            policy, query_ids[order], query_mask[order], MAX_NEW, [never], tokenizer.pad_token_id, 0.0
        )
    finally:
        hook.remove()
    assert calls[0][0] == len(PROMPTS)  # the prefill ran on the 3 distinct prompts, not on 5 rows
    assert torch.equal(ids, hf_greedy[order])


def test_sampling_says_nothing_about_past_key_values(policy, tokenizer, queries, hf_greedy, monkeypatch):
    """transformers 5.24 renamed the KV cache argument and output ``past_key_values`` to ``cache`` (the old
    name goes in 5.40): passing the old name raises a FutureWarning, reading it logs a transformers warning
    (once per process). Sampling uses the new name, so neither appears."""
    query_ids, query_mask = queries
    never = min(set(range(len(tokenizer))) - set(hf_greedy.flatten().tolist()))
    hf_logger = logging.getLogger("transformers")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    # "once" messages logged earlier in the session would be swallowed: log every one here
    monkeypatch.setattr(logging.Logger, "warning_once", logging.Logger.warning, raising=False)
    monkeypatch.setattr(hf_logger, "level", logging.WARNING)
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids, _, _, _ = generate(
                policy, query_ids, query_mask, MAX_NEW, [never], tokenizer.pad_token_id, temperature=0.0
            )
    finally:
        hf_logger.removeHandler(handler)
    assert ids.size(1) == MAX_NEW  # every step after the prefill ran on the cache
    said = [f"{w.category.__name__}: {w.message}" for w in caught] + [r.getMessage() for r in records]
    assert not [m for m in said if "past_key_values" in m or "cache_params" in m], said


def test_greedy_is_not_the_same_for_every_row(hf_greedy):
    # guards the comparison above against a degenerate model that emits one constant token
    assert not torch.equal(hf_greedy[0], hf_greedy[1])


def test_tokens_after_the_first_stop_are_pad_and_masked(policy, tokenizer, queries, hf_greedy):
    query_ids, query_mask = queries
    row0 = hf_greedy[0].tolist()
    # the token greedy decoding emits in row 0 at step 3 (or the next step whose token is new in the row)
    k = next(i for i in range(3, MAX_NEW) if row0[i] not in row0[:i])
    stop = row0[k]
    pad = tokenizer.pad_token_id
    ids, mask, has_eos, _ = generate(policy, query_ids, query_mask, MAX_NEW, [stop], pad, temperature=0.0)

    firsts = [_first(row, {stop}) for row in hf_greedy.tolist()]
    assert firsts[0] == k
    width = MAX_NEW if None in firsts else max(firsts) + 1
    assert ids.shape == mask.shape == (len(PROMPTS), width)
    for b, first in enumerate(firsts):
        end = width if first is None else first + 1  # the stop token itself is kept and unmasked
        assert ids[b, :end].tolist() == hf_greedy[b, :end].tolist()
        assert ids[b, end:].tolist() == [pad] * (width - end)
        assert mask[b].tolist() == [1] * end + [0] * (width - end)
        assert bool(has_eos[b]) == (first is not None)
    assert mask[0].sum().item() == k + 1
    assert bool(has_eos[0])


def test_generation_stops_once_every_row_has_stopped(policy, tokenizer, queries, hf_greedy):
    query_ids, query_mask = queries
    # every row's step-1 token is a stop token, so all rows are done by step 1
    stops = sorted(set(hf_greedy[:, 1].tolist()))
    firsts = [_first(row, set(stops)) for row in hf_greedy.tolist()]
    ids, mask, has_eos, _ = generate(
        policy, query_ids, query_mask, MAX_NEW, stops, tokenizer.pad_token_id, temperature=0.0
    )
    assert ids.size(1) == max(firsts) + 1 < MAX_NEW
    assert has_eos.all()
    assert mask.sum(1).tolist() == [f + 1 for f in firsts]


def test_top_k_one_is_argmax():
    torch.manual_seed(1)
    logits = torch.randn(6, 50)
    gen = torch.Generator().manual_seed(0)
    for temperature in (0.5, 1.0, 5.0):
        assert torch.equal(sample_next_token(logits, temperature, top_k=1, generator=gen), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, 0.0), logits.argmax(-1))


def test_tiny_top_p_keeps_only_the_argmax():
    torch.manual_seed(2)
    logits = torch.randn(6, 50)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert torch.equal(sample_next_token(logits, 1.0, top_p=1e-6, generator=gen), logits.argmax(-1))


def test_sampling_is_reproducible_with_a_seeded_generator():
    torch.manual_seed(3)
    logits = torch.randn(64, 50)
    draw = lambda seed: sample_next_token(logits, 0.8, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))  # 64 draws over 50 tokens: a collision is ~impossible


def test_sampling_frequencies_follow_temperature_top_k_and_top_p():
    # probabilities [0.5, 0.3, 0.15, 0.05] as logits, the same row N times
    n = 20_000
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(n, 1)
    gen = torch.Generator().manual_seed(0)

    def freq(**kw):
        return torch.bincount(sample_next_token(logits, generator=gen, **kw), minlength=4).float() / n

    # temperature 1: the probabilities themselves
    torch.testing.assert_close(freq(temperature=1.0), probs, atol=0.015, rtol=0)
    # temperature 0.5: p^2 / sum p^2 = [0.25, 0.09, 0.0225, 0.0025] / 0.365
    sq = torch.tensor([0.25, 0.09, 0.0225, 0.0025]) / 0.365
    torch.testing.assert_close(freq(temperature=0.5), sq, atol=0.015, rtol=0)
    # top_k 2: [0.5, 0.3] renormalised = [0.625, 0.375, 0, 0]
    top2 = torch.tensor([0.625, 0.375, 0.0, 0.0])
    torch.testing.assert_close(freq(temperature=1.0, top_k=2), top2, atol=0.015, rtol=0)
    # top_p 0.7: mass before each token [0, 0.5, 0.8, 0.95]; keep while it is <= 0.7 -> tokens 0 and 1
    torch.testing.assert_close(freq(temperature=1.0, top_p=0.7), top2, atol=0.015, rtol=0)


def test_decode_with_starts_by_hand(tokenizer):
    ids = tokenizer(" Yes, good.", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    pieces = [tokenizer.decode([i]) for i in ids[:-1]]
    assert "".join(pieces) == " Yes, good."
    text, starts = _decode_with_starts(tokenizer, ids)
    assert text == "Yes, good."
    # each token starts where the text decoded before it ends (the leading space stripped off);
    # EOS adds no text and starts at the end
    expected = [max(len("".join(pieces[:k])) - 1, 0) for k in range(len(pieces))] + [len(text)]
    assert starts == expected
    assert starts[0] == 0 and starts[-1] == len("Yes, good.")
    for k, piece in enumerate(pieces):
        assert text[starts[k] :].startswith(piece.lstrip() if k == 0 else piece)


def test_reward_text_starts_point_at_each_token_in_the_dialogue(tokenizer):
    prompt = PROMPTS[0]  # ends with ":", so join_prompt_response puts a space before "Yes"
    ids = tokenizer(" Yes, good.", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    text, starts = _decode_with_starts(tokenizer, ids)
    pieces = [tokenizer.decode([i]) for i in ids[:-1]]
    r = torch.tensor([ids])
    ones = torch.ones_like(r)
    roll = Rollout([prompt], r, ones, r, ones, torch.tensor([True]), [text], [starts])
    (dialogue,) = roll.reward_texts()
    assert dialogue == prompt + " Yes, good."
    (offsets,) = roll.reward_text_starts()
    assert len(offsets) == len(ids)
    assert dialogue[offsets[0] :] == "Yes, good."
    for k, piece in enumerate(pieces):
        assert dialogue[offsets[k] :].startswith(piece.lstrip() if k == 0 else piece)
    assert offsets[-1] == len(dialogue)  # EOS


def test_rollout_texts_and_offsets(policy, tokenizer):
    gen = torch.Generator().manual_seed(0)
    roll = rollout(
        policy,
        tokenizer,
        PROMPTS,
        SamplingConfig(max_prompt_length=64, max_new_tokens=8, temperature=1.0),
        use_chat_template=False,
        generator=gen,
    )
    assert roll.response_ids.shape == roll.response_mask.shape
    assert roll.response_ids.size(0) == len(PROMPTS)
    texts, starts = roll.reward_texts(), roll.reward_text_starts()
    assert len(texts) == len(starts) == len(PROMPTS)
    assert any(roll.response_texts)  # something was decoded
    for b, (text, resp, offs) in enumerate(zip(texts, roll.response_texts, starts, strict=True)):
        assert text.startswith(PROMPTS[b])
        assert text.endswith(resp)
        assert len(offs) == roll.lengths[b].item()
        assert offs == sorted(offs)  # non-decreasing
        assert all(len(text) - len(resp) <= o <= len(text) for o in offs)
    # the same generator seed gives the same rollout
    again = rollout(
        policy,
        tokenizer,
        PROMPTS,
        SamplingConfig(max_prompt_length=64, max_new_tokens=8, temperature=1.0),
        use_chat_template=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(again.response_ids, roll.response_ids)
    assert again.response_texts == roll.response_texts


def test_rollout_ends_at_the_models_eos(policy_dir, tokenizer, hf_greedy):
    # give the model a generation-config EOS that greedy decoding emits at step 2 of prompt 0;
    # rollout must stop on it (stop_token_ids reads the model's generation config)
    policy = load_policy(policy_dir, trainable=False)
    stop = hf_greedy[0, 2].item()
    policy.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    greedy = SamplingConfig(max_prompt_length=64, max_new_tokens=MAX_NEW, temperature=0.0)
    roll = rollout(policy, tokenizer, PROMPTS, greedy, use_chat_template=False)
    firsts = [_first(row, {stop, tokenizer.eos_token_id}) for row in hf_greedy.tolist()]
    assert firsts[0] <= 2
    for b, first in enumerate(firsts):
        end = MAX_NEW if first is None else first + 1
        assert roll.has_eos[b].item() == (first is not None)
        assert roll.lengths[b].item() == end
        assert roll.response_ids[b, :end].tolist() == hf_greedy[b, :end].tolist()


def test_sampled_logprobs_equal_a_separate_forward_and_draws_do_not_change(policy, tokenizer):
    """The logprobs kept while sampling are those a separate forward gives at the same temperature (the
    eval's KL uses them instead of that forward), and keeping them draws the same tokens."""
    from rlhfkit.models.logprobs import response_logprobs

    sampling = SamplingConfig(max_prompt_length=64, max_new_tokens=8, temperature=0.7)
    kept = rollout(
        policy,
        tokenizer,
        PROMPTS,
        sampling,
        use_chat_template=False,
        generator=torch.Generator().manual_seed(0),
        with_logprobs=True,
    )
    plain = rollout(
        policy,
        tokenizer,
        PROMPTS,
        sampling,
        use_chat_template=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert plain.logprobs is None
    assert torch.equal(kept.response_ids, plain.response_ids)
    seqs = (kept.query_ids, kept.query_mask, kept.response_ids, kept.response_mask)
    with torch.no_grad():
        separate = response_logprobs(policy, *seqs, temperature=0.7).logprobs
    assert kept.logprobs.shape == separate.shape
    assert torch.allclose(kept.logprobs, separate, atol=1e-4)
    assert (kept.logprobs[kept.response_mask == 0] == 0).all()
    assert (kept.logprobs[kept.response_mask == 1] < 0).all()
