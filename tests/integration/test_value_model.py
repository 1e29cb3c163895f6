"""The PPO value model (rlhfkit.models.value.ValueModel) on tiny Llama and BERT reward checkpoints.

Two properties matter: the value read at a response token depends only on the text before it
(causality), and each policy token is mapped, through character offsets, to the last value-model token
that ends at or before the policy token's first character (also when the tokenizers differ).
"""

import pytest
import torch
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from rlhfkit.models.loading import load_reward_model, load_tokenizer
from rlhfkit.models.reward import load_reward_tokenizer
from rlhfkit.models.value import ValueModel

PROMPT = "\n\nHuman: Is this a good idea?\n\nAssistant:"
RESPONSE = " Yes, that is a good idea."
TEXT = PROMPT + RESPONSE
MORE = " And here are some more words after it."


def _starts_of(tokenizer, text: str, start: int) -> list[int]:
    """Character starts of the tokens of ``text`` from character ``start`` on, plus ``len(text)`` (EOS)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [s for s, _ in enc.offset_mapping if s >= start] + [len(text)]


@pytest.fixture(scope="module")
def llama_value(tiny_reward_dir):
    model = load_reward_model(tiny_reward_dir, causal=True)
    return ValueModel(model, load_tokenizer(tiny_reward_dir), max_length=128)


@pytest.fixture(scope="module")
def bert_value(tiny_bert_reward_dir):
    model = load_reward_model(tiny_bert_reward_dir, causal=True)
    assert model.config.is_decoder
    return ValueModel(model, load_tokenizer(tiny_bert_reward_dir), max_length=128)


def _values(vm: ValueModel, texts: list[str], starts: list[list[int]]) -> torch.Tensor:
    with torch.no_grad():
        return vm(**vm.encode(texts, starts))


def test_llama_maps_each_token_to_the_token_before_it(llama_value, tiny_policy_dir):
    # same tokenizer on both sides: policy token t starts where value token t - 1 ends
    tokenizer = load_tokenizer(tiny_policy_dir)
    enc = tokenizer(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    first = next(i for i, (s, _) in enumerate(enc.offset_mapping) if s >= len(PROMPT))
    n = len(enc.input_ids)
    starts = [s for s, _ in enc.offset_mapping[first:]] + [len(TEXT)]
    out = llama_value.encode([TEXT], [starts])
    assert out["input_ids"][0].tolist() == enc.input_ids
    assert out["positions"][0].tolist() == list(range(first - 1, n - 1)) + [n - 1]


def test_llama_values_are_causal(llama_value):
    starts = _starts_of(llama_value.tokenizer, TEXT, len(PROMPT))
    # one padded batch: the short text is right-padded next to the long one
    values = _values(llama_value, [TEXT, TEXT + MORE], [starts, starts])  # (2, R)
    assert values.shape == (2, len(starts))
    torch.testing.assert_close(values[0], values[1], atol=1e-5, rtol=1e-5)
    alone = _values(llama_value, [TEXT], [starts])
    torch.testing.assert_close(alone[0], values[0], atol=1e-5, rtol=1e-5)
    assert values[0].std() > 1e-4  # not a constant: positions and text matter


def test_bert_encode_maps_policy_starts_by_hand(bert_value):
    text = "Human: goodness yes"
    enc = bert_value.tokenizer(text, return_offsets_mapping=True)
    # precondition: the WordPiece tokenisation this example is written for
    assert bert_value.tokenizer.convert_ids_to_tokens(enc.input_ids) == [
        "[CLS]",
        "human",
        ":",
        "good",
        "##n",
        "##es",
        "##s",
        "yes",
        "[SEP]",
    ]
    assert enc.offset_mapping == [
        (0, 0),
        (0, 5),
        (5, 6),
        (7, 11),
        (11, 12),
        (12, 14),
        (14, 15),
        (16, 19),
        (0, 0),
    ]
    # policy tokens start at: 6 -> ":" (ends 6) is pos 2;  7 -> still ":" (good ends at 11 > 7);
    # 11 -> "good" (ends 11) pos 3;  13 -> "##n" (ends 12; "##es" ends 14 > 13) pos 4;
    # 15 -> "##s" (ends 15) pos 6;  19 (EOS, end of text) -> [SEP], which adds no text, pos 8
    starts = [6, 7, 11, 13, 15, 19]
    short = "Human: bad"  # [CLS] human : bad [SEP]; right-padded in the batch
    out = bert_value.encode([text, short], [starts, [7, 10]])
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, 9)
    assert out["attention_mask"][1].tolist() == [1] * 5 + [0] * 4
    assert out["positions"].tolist() == [[2, 2, 3, 4, 6, 8], [2, 4, 0, 0, 0, 0]]


def test_bert_values_are_causal(bert_value, tiny_bert_reward_dir):
    starts = _starts_of(load_tokenizer(tiny_bert_reward_dir), TEXT, len(PROMPT))  # any offsets will do
    values = _values(bert_value, [TEXT, TEXT + MORE], [starts, starts])
    # the last start (len(TEXT), an EOS) is compared only for the Llama model: here it maps to the
    # closing [SEP] of TEXT alone but to the final "." of TEXT + MORE, which are different tokens
    torch.testing.assert_close(values[0, :-1], values[1, :-1], atol=1e-5, rtol=1e-5)
    alone = _values(bert_value, [TEXT], [starts])
    torch.testing.assert_close(alone[0], values[0], atol=1e-5, rtol=1e-5)
    assert values[0].std() > 1e-5


def test_bert_without_causal_mask_sees_later_text(tiny_bert_reward_dir):
    # the control for the test above: the same check fails for a bidirectional encoder
    model = load_reward_model(tiny_bert_reward_dir, causal=False)
    vm = ValueModel(model, load_tokenizer(tiny_bert_reward_dir), max_length=128)
    starts = _starts_of(vm.tokenizer, TEXT, len(PROMPT))
    values = _values(vm, [TEXT, TEXT + MORE], [starts, starts])
    assert (values[0, :-1] - values[1, :-1]).abs().max() > 1e-6


def test_values_carry_gradients_when_trainable(tiny_reward_dir):
    model = load_reward_model(tiny_reward_dir, causal=True, trainable=True)
    vm = ValueModel(model, load_tokenizer(tiny_reward_dir), max_length=128)
    vm(**vm.encode([TEXT], [_starts_of(vm.tokenizer, TEXT, len(PROMPT))])).sum().backward()
    assert model.score.weight.grad is not None and model.score.weight.grad.abs().sum() > 0


def test_slow_tokenizer_is_refused(tiny_bert_reward_dir, tmp_path):
    fast = load_tokenizer(tiny_bert_reward_dir)
    vocab = sorted(fast.get_vocab().items(), key=lambda kv: kv[1])
    (tmp_path / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab))
    slow = BertTokenizerLegacy(str(tmp_path / "vocab.txt"))
    assert not slow.is_fast
    model = load_reward_model(tiny_bert_reward_dir, causal=True)
    with pytest.raises(ValueError, match="fast tokenizer"):
        ValueModel(model, slow, max_length=128)


def test_left_truncation_keeps_the_response(tiny_bert_reward_dir):
    # a reward tokenizer truncates from the left: the end of the dialogue (the response) is what is kept
    model = load_reward_model(tiny_bert_reward_dir, causal=True)
    vm = ValueModel(model, load_reward_tokenizer(str(tiny_bert_reward_dir)), max_length=8)
    text = "Human: good yes no good yes no good yes"
    out = vm.encode([text], [[len(text) - 3, len(text)]])  # the last "yes" and EOS
    tokens = vm.tokenizer.convert_ids_to_tokens(out["input_ids"][0].tolist())
    # 10 text tokens "human : good yes no good yes no good yes": [CLS] + the last 6 + [SEP]
    assert tokens == ["[CLS]", "no", "good", "yes", "no", "good", "yes", "[SEP]"]
    # "yes" starts after the "good" at position 5; EOS maps to [SEP]
    assert out["positions"][0].tolist() == [5, 7]


def test_a_left_padding_tokenizer_gives_the_same_encoding(tiny_bert_reward_dir):
    model = load_reward_model(tiny_bert_reward_dir, causal=True)
    right_tok = load_tokenizer(tiny_bert_reward_dir, padding_side="right")
    left_tok = load_tokenizer(tiny_bert_reward_dir, padding_side="left")
    texts, starts = ["Human: good yes", "Human: bad no no no"], [[7, 12, 15], [7, 11, 19]]
    right = ValueModel(model, right_tok, 128).encode(texts, starts)
    left = ValueModel(model, left_tok, 128).encode(texts, starts)
    # encode always pads on the right, so the tokenizer's padding side changes nothing
    assert left["attention_mask"].tolist() == right["attention_mask"].tolist()
    assert left["attention_mask"][0, -2:].tolist() == [0, 0]
    assert torch.equal(left["positions"], right["positions"])


def test_value_model_truncates_from_the_left_whatever_the_tokenizer(tiny_bert_reward_dir):
    model = load_reward_model(tiny_bert_reward_dir, causal=True)
    vm = ValueModel(model, load_tokenizer(tiny_bert_reward_dir), max_length=8)
    text = "Human: good yes no good yes no good yes"
    out = vm.encode([text], [[len(text) - 3, len(text)]])
    tokens = vm.tokenizer.convert_ids_to_tokens(out["input_ids"][0].tolist())
    assert tokens[-3:] == ["good", "yes", "[SEP]"]
