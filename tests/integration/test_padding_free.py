"""The optimised paths equal the plain ones: padding-free (packed) forwards against one padded forward.

Each path runs packed twice: in rows too short to hold a group (no prefix shared) and in rows long enough
that sequences with a common prefix (a repeated prompt, a preference pair) share its computation. For each,
values and the gradients they produce must agree to 1e-5 on tiny models:
- token logprobs with entropy (PPO/GRPO/RLOO, left-padded queries + right-padded responses),
- summed sequence logprobs and the DPO loss (right-padded prompt + response rows),
- the SFT loss,
- the rewards of a decoder reward model, and reward training in micro-batches,
- an RL gradient step in micro-batches with accumulated gradients.
``pack_tokens`` is small here so that a batch spans several packed rows.
"""

import pytest
import torch
from accelerate import Accelerator

from rlhfkit.data.collate import collate_pairs, encode_pair, encode_prompts, pad_sequences
from rlhfkit.data.records import PreferencePair
from rlhfkit.losses import grpo_loss, sft_loss
from rlhfkit.losses.dpo import DPOParams, PairLogps, sigmoid_loss
from rlhfkit.models.loading import load_policy, load_reward_model, load_tokenizer
from rlhfkit.models.logprobs import (
    next_token_logprobs,
    response_logprobs,
    sequence_logprobs,
)
from rlhfkit.models.packing import length_groups, pack
from rlhfkit.models.reward import first_token_last_layer, reward_scores
from rlhfkit.models.value import ValueHead, ValueModel
from rlhfkit.trainers.micro import accumulated_step, micro_batches
from rlhfkit.trainers.reward import reward_step

PROMPTS = [
    "\n\nHuman: Is this a good idea?\n\nAssistant:",
    "\n\nHuman: Hi\n\nAssistant:",
    "\n\nHuman: Can you help me write a short letter to my friend?\n\nAssistant:",
    "\n\nHuman: What is two plus two?\n\nAssistant:",
]
RESPONSES = [" Yes, it is.", " Hello there, friend!", " Sure: Dear friend, I miss you.", " Four."]
PACK = 24  # tokens per packed row: the batches below need several rows, and no group fits in one
SHARE = 96  # tokens per packed row: sequences with a common prefix of >= 16 tokens form groups
PACKS = [PACK, SHARE]


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _assert_same(plain_fn, packed_fn, model):
    """Run both closures (each returns a tensor), backprop their sums, compare values and gradients."""
    plain = plain_fn()
    plain.sum().backward()
    plain_grads = _grads(model)
    packed = packed_fn()
    packed.sum().backward()
    packed_grads = _grads(model)
    torch.testing.assert_close(packed, plain, atol=1e-5, rtol=1e-5)
    assert plain_grads.keys() == packed_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.fixture(params=["llama", "gpt2"])
def policy(request):
    name = "tiny_policy_dir" if request.param == "llama" else "tiny_gpt2_policy_dir"
    return load_policy(request.getfixturevalue(name), trainable=True)


@pytest.fixture
def tokenizer(tiny_policy_dir):
    return load_tokenizer(tiny_policy_dir)


