"""Resolving model names and loading models with dropout off (rlhfkit.models.loading)."""

import logging
import shutil
import socket

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from rlhfkit.models.builtin import BUILTIN_MODELS
from rlhfkit.models.loading import (
    ModelNotFoundError,
    load_policy,
    load_reward_model,
    load_tokenizer,
    resolve_model,
)


@pytest.fixture
def hf_log(monkeypatch):
    """The messages transformers logs (at warning level or above) while the test runs."""
    hf_logger = logging.getLogger("transformers")  # the library's root logger; it does not propagate
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    monkeypatch.setattr(hf_logger, "level", logging.WARNING)
    hf_logger.addHandler(handler)
    yield messages
    hf_logger.removeHandler(handler)


@pytest.fixture
def no_network(monkeypatch):
    """Hub offline, and any attempt to open a socket connection is recorded (and refused)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_local_folder_and_its_config(tiny_policy_dir, tmp_path):
    assert resolve_model(tiny_policy_dir) == str(tiny_policy_dir)
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        resolve_model(tmp_path)


def test_missing_local_path_lists_what_was_tried(tmp_path, no_network):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(missing)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert repr(str(missing)) in message
    assert f"local folder {missing.resolve()} (not found)" in message
    for name in BUILTIN_MODELS:
        assert name in message
    assert "hub id" not in message  # an absolute path is never looked up on the hub
    assert no_network == []


def test_missing_hub_id_lists_what_was_tried(no_network):
    name = "rlhfkit-tests-nobody/no-such-model-xyz"
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model(name)
    message = str(info.value)
    assert f"hub id {name!r} (" in message  # with the hub's own error in brackets
    assert "local folder" in message and "(not found)" in message
    for builtin in BUILTIN_MODELS:
        assert builtin in message
    assert no_network == []


def test_loaders_raise_model_not_found(tmp_path, no_network):
    missing = str(tmp_path / "missing")
    for load in (load_policy, load_reward_model, load_tokenizer):
        with pytest.raises(ModelNotFoundError, match="cannot find model"):
            load(missing)


def _outputs_twice(model: nn.Module, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
    assert model.training
    with torch.no_grad():
        return model(**inputs).logits, model(**inputs).logits


def _save_llama_with_dropout(path, tokenizer) -> None:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        attention_dropout=0.3,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def test_load_policy_turns_llama_attention_dropout_off(tmp_path, tiny_tokenizer):
    _save_llama_with_dropout(tmp_path, tiny_tokenizer)
    ids = torch.tensor([tiny_tokenizer("Human: is this good? Assistant: yes").input_ids])

    # control: loaded plainly and put in train mode, the same input gives two different outputs
    plain = AutoModelForCausalLM.from_pretrained(tmp_path).train()
    assert plain.config.attention_dropout == 0.3
    a, b = _outputs_twice(plain, input_ids=ids)
    assert not torch.allclose(a, b)

    policy = load_policy(tmp_path)  # trainable: in train mode
    assert policy.config.attention_dropout == 0.0
    assert all(m.p == 0.0 for m in policy.modules() if isinstance(m, nn.Dropout))
    assert all(p.requires_grad for p in policy.parameters())
    a, b = _outputs_twice(policy, input_ids=ids)
    torch.testing.assert_close(a, b, atol=0, rtol=0)

    reference = load_policy(tmp_path, trainable=False)
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())


def test_load_policy_zeroes_gpt2_dropout_modules(tmp_path):
    # GPT-2 names its probabilities *_pdrop, so only disable_dropout on the modules can switch them off
    config = GPT2Config(
        vocab_size=300,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.3,
        embd_pdrop=0.3,
        attn_pdrop=0.3,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    ids = torch.arange(20)[None]

    plain = AutoModelForCausalLM.from_pretrained(tmp_path).train()
    a, b = _outputs_twice(plain, input_ids=ids)
    assert not torch.allclose(a, b)

    policy = load_policy(tmp_path)
    dropouts = [m for m in policy.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) >= 5  # embeddings, attention, residuals: the check below is not vacuous
    assert all(m.p == 0.0 for m in dropouts)
    a, b = _outputs_twice(policy, input_ids=ids)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_load_reward_model_turns_bert_dropout_off(tmp_path, tiny_bert_reward_dir):
    tokenizer = load_tokenizer(tiny_bert_reward_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.3,
        attention_probs_dropout_prob=0.3,
        classifier_dropout=0.3,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    model = load_reward_model(tmp_path, trainable=True)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
        assert getattr(model.config, key) == 0.0
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
    enc = tokenizer(["Human: good yes", "Human: bad no"], padding=True, return_tensors="pt")
    a, b = _outputs_twice(model, **enc)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert a.shape == (2, 1)


def test_load_reward_model_from_a_causal_lm_folder(tiny_policy_dir, capsys, hf_log):
    # a causal LM folder gets a fresh one-label head, with the pad id it needs for batched scoring
    model = load_reward_model(tiny_policy_dir, trainable=True)
    out = capsys.readouterr().out
    line = (
        f"[rlhfkit] reward head: a new scalar head (score) on {tiny_policy_dir}, initialised at random "
        "(the checkpoint's lm_head is not used); train it with rlhfkit reward\n"
    )
    assert out == line  # one line of ours, and no load report (nor anything else) from transformers
    assert hf_log == []
    tokenizer = load_tokenizer(tiny_policy_dir)
    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id
    texts = ["Human: good", "Human: a much longer bad question here"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        batched = model(**enc).logits[:, 0]
        single = model(**tokenizer(["Human: good"], return_tensors="pt")).logits[:, 0]
    torch.testing.assert_close(batched[:1], single, atol=1e-5, rtol=1e-5)


def test_fresh_head_line_says_what_the_head_is_for(tiny_policy_dir, capsys, hf_log):
    load_reward_model(tiny_policy_dir)  # frozen, to score with: its rewards are noise
    assert capsys.readouterr().out.endswith(
        "initialised at random (the checkpoint's lm_head is not used), so its scores mean nothing yet; "
        "train it with rlhfkit reward\n"
    )
    load_reward_model(tiny_policy_dir, trainable=True, causal=True)  # PPO's value model from the policy
    assert capsys.readouterr().out == (
        f"[rlhfkit] value head: a new scalar head (score) on {tiny_policy_dir}, initialised at random "
        "(the checkpoint's lm_head is not used); PPO trains it as the value function\n"
    )
    assert hf_log == []


def test_load_reward_model_from_an_encoder_folder(tiny_bert_reward_dir, tmp_path, capsys, hf_log):
    # a bare BERT encoder (no task head at all): the classifier is new, nothing goes unused
    reward = BertForSequenceClassification.from_pretrained(tiny_bert_reward_dir)
    BertModel(reward.config).save_pretrained(tmp_path)
    load_tokenizer(tiny_bert_reward_dir).save_pretrained(tmp_path)
    capsys.readouterr()
    load_reward_model(tmp_path, trainable=True)
    assert capsys.readouterr().out == (
        f"[rlhfkit] reward head: a new scalar head (classifier) on {tmp_path}, initialised at random; "
        "train it with rlhfkit reward\n"
    )
    assert hf_log == []


def test_a_trained_reward_model_loads_quietly(tiny_reward_dir, capsys, hf_log):
    load_reward_model(tiny_reward_dir)
    assert capsys.readouterr().out == ""
    assert hf_log == []


def test_other_missing_weights_are_still_reported(tiny_policy_dir, tmp_path, capsys, hf_log):
    # a causal LM checkpoint that also lacks a backbone weight: not just a fresh head, so transformers'
    # report (which names the weight) is shown, and our line is not
    folder = tmp_path / "broken"
    shutil.copytree(tiny_policy_dir, folder)
    weights = load_file(folder / "model.safetensors")
    del weights["model.norm.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    load_reward_model(folder)
    assert "[rlhfkit]" not in capsys.readouterr().out
    (report,) = [m for m in hf_log if "LOAD REPORT" in m]
    assert "model.norm.weight" in report and "score.weight" in report and "lm_head.weight" in report


def test_the_report_is_shown_when_loading_fails(tiny_policy_dir, tmp_path, hf_log):
    # a weight of the wrong shape: transformers raises, pointing at its report, which must be there
    folder = tmp_path / "mismatched"
    shutil.copytree(tiny_policy_dir, folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.norm.weight"] = torch.ones(weights["model.norm.weight"].numel() + 1)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="report"):
        load_reward_model(folder)
    (report,) = [m for m in hf_log if "LOAD REPORT" in m]
    assert "model.norm.weight" in report
