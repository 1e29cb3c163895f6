"""Log-probabilities and entropies of response tokens (rlhfkit.models.logprobs).

``response_logprobs`` runs one padded forward over left-padded queries + right-padded responses; it must
agree with a plain forward over each row's unpadded text. The token-level helpers are checked on logits
written by hand.
"""

import math

import pytest
import torch

from rlhfkit.data.collate import encode_prompts, pad_sequences
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.logprobs import next_token_logprobs, response_logprobs, token_entropy, token_logprobs

PROMPTS = [
    "\n\nHuman: Is this a good idea?\n\nAssistant:",
    "\n\nHuman: Hi\n\nAssistant:",
    "\n\nHuman: Can you help me write a short letter to my friend?\n\nAssistant:",
]
RESPONSE_LENGTHS = [5, 2, 7]


def test_token_logprobs_by_hand():
    # logits = log([1, 2, 5]) -> softmax = [1/8, 2/8, 5/8]
    logits = torch.tensor([[[0.0, math.log(2.0), math.log(5.0)]]])  # (1, 1, 3)
    # token 1: log(2/8) = log(1/4) = -1.386294
    torch.testing.assert_close(token_logprobs(logits, torch.tensor([[1]])), torch.tensor([[-1.386294]]))
    # token 2: log(5/8) = -0.470004
    torch.testing.assert_close(token_logprobs(logits, torch.tensor([[2]])), torch.tensor([[-0.470004]]))
    # temperature 0.5 doubles the logits: softmax = [1, 4, 25] / 30; token 1: log(4/30) = -2.014903
    torch.testing.assert_close(
        token_logprobs(logits, torch.tensor([[1]]), temperature=0.5), torch.tensor([[-2.014903]])
    )


def test_token_logprobs_is_fp32_for_half_logits():
    logits = torch.tensor([[[0.0, math.log(2.0), math.log(5.0)]]], dtype=torch.bfloat16)
    out = token_logprobs(logits, torch.tensor([[1]]))
    assert out.dtype == torch.float32


def test_token_entropy_by_hand():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0]]])  # (1, 2, 3)
    # row 0: uniform over 3 -> H = ln 3 = 1.098612
    # row 1: softmax = [1/4, 1/2, 1/4] -> H = 2 * (1/4) ln 4 + (1/2) ln 2 = 1.5 ln 2 = 1.039721
    torch.testing.assert_close(token_entropy(logits), torch.tensor([[1.098612, 1.039721]]))
    # temperature 2 halves the logits: row 1 becomes [0, ln(2)/2, 0] -> p = [1, sqrt 2, 1] / (2 + sqrt 2)
    # = [0.292893, 0.414214, 0.292893]; H = -sum p ln p
    #   = 2 * 0.292893 * 1.227947 + 0.414214 * 0.881374 = 0.719315 + 0.365077 = 1.084392
    torch.testing.assert_close(
        token_entropy(logits, temperature=2.0), torch.tensor([[1.098612, 1.084392]]), atol=1e-5, rtol=0
    )


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def policy(request):
    """The rotary Llama, and GPT-2 whose absolute positions notice wrong position ids under left padding."""
    name = "tiny_policy_dir" if request.param == "llama" else "tiny_gpt2_policy_dir"
    return load_policy(request.getfixturevalue(name), trainable=False)


@pytest.fixture(scope="module")
def batch(tiny_policy_dir):
    """Left-padded queries of different lengths and right-padded random responses of different lengths."""
    tokenizer = load_tokenizer(tiny_policy_dir)
    query_ids, query_mask = encode_prompts(tokenizer, PROMPTS, 64, use_chat_template=False)
    assert len(set(query_mask.sum(1).tolist())) == len(PROMPTS)
    gen = torch.Generator().manual_seed(0)
    responses = [torch.randint(2, len(tokenizer), (n,), generator=gen).tolist() for n in RESPONSE_LENGTHS]
    response_ids, response_mask = pad_sequences(responses, tokenizer.pad_token_id, side="right")
    return query_ids, query_mask, response_ids, response_mask


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_response_logprobs_match_an_unpadded_forward(policy, batch, temperature):
    query_ids, query_mask, response_ids, response_mask = batch
    out = response_logprobs(
        policy, query_ids, query_mask, response_ids, response_mask, temperature, with_entropy=True
    )
    logprobs, entropy = out.logprobs, out.entropy
    assert logprobs.shape == entropy.shape == response_ids.shape
    assert logprobs.dtype == torch.float32
    for b in range(len(PROMPTS)):
        query = query_ids[b][query_mask[b].bool()]
        n = int(response_mask[b].sum())
        response = response_ids[b, :n]
        seq = torch.cat([query, response])[None]  # (1, P_b + n), no padding anywhere
        with torch.no_grad():
            logits = policy(input_ids=seq).logits[0].float() / temperature  # (P_b + n, V)
        # position P_b - 1 + t predicts response token t
        log_p = torch.log_softmax(logits[len(query) - 1 : -1], dim=-1)  # (n, V)
        expected = log_p.gather(-1, response[:, None]).squeeze(-1)
        torch.testing.assert_close(logprobs[b, :n], expected, atol=1e-5, rtol=0)
        expected_entropy = -(log_p.exp() * log_p).sum(-1)
        torch.testing.assert_close(entropy[b, :n], expected_entropy, atol=1e-5, rtol=0)


def test_temperature_changes_the_logprobs(policy, batch):
    # guards the parametrised test: scaling by 0.7 is not a no-op on these logits
    out1 = response_logprobs(policy, *batch, temperature=1.0)
    lp1, none = out1.logprobs, out1.entropy
    lp07 = response_logprobs(policy, *batch, temperature=0.7).logprobs
    mask = batch[3].bool()
    assert none is None
    assert (lp1[mask] - lp07[mask]).abs().max() > 1e-3


def test_response_logprobs_carry_gradients(tiny_policy_dir, batch):
    policy = load_policy(tiny_policy_dir, trainable=True)
    logprobs = response_logprobs(policy, *batch).logprobs
    (logprobs * batch[3]).sum().backward()
    grad = policy.get_output_embeddings().weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_packed_and_padded_logprobs_under_bf16_autocast_stay_close_to_float32(tiny_policy_dir):
    model = load_policy(tiny_policy_dir, trainable=False)
    torch.manual_seed(0)
    ids = torch.randint(3, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    ids[2, :6] = ids[0, :6]  # a prefix shared with row 0: computed once when packed
    target = mask.clone()
    target[:, :5] = 0
    with torch.no_grad():
        for pack_tokens in (64, None):
            full = next_token_logprobs(model, ids, mask, target, pack_tokens=pack_tokens).logprobs
            with torch.autocast("cpu", dtype=torch.bfloat16):
                half = next_token_logprobs(model, ids, mask, target, pack_tokens=pack_tokens).logprobs
            assert half.dtype == torch.float32 and torch.isfinite(half).all()
            gap = (half - full).abs().max().item()
            assert 0 < gap < 0.05, gap  # bf16 was used, and rounds by ~1e-2 at most here