@pytest.fixture
def pair_batch(tokenizer):
    pairs = [PreferencePair(p, r, r[::-1]) for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    encoded = [encode_pair(tokenizer, pair, 64, 48, use_chat_template=False) for pair in pairs]
    return collate_pairs(encoded, tokenizer.pad_token_id)


def _laid_out(packing):
    """Token ids and position ids of the packed rows, end to end."""
    ids = torch.cat([row.input_ids[0] for row in packing.rows])
    positions = torch.cat([row.position_ids[0] for row in packing.rows])
    return ids, positions


def _shares(input_ids, attention_mask) -> bool:
    """Whether packing at SHARE computes some tokens once for several sequences."""
    return int(pack(input_ids, attention_mask, SHARE).offsets[-1]) < int(attention_mask.sum())


def test_packing_spans_several_rows_without_padding(pair_batch):
    ids, mask = pair_batch["input_ids"], pair_batch["attention_mask"]
    packing = pack(ids, mask, PACK)
    assert len(packing.rows) > 2 and all(row.allowed is None for row in packing.rows)
    laid, positions = _laid_out(packing)
    assert len(laid) == int(mask.sum())  # nothing shared, no padding
    assert torch.equal(laid[packing.columns], ids[mask.bool()])
    assert torch.equal(positions[packing.columns], (mask.cumsum(1) - 1)[mask.bool()])
    assert all(int(row.position_ids[0, 0]) == 0 for row in packing.rows)  # every row starts a sequence


def test_shared_prefix_layout():
    prompt = list(range(100, 118))  # 18 tokens: long enough to share
    seqs = [prompt + [50, 51], [7] * 5, prompt + [60]]
    ids, mask = pad_sequences(seqs, 0, side="right")
    packing = pack(ids, mask, 64)
    (row,) = packing.rows  # sorted: [7] * 5, then the group (prompt, [50, 51], [60])
    assert row.input_ids[0].tolist() == [7] * 5 + prompt + [50, 51, 60]
    assert row.position_ids[0].tolist() == [*range(5), *range(18), 18, 19, 18]
    assert packing.columns.tolist() == [*range(5, 23), 23, 24, *range(5), *range(5, 23), 25]
    allowed = row.allowed
    assert allowed[4, :5].all() and not allowed[4, 5:].any()  # the first sequence: causal, alone
    assert allowed[24, 5:25].all() and not allowed[24, :5].any()  # [50, 51]: the prompt and itself
    assert allowed[25, 5:23].all() and allowed[25, 25] and not allowed[25, 23:25].any()  # [60]
    assert not allowed[22, 23:].any()  # the prompt sees no suffix
    # without sharing, or in rows too short for the group, every token has its own column
    for plain in (pack(ids, mask, 64, share_prefixes=False), pack(ids, mask, 20)):
        assert int(plain.offsets[-1]) == int(mask.sum())
        assert all(r.allowed is None for r in plain.rows)


def test_short_common_prefix_is_not_shared():
    ids, mask = pad_sequences([list(range(10)) + [1], list(range(10)) + [2]], 0, side="right")
    packing = pack(ids, mask, 64)
    assert int(packing.offsets[-1]) == 22 and packing.rows[0].allowed is None


@pytest.mark.parametrize("pack_tokens", PACKS)
def test_response_logprobs_and_entropy(policy, tokenizer, pack_tokens):
    grouped = [p for p in PROMPTS for _ in range(2)]  # two samples per prompt, as GRPO lays them out
    query_ids, query_mask = encode_prompts(tokenizer, grouped, 64, use_chat_template=False)
    gen = torch.Generator().manual_seed(0)
    lengths = (5, 2, 7, 3, 1, 4, 6, 3)
    responses = [torch.randint(2, len(tokenizer), (n,), generator=gen).tolist() for n in lengths]
    response_ids, response_mask = pad_sequences(responses, tokenizer.pad_token_id, side="right")
    seqs = (query_ids, query_mask, response_ids, response_mask)
    assert _shares(torch.cat([query_ids, response_ids], 1), torch.cat([query_mask, response_mask], 1))

    def run(pack):
        out = response_logprobs(policy, *seqs, 0.7, with_entropy=True, pack_tokens=pack)
        return torch.stack([out.logprobs, out.entropy])

    _assert_same(lambda: run(None), lambda: run(pack_tokens), policy)
    assert (run(pack_tokens)[0] * (1 - response_mask)).abs().sum() == 0  # zero off the responses


@pytest.mark.parametrize("pack_tokens", PACKS)
def test_logprobs_and_values_of_a_shared_value_head(policy, tokenizer, pack_tokens):
    grouped = [p for p in PROMPTS for _ in range(2)]
    query_ids, query_mask = encode_prompts(tokenizer, grouped, 64, use_chat_template=False)
    gen = torch.Generator().manual_seed(2)
    responses = [
        torch.randint(2, len(tokenizer), (n,), generator=gen).tolist() for n in (3, 6, 2, 5, 4, 1, 7, 2)
    ]
    response_ids, response_mask = pad_sequences(responses, tokenizer.pad_token_id, side="right")
    seqs = (query_ids, query_mask, response_ids, response_mask)
    head = ValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(head.linear.weight, std=0.1)  # not the zero start: values and gradients matter
    policy.add_module("value_head_for_test", head)  # so that _grads sees the head's gradients too

    def run(pack):
        out = response_logprobs(policy, *seqs, 0.7, with_entropy=True, value_head=head, pack_tokens=pack)
        return torch.stack([out.logprobs, out.entropy, out.values])

    _assert_same(lambda: run(None), lambda: run(pack_tokens), policy)
    assert (run(pack_tokens)[2] * (1 - response_mask)).abs().sum() == 0  # zero off the responses


@pytest.mark.parametrize("pack_tokens", PACKS)
def test_sequence_logprobs_and_dpo_loss(policy, pair_batch, pack_tokens):
    n = pair_batch["input_ids"].size(0) // 2
    reference = torch.linspace(-30.0, -10.0, 2 * n)  # any fixed reference logprobs

    def run(pack):
        logps = sequence_logprobs(policy, *pair_batch.values(), pack_tokens=pack)  # (2B,)
        loss, _ = sigmoid_loss(PairLogps(logps[:n], logps[n:], reference[:n], reference[n:]), DPOParams())
        return torch.cat([logps, loss[None]])

    assert _shares(pair_batch["input_ids"], pair_batch["attention_mask"])  # chosen and rejected
    _assert_same(lambda: run(None), lambda: run(pack_tokens), policy)


@pytest.mark.parametrize("pack_tokens", PACKS)
def test_sft_loss(policy, pair_batch, pack_tokens):
    target = pair_batch["loss_mask"].clone()
    target[:, 0] = 0

    def run(pack):
        out = next_token_logprobs(
            policy, pair_batch["input_ids"], pair_batch["attention_mask"], target, pack_tokens=pack
        )
        return sft_loss(out.logprobs, pair_batch["loss_mask"])[0]

    _assert_same(lambda: run(None), lambda: run(pack_tokens), policy)


@pytest.mark.parametrize("pack_tokens", PACKS)
def test_decoder_reward_model(tiny_reward_dir, pack_tokens):
    model = load_reward_model(tiny_reward_dir, trainable=True)
    tokenizer = load_tokenizer(tiny_reward_dir)
    texts = [p + r for p in PROMPTS for r in RESPONSES]  # each prompt with every response
    _assert_same(
        lambda: reward_scores(model, tokenizer, texts, 64, pack_tokens=None),
        lambda: reward_scores(model, tokenizer, texts, 64, pack_tokens=pack_tokens),
        model,
    )


def test_bert_reward_model_last_layer_on_the_first_token(tiny_bert_reward_dir):
    model = load_reward_model(tiny_bert_reward_dir, trainable=True)
    tokenizer = load_tokenizer(tiny_bert_reward_dir)
    texts = [p + r for p, r in zip(PROMPTS, RESPONSES, strict=True)]  # different lengths: padding
    _assert_same(
        lambda: reward_scores(model, tokenizer, texts, 64, pack_tokens=None),  # every token, every layer
        lambda: reward_scores(model, tokenizer, texts, 64, pack_tokens=PACK),
        model,
    )
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with first_token_last_layer(model):
        assert model.base_model(**enc).last_hidden_state.shape[1] == 1  # the shortcut is taken
    assert model.base_model(**enc).last_hidden_state.shape[1] == enc["input_ids"].shape[1]  # and undone


def test_a_target_on_the_first_token_is_an_error(policy, pair_batch):
    with pytest.raises(ValueError, match="first token"):
        next_token_logprobs(
            policy, pair_batch["input_ids"], pair_batch["attention_mask"], pair_batch["attention_mask"]
        )


def test_decoder_value_model(tiny_reward_dir, tokenizer):
    model = load_reward_model(tiny_reward_dir, trainable=True, causal=True)
    value = ValueModel(model, load_tokenizer(tiny_reward_dir), max_length=64)
    texts = [p + r for p in PROMPTS for r in RESPONSES]  # each prompt with every response
    starts = [[len(p), len(p) + 3, len(p + r)] for p in PROMPTS for r in RESPONSES]
    enc = value.encode(texts, starts)
    assert _shares(enc["input_ids"], enc["attention_mask"])

    def padded():  # the plain path: one padded forward, the head at every position
        hidden = model.base_model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False
        ).last_hidden_state
        return model.score(hidden).squeeze(-1).gather(1, enc["positions"])

    _assert_same(padded, lambda: value(**enc), model)


