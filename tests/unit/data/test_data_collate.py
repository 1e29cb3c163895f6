"""Tokenisation and padding (rlhfkit.data.collate) with the tiny byte-level BPE tokenizer."""

import torch

from rlhfkit.data.collate import collate_sft, encode_prompt, encode_prompts, encode_sft, pad_sequences
from rlhfkit.data.records import SFTExample

PROMPT = "\n\nHuman: Is this a good idea?\n\nAssistant:"
RESPONSE = " Yes, it is a good idea."


def test_pad_sequences_right():
    ids, mask = pad_sequences([[1, 2, 3], [4], [5, 6]], pad_id=9)
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9], [5, 6, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_pad_sequences_left():
    ids, mask = pad_sequences([[1, 2, 3], [4], [5, 6]], pad_id=9, side="left")
    assert ids.tolist() == [[1, 2, 3], [9, 9, 4], [9, 5, 6]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]


def test_pad_id_inside_a_sequence_stays_unmasked():
    # the mask comes from lengths, not from comparing ids with the pad id
    ids, mask = pad_sequences([[9, 1], [2]], pad_id=9)
    assert ids.tolist() == [[9, 1], [2, 9]]
    assert mask.tolist() == [[1, 1], [1, 0]]


def test_encode_sft_masks_exactly_the_response_and_eos(tiny_tokenizer):
    prompt_ids = tiny_tokenizer(PROMPT, add_special_tokens=False).input_ids
    response_ids = tiny_tokenizer(RESPONSE, add_special_tokens=False).input_ids
    ids, mask = encode_sft(tiny_tokenizer, SFTExample(PROMPT, RESPONSE), 256, 128, use_chat_template=False)
    assert ids == prompt_ids + response_ids + [tiny_tokenizer.eos_token_id]
    assert mask == [0] * len(prompt_ids) + [1] * (len(response_ids) + 1)
    trained = [t for t, m in zip(ids, mask, strict=True) if m]
    assert trained[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(trained) == RESPONSE + tiny_tokenizer.eos_token
    assert tiny_tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m]) == PROMPT


def test_encode_sft_truncation_keeps_the_last_prompt_tokens(tiny_tokenizer):
    full_prompt = tiny_tokenizer(PROMPT, add_special_tokens=False).input_ids
    response_ids = tiny_tokenizer(RESPONSE, add_special_tokens=False).input_ids
    assert len(full_prompt) > 5
    ids, mask = encode_sft(tiny_tokenizer, SFTExample(PROMPT, RESPONSE), 256, 5, use_chat_template=False)
    assert ids[:5] == full_prompt[-5:]  # the end of the prompt, next to the response, is kept
    assert tiny_tokenizer.decode(ids[:5]).endswith("Assistant:")
    assert mask == [0] * 5 + [1] * (len(response_ids) + 1)
    # max_length also cuts the response (here to 3 tokens, so the EOS is dropped)
    ids, mask = encode_sft(tiny_tokenizer, SFTExample(PROMPT, RESPONSE), 8, 5, use_chat_template=False)
    assert ids == full_prompt[-5:] + response_ids[:3]
    assert mask == [0] * 5 + [1] * 3


def test_encode_prompt_truncates_from_the_left(tiny_tokenizer):
    full = tiny_tokenizer(PROMPT, add_special_tokens=False).input_ids
    assert encode_prompt(tiny_tokenizer, PROMPT, 4, use_chat_template=False) == full[-4:]
    assert encode_prompt(tiny_tokenizer, PROMPT, 1000, use_chat_template=False) == full


def test_encode_prompts_left_pads_so_prompts_end_together(tiny_tokenizer):
    prompts = [PROMPT, "\n\nHuman: Hi\n\nAssistant:"]
    ids, mask = encode_prompts(tiny_tokenizer, prompts, 64, use_chat_template=False)
    lengths = [len(tiny_tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
    assert ids.shape == mask.shape == (2, max(lengths))
    assert mask.sum(1).tolist() == lengths
    assert mask[:, -1].tolist() == [1, 1]
    short = ids[1][mask[1].bool()].tolist()
    assert tiny_tokenizer.decode(short) == prompts[1]
    assert ids[1, : max(lengths) - lengths[1]].tolist() == [tiny_tokenizer.pad_token_id] * (
        max(lengths) - lengths[1]
    )


def test_collate_sft_right_pads_and_zero_pads_the_loss_mask(tiny_tokenizer):
    long = encode_sft(tiny_tokenizer, SFTExample(PROMPT, RESPONSE), 256, 128, use_chat_template=False)
    short = encode_sft(tiny_tokenizer, SFTExample("\n\nHuman: Hi\n\nAssistant:", " No."), 256, 128, False)
    batch = collate_sft([long, short], tiny_tokenizer.pad_token_id)
    n_long, n_short = len(long[0]), len(short[0])
    for key in ("input_ids", "attention_mask", "loss_mask"):
        assert batch[key].shape == (2, n_long)
    assert batch["input_ids"][1].tolist() == short[0] + [tiny_tokenizer.pad_token_id] * (n_long - n_short)
    assert batch["attention_mask"][1].tolist() == [1] * n_short + [0] * (n_long - n_short)
    assert batch["loss_mask"][1].tolist() == short[1] + [0] * (n_long - n_short)
    assert batch["loss_mask"][0].tolist() == long[1]
