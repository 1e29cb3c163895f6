"""KTO on a tiny random Llama: real steps on unpaired examples, both reference modes, bf16, eval, CLI."""

from __future__ import annotations

import json
import math

import pytest
from launchers import metric_rows
from transformers import AutoModelForCausalLM

from rlhfkit import cli
from rlhfkit.config import ConfigError, load_config
from rlhfkit.trainers import row_pairs
from rlhfkit.trainers.kto import KTOConfig, train_kto

STEP_KEYS = {
    "loss",
    "kl",
    "desirable_reward",
    "undesirable_reward",
    "reward_margin",
    "desirable_logps",
    "undesirable_logps",
    "grad_norm",
    "lr",
}


def _unpaired_file(path, pairs_file, keep_undesirable: int = 1):
    """The toy pairs as unpaired records: every chosen reply desirable, every ``keep_undesirable``-th
    rejected reply undesirable (1: all of them)."""
    rows = []
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    for i, p in enumerate(pairs):
        rows.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        if i % keep_undesirable == 0:
            rows.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def toy_unpaired(tmp_path_factory, toy_preferences):
    return _unpaired_file(tmp_path_factory.mktemp("kto_data") / "kto.jsonl", toy_preferences)


def _cfg(policy, data, out, *overrides: str) -> KTOConfig:
    """A small KTO run on a tiny model: 3 steps of 8 examples at lr 1e-3 unless ``overrides`` say."""
    common = [f"policy={policy}", f"data.path={data}", "data.eval_fraction=0.25", f"output_dir={out}"]
    steps = ["batch_size=8", "max_steps=3", "lr=1e-3", "eval_examples=16", "threads=2"]
    return load_config(KTOConfig, overrides=[*common, *steps, *overrides])


@pytest.fixture(scope="module")
def kto_run(tiny_policy_dir, toy_unpaired, tmp_path_factory):
    """20 steps of KTO (precomputed reference, full fine-tuning) at a high learning rate."""
    out = tmp_path_factory.mktemp("kto") / "kto"
    summary = train_kto(_cfg(tiny_policy_dir, toy_unpaired, out, "max_steps=20", "eval_examples=null"))
    return out, summary


def test_kto_lifts_desirable_rewards_above_undesirable_ones(kto_run):
    out, summary = kto_run
    rows = metric_rows(out)
    assert len(rows) == 20 and STEP_KEYS <= set(rows[0])
    # step 1: the policy is the reference, r = 0 and z0 = 0, so every example's loss is 1 - sigmoid(0)
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-4)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert summary["train_loss_last"] < summary["train_loss_first"]
    # after training, on the trained examples and on held-out ones, desirable above undesirable
    assert summary["train_desirable_reward"] > summary["train_undesirable_reward"]
    assert summary["train_reward_margin"] > 0.5
    assert summary["eval_reward_margin"] > 0 and summary["eval_loss"] < 0.5
    late = [r["reward_margin"] for r in rows[-5:] if math.isfinite(r["reward_margin"])]
    early = [r["reward_margin"] for r in rows[:5] if math.isfinite(r["reward_margin"])]
    assert sum(late) / len(late) > sum(early) / len(early)  # windows of 5 steps, not two single batches
    n_d, n_u = summary["train_desirable"], summary["train_examples"] - summary["train_desirable"]
    assert summary["weight_ratio"] == pytest.approx(n_d / n_u)  # lambda_D = lambda_U = 1
    assert len(list((out / "reference_cache").glob("*.safetensors"))) == 1
    AutoModelForCausalLM.from_pretrained(out)


def test_precomputed_and_on_the_fly_reference_agree(tiny_policy_dir, toy_unpaired, tmp_path, policy_loads):
    runs = {}
    for mode in ("precomputed", "on_the_fly"):
        policy_loads.clear()
        out = tmp_path / mode
        summary = train_kto(_cfg(tiny_policy_dir, toy_unpaired, out, f"reference={mode}"))
        runs[mode] = (metric_rows(out), summary, len(policy_loads))
    (pre, pre_summary, pre_loads), (otf, otf_summary, otf_loads) = runs["precomputed"], runs["on_the_fly"]
    assert (pre_loads, otf_loads) == (1, 2)  # full fine-tuning on the fly holds a frozen copy
    for a, b in zip(pre, otf, strict=True):  # same batches, same partners, same init: the same numbers
        for key in ("loss", "kl", "desirable_reward", "undesirable_reward"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key
    assert pre[-1]["loss"] != pytest.approx(0.5, abs=1e-3)  # the policy did move away
    assert pre_summary["eval_loss"] == pytest.approx(otf_summary["eval_loss"], abs=1e-4)

    again = train_kto(_cfg(tiny_policy_dir, toy_unpaired, tmp_path / "precomputed"))
    assert (pre_summary["reference_cache_hit"], again["reference_cache_hit"]) == (False, True)
    assert again["train_loss_last"] == pytest.approx(pre_summary["train_loss_last"], abs=1e-5)


def test_bf16_kto_keeps_float32_weights(tiny_policy_dir, toy_unpaired, tmp_path, autocast_spy):
    autocast_spy.watch(row_pairs, "sequence_logprobs")  # reference, policy, mismatched and eval passes
    out = tmp_path / "kto"
    summary = train_kto(_cfg(tiny_policy_dir, toy_unpaired, out, "bf16=true", "max_steps=10"))
    assert summary["train_reward_margin"] > 0
    autocast_spy.check_bf16_run(["sequence_logprobs"], out)


def test_hh_pairs_train_as_unpaired_examples_through_the_cli(tiny_policy_dir, toy_hh_file, tmp_path):
    out = tmp_path / "cli"
    argv = [
        "kto",
        f"policy={tiny_policy_dir}",
        f"data.path={toy_hh_file}",
        "data.format=hh",
        "data.train_part=first_half",
        f"output_dir={out}",
        "max_steps=2",
        "batch_size=4",
        "eval_examples=4",
        "threads=2",
    ]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    # 64 pairs, round(6.4) = 6 held out (eval_fraction 0.1), the first half of the other 58: 29 pairs,
    # 58 examples, 29 of them desirable
    assert summary["stage"] == "kto"
    assert (summary["train_examples"], summary["train_desirable"]) == (58, 29)
    assert len(metric_rows(out)) == 2


def test_imbalanced_data_reports_the_weight_ratio(tiny_policy_dir, toy_preferences, tmp_path, capsys):
    data = _unpaired_file(
        tmp_path / "imbalanced.jsonl", toy_preferences, keep_undesirable=4
    )  # 64 desirable, 16 undesirable
    summary = train_kto(_cfg(tiny_policy_dir, data, tmp_path / "out", "max_steps=1"))
    # lambda_D n_D / (lambda_U n_U) = 1 * n_D / (1 * n_U), n_D + n_U = 60 training examples (80 - 20 held out)
    n_d = summary["train_desirable"]
    assert summary["train_examples"] == 60
    assert summary["weight_ratio"] == pytest.approx(n_d / (60 - n_d))
    assert summary["weight_ratio"] > 4 / 3 and "the paper advises 1 to 4/3" in capsys.readouterr().out


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="beta"):
        load_config(KTOConfig, overrides=["beta=0"])
    with pytest.raises(ConfigError, match="desirable_weight"):
        load_config(KTOConfig, overrides=["desirable_weight=-1"])
    with pytest.raises(ConfigError, match="reference"):
        load_config(KTOConfig, overrides=["reference=none"])
