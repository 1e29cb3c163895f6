"""LoRA in every trainer (one model in memory, merged output loads in plain transformers) and gradient
checkpointing (same numbers as without)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from rlhfkit.config import ConfigError, load_config
from rlhfkit.models import loading
from rlhfkit.models.lora import LoRAConfig, prepare_trainable
from rlhfkit.trainers import dpo, grpo, kto, ppo, reward, rloo, sft

LORA = ["lora.r=4", "lora.alpha=8", "lr=1e-2", "threads=2"]
RL = ["batch_size=2", "sampling.max_new_tokens=4", "data.eval_fraction=0.25", "steps=2"]
LENGTH_REWARD = "rewards=[{kind: length, options: {target: 8, unit: chars}}]"

# name: (module, train function, config class, model key, extra overrides)
TRAINERS = {
    "sft": (sft, sft.train_sft, sft.SFTConfig, "model", ["batch_size=4", "max_steps=2", "eval_examples=4"]),
    "dpo": (
        dpo,
        dpo.train_dpo,
        dpo.DPOConfig,
        "policy",
        ["batch_size=2", "max_steps=2", "eval_pairs=4", "reference=on_the_fly"],
    ),
    "kto": (
        kto,
        kto.train_kto,
        kto.KTOConfig,
        "policy",
        ["batch_size=2", "max_steps=2", "eval_examples=4", "reference=on_the_fly"],
    ),
    "grpo": (grpo, grpo.train_grpo, grpo.GRPOConfig, "policy", [*RL, "group_size=2", "mini_batch_size=4"]),
    "rloo": (rloo, rloo.train_rloo, rloo.RLOOConfig, "policy", [*RL, "group_size=2", "mini_batch_size=4"]),
    "ppo": (ppo, ppo.train_ppo, ppo.PPOConfig, "policy", [*RL, "mini_batch_size=2", "ppo_epochs=1"]),
}


def _count_a(prompts, completions):
    return [float(c.count("a")) for c in completions]


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", list(TRAINERS))
def test_lora_run_loads_one_policy_and_saves_a_merged_model(
    name, policy_loads, tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path
):
    module, train, cls, model_key, extra = TRAINERS[name]
    out = tmp_path / name
    overrides = [f"{model_key}={tiny_policy_dir}", f"data.path={toy_preferences}", f"output_dir={out}"]
    overrides += [*LORA, *extra]
    if name in ("grpo", "rloo"):
        overrides.append(LENGTH_REWARD)
    if name == "ppo":
        overrides += ["reward_model=null", f"value_model={tiny_reward_dir}"]
    cfg = load_config(cls, overrides=overrides)
    summary = train(cfg, reward_fn=_count_a) if name == "ppo" else train(cfg)

    assert len(policy_loads) == 1, "LoRA needs no reference copy: the base with the adapter off is it"
    if name in ("grpo", "rloo", "ppo"):
        assert _rows(out)[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # adapter starts as a no-op
    assert summary["steps"] == 2

    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    state, base_state = merged.state_dict(), base.state_dict()
    assert set(state) == set(base_state)  # no adapter weights left: plain transformers
    layer = "model.layers.0.self_attn"
    assert not torch.equal(state[f"{layer}.q_proj.weight"], base_state[f"{layer}.q_proj.weight"])
    assert torch.equal(state[f"{layer}.k_proj.weight"], base_state[f"{layer}.k_proj.weight"])  # no adapter


@pytest.mark.parametrize("backbone", ["tiny_reward_dir", "tiny_bert_reward_dir"])
def test_lora_reward_model_trains_its_head_and_saves_a_plain_classifier(
    backbone, request, toy_preferences, tmp_path, monkeypatch
):
    path = request.getfixturevalue(backbone)
    loads = []

    def counting(*args, **kwargs):
        loads.append(args)
        return loading.load_reward_model(*args, **kwargs)

    monkeypatch.setattr(reward, "load_reward_model", counting)
    out = tmp_path / "rm"
    cfg = load_config(
        reward.RewardConfig,
        overrides=[f"model={path}", f"data.path={toy_preferences}", f"output_dir={out}", "batch_size=4"]
        + ["max_steps=3", "normalize=false", *LORA],
    )
    reward.train_reward(cfg)
    assert len(loads) == 1

    merged = AutoModelForSequenceClassification.from_pretrained(out)
    base = AutoModelForSequenceClassification.from_pretrained(path)
    state, base_state = merged.state_dict(), base.state_dict()
    assert set(state) == set(base_state)
    head = "score.weight" if "score.weight" in state else "classifier.weight"
    assert not torch.equal(state[head], base_state[head])  # the head (modules_to_save) was trained
    attn = [k for k in state if ("q_proj.weight" in k or "query.weight" in k) and ".0." in k][0]
    assert not torch.equal(state[attn], base_state[attn])  # the adapter was merged in


def test_gradient_checkpointing_gives_the_same_step(tiny_policy_dir, toy_preferences, tmp_path):
    outs = {}
    for checkpointing in ("false", "true"):
        out = tmp_path / checkpointing
        cfg = load_config(
            sft.SFTConfig,
            overrides=[f"model={tiny_policy_dir}", f"data.path={toy_preferences}", f"output_dir={out}"]
            + ["batch_size=4", "max_steps=1", "lr=1e-3", "eval_examples=2", "threads=2"]
            + [f"gradient_checkpointing={checkpointing}"],
        )
        sft.train_sft(cfg)
        outs[checkpointing] = (_rows(out)[0], AutoModelForCausalLM.from_pretrained(out).state_dict())
    (plain, plain_w), (ckpt, ckpt_w) = outs["false"], outs["true"]
    assert ckpt["loss"] == pytest.approx(plain["loss"], abs=1e-5)
    assert ckpt["grad_norm"] == pytest.approx(plain["grad_norm"], abs=1e-5)
    for key, value in plain_w.items():
        torch.testing.assert_close(ckpt_w[key], value, rtol=0, atol=1e-5)


def test_lora_section_is_validated():
    with pytest.raises(ConfigError, match="lora.r"):
        load_config(sft.SFTConfig, overrides=["lora.r=-1"])
    with pytest.raises(ConfigError, match="did you mean 'lora.alpha'"):
        load_config(dpo.DPOConfig, overrides=["lora.alpah=3"])
    assert load_config(ppo.PPOConfig, overrides=["lora.target_modules=[all-linear]"]).lora == LoRAConfig(
        target_modules=["all-linear"]
    )


@pytest.mark.parametrize(
    ("dtype", "lora_r", "warns"),
    [("bfloat16", 0, True), ("float16", 0, True), ("bfloat16", 8, False), ("float32", 0, False)],
)
def test_full_training_in_16_bit_weights_warns(tiny_policy_dir, dtype, lora_r, warns, recwarn):
    model = loading.load_policy(tiny_policy_dir, dtype)
    prepare_trainable(model, LoRAConfig(r=lora_r), gradient_checkpointing=False)
    messages = [str(w.message) for w in recwarn if "rounded away" in str(w.message)]
    assert len(messages) == int(warns), messages
    if warns:
        assert dtype in messages[0] and "bf16=true" in messages[0]