@pytest.mark.parametrize("reward_dir", ["tiny_reward_dir", "tiny_bert_reward_dir"])
def test_reward_step_in_micro_batches(request, reward_dir):
    path = request.getfixturevalue(reward_dir)
    model = load_reward_model(path, trainable=True)
    tokenizer = load_tokenizer(path)
    pairs = [
        PreferencePair(p, r, r[::-1], margin=m)
        for p, r, m in zip(PROMPTS, RESPONSES, [0.0, 0.5, 0.0, 1.0], strict=True)
    ]

    backward_calls = []

    def backward(loss):
        backward_calls.append(loss)
        loss.backward()

    def run(micro):
        backward_calls.clear()
        metrics = reward_step(model, tokenizer, pairs, 64, micro, backward)
        return torch.stack([metrics["loss"], metrics["accuracy"], metrics["margin"]])

    whole = run(None)
    assert len(backward_calls) == 1
    whole_grads = _grads(model)
    assert length_groups([30, 10, 25, 12], 40) == [[1, 3], [2], [0]]  # sorted by length, <= 40 tokens
    micro = run(60)
    assert len(backward_calls) > 1  # gradients accumulated over several micro-batches
    micro_grads = _grads(model)
    torch.testing.assert_close(micro, whole, atol=1e-5, rtol=1e-5)
    assert micro_grads.keys() == whole_grads.keys()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(micro_grads[name], grad, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_micro_batched_step_equals_one_minibatch(tiny_policy_dir, tokenizer, aggregation):
    query_ids, query_mask = encode_prompts(tokenizer, PROMPTS, 64, use_chat_template=False)
    gen = torch.Generator().manual_seed(1)
    responses = [torch.randint(2, len(tokenizer), (n,), generator=gen).tolist() for n in (5, 2, 7, 3)]
    response_ids, response_mask = pad_sequences(responses, tokenizer.pad_token_id, side="right")
    seqs = (query_ids, query_mask, response_ids, response_mask)
    mask = response_mask.float()
    advantages = torch.tensor([1.0, -0.5, 0.25, -0.75])
    accelerator = Accelerator(cpu=True)

    def step(size):  # one SGD step (lr 1) from the same weights: the parameter change is minus the gradient
        model = load_policy(tiny_policy_dir, trainable=True)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}

        def loss_fn(rows):
            logprobs = response_logprobs(model, *(t[rows] for t in seqs)).logprobs
            old = logprobs.detach() - 0.1  # ratios off 1, so that clipping acts on some tokens
            return grpo_loss(logprobs, old, advantages[rows], mask[rows], None, 0.0, 0.2, aggregation)

        parts = micro_batches(torch.arange(4), mask, aggregation, size)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        totals = accumulated_step(accelerator, model, optimizer, parts, loss_fn, 1e9, step=1)
        return len(parts), totals, {n: p.detach() - before[n] for n, p in model.named_parameters()}

    n_whole, whole, whole_delta = step(None)
    n_micro, micro, micro_delta = step(1)
    assert (n_whole, n_micro) == (1, 4)
    assert micro.keys() == whole.keys()
    for key in whole:
        assert micro[key] == pytest.approx(whole[key], abs=1e-5), key
    for name, delta in whole_delta.items():
        torch.testing.assert_close(micro_delta[name], delta, atol=1e-5, rtol=1e-5, msg=name)
    assert any(d.abs().sum() > 0 for d in whole_delta.values())
