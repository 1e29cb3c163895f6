"""DPO and its family on a tiny random Llama: real steps, both reference modes, LoRA, eval, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlhfkit import cli
from rlhfkit.config import ConfigError, load_config
from rlhfkit.data import PreferencePair
from rlhfkit.data.collate import collate_pairs, encode_pair
from rlhfkit.data.split import DataConfig
from rlhfkit.eval.evaluate import EvalConfig, evaluate
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.logprobs import sequence_logprobs
from rlhfkit.models.lora import LoRAConfig
from rlhfkit.rewards import RewardSpec
from rlhfkit.rollout.config import SamplingConfig
from rlhfkit.trainers import row_pairs
from rlhfkit.trainers.dpo import DPOConfig, train_dpo

STEP_KEYS = {
    "loss",
    "accuracy",
    "margin",
    "chosen_reward",
    "rejected_reward",
    "chosen_logps",
    "rejected_logps",
}


def _cfg(policy, data, out, **kw) -> DPOConfig:
    base = dict(
        policy=str(policy),
        output_dir=str(out),
        data=DataConfig(path=str(data), eval_fraction=0.25),
        batch_size=8,
        max_steps=3,
        lr=1e-3,
        eval_pairs=16,
        threads=2,
    )
    return DPOConfig(**{**base, **kw})


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dpo_run(tiny_policy_dir, toy_preferences, tmp_path_factory):
    """15 steps of DPO (sigmoid, precomputed reference, full fine-tuning) at a high learning rate."""
    out = tmp_path_factory.mktemp("dpo") / "dpo"
    summary = train_dpo(_cfg(tiny_policy_dir, toy_preferences, out, max_steps=15, eval_pairs=None))
    return out, summary


def test_sequence_logprobs_match_a_full_forward_pass(tiny_policy_dir):
    tokenizer = load_tokenizer(tiny_policy_dir)
    model = load_policy(tiny_policy_dir, trainable=False)
    pairs = [
        PreferencePair("\n\nHuman: Is it good?\n\nAssistant:", " Yes, it is good.", " No."),
        PreferencePair("\n\nHuman: Hi\n\nAssistant:", " Hello, how are you today?", " Bad question."),
    ]
    encoded = [encode_pair(tokenizer, p, 64, 32, True) for p in pairs]
    batch = collate_pairs(encoded, tokenizer.pad_token_id)  # (4, T): chosen 0, 1 then rejected 0, 1
    assert batch["input_ids"].shape[0] == 4
    with torch.no_grad():
        got = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
        # by hand: log-softmax of the full logits, picked at the next token, summed over response tokens
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        picked = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])
        expected = (picked.squeeze(-1) * batch["loss_mask"][:, 1:]).sum(1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
        # right padding changes nothing: each row alone gives the same sum
        for row, (ids, mask) in enumerate([c for c, _ in encoded] + [r for _, r in encoded]):
            alone = sequence_logprobs(
                model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([mask])
            )
            torch.testing.assert_close(alone[0], got[row], atol=1e-5, rtol=0)


def test_dpo_raises_implicit_reward_accuracy_on_training_pairs(dpo_run):
    out, summary = dpo_run
    rows = _rows(out)
    assert len(rows) == 15 and STEP_KEYS <= set(rows[0])
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 1
    assert summary["train_accuracy"] > 0.9  # all trained pairs, scored after training
    assert summary["train_loss_last"] < summary["train_loss_first"]
    assert summary["eval_accuracy"] > 0.5 and summary["eval_margin"] > 0
    assert rows[-1]["chosen_reward"] > rows[-1]["rejected_reward"]
    assert len(list((out / "reference_cache").glob("*.safetensors"))) == 1
    AutoModelForCausalLM.from_pretrained(out)


def test_precomputed_and_on_the_fly_reference_agree(tiny_policy_dir, toy_preferences, tmp_path, policy_loads):
    runs = {}
    for mode in ("precomputed", "on_the_fly"):
        policy_loads.clear()
        out = tmp_path / mode
        summary = train_dpo(_cfg(tiny_policy_dir, toy_preferences, out, reference=mode))
        runs[mode] = (_rows(out), summary, len(policy_loads))
    (pre, pre_summary, pre_loads), (otf, otf_summary, otf_loads) = runs["precomputed"], runs["on_the_fly"]
    assert pre_loads == 1  # the reference pass uses the policy before its first update
    assert otf_loads == 2  # full fine-tuning on the fly holds a frozen copy
    assert pre_summary["reference_cache_hit"] is False
    for a, b in zip(pre, otf, strict=True):  # same batches, same init: the same numbers
        for key in ("loss", "chosen_reward", "rejected_reward", "margin"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    assert pre[-1]["loss"] != pytest.approx(math.log(2), abs=1e-3)  # the policy did move away
    assert pre_summary["eval_loss"] == pytest.approx(otf_summary["eval_loss"], abs=1e-5)

    # the same run again finds its reference log-probs on disk
    again = train_dpo(_cfg(tiny_policy_dir, toy_preferences, tmp_path / "precomputed"))
    assert again["reference_cache_hit"] is True
    assert again["train_loss_last"] == pytest.approx(pre_summary["train_loss_last"], abs=1e-5)


@pytest.mark.parametrize("reference", ["precomputed", "on_the_fly"])
def test_bf16_dpo_raises_accuracy_and_keeps_float32_weights(
    tiny_policy_dir, toy_preferences, tmp_path, autocast_spy, reference
):
    autocast_spy.watch(row_pairs, "sequence_logprobs")  # reference, policy and evaluation passes
    out = tmp_path / "dpo"
    settings = dict(max_steps=15, eval_pairs=None, reference=reference)
    summary = train_dpo(_cfg(tiny_policy_dir, toy_preferences, out, bf16=True, **settings))
    assert summary["train_accuracy"] > 0.9
    assert summary["train_loss_last"] < summary["train_loss_first"]
    autocast_spy.check_bf16_run(["sequence_logprobs"], out)
    if reference == "precomputed":  # bf16 reference log-probs are not served to a float32 run
        fp32 = train_dpo(_cfg(tiny_policy_dir, toy_preferences, out, **settings))
        assert fp32["reference_cache_hit"] is False
        assert len(list((out / "reference_cache").glob("*.safetensors"))) == 2


def test_lora_reference_is_the_base_model_with_its_adapter_off(
    tiny_policy_dir, toy_preferences, tmp_path, policy_loads
):
    lora = dict(lora=LoRAConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"]), lr=1e-2)
    out = tmp_path / "lora"
    summary = train_dpo(_cfg(tiny_policy_dir, toy_preferences, out, reference="on_the_fly", **lora))
    assert len(policy_loads) == 1  # no second model: the reference is the base under disable_adapter()
    assert summary["lora"] is True

    # the adapter-off reference gives the numbers of the precomputed base-model reference
    precomputed = train_dpo(_cfg(tiny_policy_dir, toy_preferences, tmp_path / "lora-pre", **lora))
    for a, b in zip(_rows(out), _rows(tmp_path / "lora-pre"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["chosen_reward"] == pytest.approx(b["chosen_reward"], abs=1e-5)
    assert summary["train_loss_last"] < summary["train_loss_first"]
    assert precomputed["train_loss_last"] == pytest.approx(summary["train_loss_last"], abs=1e-5)

    # the saved policy is merged: plain transformers, no adapter weights, only q/v projections changed
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    state, base_state = merged.state_dict(), base.state_dict()
    assert set(state) == set(base_state)
    layer = "model.layers.0.self_attn"
    assert not torch.equal(state[f"{layer}.q_proj.weight"], base_state[f"{layer}.q_proj.weight"])
    assert torch.equal(state[f"{layer}.k_proj.weight"], base_state[f"{layer}.k_proj.weight"])


@pytest.mark.parametrize(
    "loss_type, extra",
    [("ipo", {}), ("robust", {"label_smoothing": 0.1}), ("hinge", {}), ("simpo", {"beta": 2.0})],
)
def test_every_loss_type_trains(tiny_policy_dir, toy_preferences, tmp_path, loss_type, extra):
    out = tmp_path / loss_type
    summary = train_dpo(_cfg(tiny_policy_dir, toy_preferences, out, loss_type=loss_type, **extra))
    rows = _rows(out)
    assert len(rows) == 3 and STEP_KEYS <= set(rows[0])
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert summary["train_loss_last"] < summary["train_loss_first"]
    if loss_type == "simpo":  # reference-free: no reference pass, no cache
        assert summary["reference"] is None and not (out / "reference_cache").exists()


def test_evaluate_accepts_a_dpo_output(dpo_run, tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path):
    out, _ = dpo_run
    summary = evaluate(
        EvalConfig(
            baseline=str(tiny_policy_dir),
            policies=[str(out)],
            judges=[RewardSpec(kind="model", path=str(tiny_reward_dir))],
            output_dir=str(tmp_path / "eval"),
            data=DataConfig(path=str(toy_preferences), eval_fraction=0.25),
            num_prompts=4,
            sampling=SamplingConfig(max_new_tokens=4),
            batch_size=4,
            n_boot=100,
            threads=2,
        )
    )
    row = summary["policies"][out.name]
    assert 0.0 <= row["win_low"] <= row["win_rate"] <= row["win_high"] <= 1.0
    assert math.isfinite(row["kl"])


def test_cli_runs_dpo(tiny_policy_dir, toy_preferences, tmp_path):
    out = tmp_path / "cli"
    argv = [
        "dpo",
        f"policy={tiny_policy_dir}",
        f"data.path={toy_preferences}",
        f"output_dir={out}",
        "loss_type=ipo",
        "max_steps=1",
        "batch_size=4",
        "eval_pairs=4",
        "threads=2",
    ]
    assert cli.main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["loss_type"] == "ipo"


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="loss_type"):
        load_config(DPOConfig, overrides=["loss_type=kto"])
    with pytest.raises(ConfigError, match="reference"):
        load_config(DPOConfig, overrides=["reference=none"])
    with pytest.raises(ConfigError, match="label_smoothing"):
        load_config(DPOConfig, overrides=["loss_type=robust", "label_smoothing=0.5"])
