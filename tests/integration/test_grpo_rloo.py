"""GRPO and RLOO on tiny local models: a rule reward rises, beta = 0 loads no reference, bad reward
functions stop the run with a named error, per-source rewards are logged, and eval compares three."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlhfkit.cli import main
from rlhfkit.data.split import DataConfig
from rlhfkit.eval.evaluate import EvalConfig, evaluate
from rlhfkit.rewards import RewardSpec
from rlhfkit.rewards.combined import CombinedReward
from rlhfkit.rollout.config import SamplingConfig
from rlhfkit.trainers import rl_run
from rlhfkit.trainers.grpo import GRPOConfig, train_grpo
from rlhfkit.trainers.rloo import RLOOConfig, train_rloo

REWARDS_PY = '''
import math


def count_a(prompts, completions):
    """How many times the letter 'a' appears in the completion."""
    return [float(c.count("a")) for c in completions]


def judge_offline(prompts, completions):
    raise ConnectionError("judge offline")


def nan_at_1(prompts, completions):
    return [math.nan if i == 1 else 0.0 for i in range(len(completions))]


def one_short(prompts, completions):
    return [0.0] * (len(completions) - 1)
'''


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "toy_rewards.py"
    path.write_text(REWARDS_PY)
    return path


def _data(path) -> DataConfig:
    return DataConfig(path=str(path), eval_fraction=0.25)


def _common(policy_dir, data_path, out, max_new_tokens: int = 10, **kw) -> dict:
    base = dict(
        policy=str(policy_dir),
        output_dir=str(out),
        data=_data(data_path),
        batch_size=2,
        group_size=4,
        mini_batch_size=8,
        sampling=SamplingConfig(max_new_tokens=max_new_tokens, temperature=1.0),
        missing_eos_penalty=0.0,
        threads=2,
    )
    base.update(kw)
    return base


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("config_cls", "train"),
    [(GRPOConfig, train_grpo), (RLOOConfig, train_rloo)],
    ids=["grpo", "rloo"],
)
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_a_rule_reward_rises(
    config_cls, train, tiny_policy_dir, toy_preferences, reward_file, tmp_path, autocast_spy, bf16
):
    trainer = sys.modules[config_cls.__module__]
    autocast_spy.watch(trainer, "response_logprobs")  # sampling-policy / reference passes and the loss
    autocast_spy.watch(rl_run, "rollout")
    autocast_spy.watch(CombinedReward, "__call__")
    out = tmp_path / "run"
    cfg = config_cls(
        **_common(tiny_policy_dir, toy_preferences, out),
        rewards=[RewardSpec(kind="function", path=f"{reward_file}:count_a")],
        steps=30,
        lr=5e-3,
        kl_coef=0.02,
        bf16=bf16,
    )
    summary = train(cfg)
    rows = _rows(out)
    first = sum(r["reward"] for r in rows[:5]) / 5
    last = sum(r["reward"] for r in rows[-5:]) / 5
    assert last > first + 1.0, (first, last)
    assert summary["kl_last"] > 0  # the policy moved away from the reference
    for key in (
        "reward",
        "reward_std",
        "reward/count_a",
        "reward_std/count_a",
        "kl",
        "entropy",
        "clip_frac",
        "response_length",
        "zero_adv_group_frac",
    ):
        assert key in rows[0], key
    AutoModelForCausalLM.from_pretrained(out)
    if bf16:
        autocast_spy.check_bf16_run(["response_logprobs", "rollout", "__call__"], out)


@pytest.mark.parametrize(
    ("config_cls", "train"),
    [(GRPOConfig, train_grpo), (RLOOConfig, train_rloo)],
    ids=["grpo", "rloo"],
)
@pytest.mark.parametrize(("kl_coef", "loaded"), [(0.0, 1), (0.1, 2)])
def test_beta_zero_loads_no_reference_model(
    config_cls, train, kl_coef, loaded, monkeypatch, tiny_policy_dir, toy_preferences, tmp_path
):
    calls = []
    real = rl_run.load_policy  # GRPO and RLOO load their models through rl_run

    def counting_load_policy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(rl_run, "load_policy", counting_load_policy)
    out = tmp_path / "run"
    cfg = config_cls(
        **_common(tiny_policy_dir, toy_preferences, out, max_new_tokens=4),
        rewards=[RewardSpec(kind="length", options={"target": 10})],
        steps=1,
        kl_coef=kl_coef,
    )
    summary = train(cfg)
    assert len(calls) == loaded  # the policy, plus the reference only when kl_coef > 0
    assert (summary["kl_last"] is None) == (kl_coef == 0)


def test_mixed_rewards_are_logged_per_source_and_summed(
    tiny_policy_dir, toy_preferences, reward_file, tmp_path
):
    out = tmp_path / "grpo"
    rewards = [
        RewardSpec(kind="function", path=f"{reward_file}:count_a", weight=1.0),
        RewardSpec(kind="length", weight=0.5, options={"target": 20}),
        RewardSpec(kind="format", name="ends_with_e", weight=-2.0, options={"pattern": "e$"}),
    ]
    train_grpo(
        GRPOConfig(
            **_common(tiny_policy_dir, toy_preferences, out, max_new_tokens=6, mini_batch_size=4),
            rewards=rewards,
            steps=2,
            inner_epochs=2,
            loss_aggregation="sequence",
        )
    )
    for row in _rows(out):
        # the mean of a weighted sum is the weighted sum of the means
        weighted = row["reward/count_a"] + 0.5 * row["reward/length"] - 2.0 * row["reward/ends_with_e"]
        assert row["reward"] == pytest.approx(weighted, abs=1e-5)
        for name in ("count_a", "length", "ends_with_e"):
            assert row[f"reward_std/{name}"] >= 0
        assert 0.0 <= row["zero_adv_group_frac"] <= 1.0
        assert 0.0 <= row["clip_frac"] <= 1.0


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        # it fails on every prompt alone too, so the first one is named
        (
            "judge_offline",
            r"function 'judge_offline' raised ConnectionError: judge offline at prompt index 0",
        ),
        ("nan_at_1", r"'function nan_at_1' returned nan for prompt index 1"),
        (
            "one_short",
            r"'function one_short' returned 7 scores for 8 completions; prompt index 7 has no score",
        ),
    ],
    ids=["raises", "nan", "wrong_length"],
)
def test_a_bad_reward_function_stops_the_cli_with_its_name_and_the_prompt_index(
    function, expected, tiny_policy_dir, toy_preferences, reward_file, tmp_path, capsys
):
    args = [
        "grpo",
        f"policy={tiny_policy_dir}",
        f"data.path={toy_preferences}",
        f"output_dir={tmp_path / 'grpo'}",
        f"rewards=[{{kind: function, path: '{reward_file}:{function}'}}]",
        "batch_size=2",
        "group_size=4",
        "mini_batch_size=8",
        "sampling.max_new_tokens=4",
        "steps=1",
        "threads=2",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "rlhfkit grpo: error:" in err
    assert re.search(expected, err), err
    assert not (tmp_path / "grpo" / "summary.json").exists()


def test_eval_compares_the_baseline_with_two_tuned_policies(
    tiny_policy_dir, tiny_bert_reward_dir, toy_preferences, tmp_path, capsys
):
    """SFT vs PPO vs GRPO: one eval, three rows (a copy of the tiny policy stands in for PPO)."""
    sft, ppo, grpo = tmp_path / "sft", tmp_path / "ppo", tmp_path / "grpo"
    shutil.copytree(tiny_policy_dir, sft)
    shutil.copytree(tiny_policy_dir, ppo)
    train_grpo(
        GRPOConfig(
            **_common(sft, toy_preferences, grpo, max_new_tokens=6),
            rewards=[RewardSpec(kind="model", path=str(tiny_bert_reward_dir))],
            steps=2,
            lr=1e-2,
        )
    )
    summary = evaluate(
        EvalConfig(
            baseline=str(sft),
            policies=[str(ppo), str(grpo)],
            judges=[RewardSpec(kind="model", path=str(tiny_bert_reward_dir))],
            output_dir=str(tmp_path / "eval"),
            data=_data(toy_preferences),
            num_prompts=8,
            sampling=SamplingConfig(max_new_tokens=6),
            batch_size=8,
            n_boot=100,
            threads=2,
        )
    )
    assert list(summary["policies"]) == ["sft", "ppo", "grpo"]
    assert "win_rate" not in summary["policies"]["sft"]
    for name in ("ppo", "grpo"):
        row = summary["policies"][name]
        assert 0.0 <= row["win_low"] <= row["win_rate"] <= row["win_high"] <= 1.0
    assert summary["policies"]["ppo"]["kl"] == pytest.approx(0.0, abs=1e-4)  # same weights as the reference
    # trained with lr 1e-2, it moved; the k1 estimate on 8 short samples may come out either side of 0
    assert abs(summary["policies"]["grpo"]["kl"]) > 1e-3
    table = capsys.readouterr().out
    assert "win rate vs sft" in table
    assert [line.split()[0] for line in table.splitlines()[2:5]] == ["sft", "ppo", "grpo"]


@pytest.mark.parametrize(
    ("config_cls", "train"),
    [(GRPOConfig, train_grpo), (RLOOConfig, train_rloo)],
    ids=["grpo", "rloo"],
)
def test_reward_normalised_on_reference_samples(
    config_cls, train, monkeypatch, tiny_policy_dir, toy_preferences, reward_file, tmp_path
):
    """Before training, the reference's own responses set the gain and bias: mapped through them, those
    responses' rewards have mean 0 and std 1; the training scores are mapped the same way."""
    seen = []  # the totals of every scoring call, in order: the normalisation's first
    real = CombinedReward.__call__

    def recording(self, prompts, completions):
        batch = real(self, prompts, completions)
        seen.append(batch.total)
        return batch

    monkeypatch.setattr(CombinedReward, "__call__", recording)
    out = tmp_path / "run"
    cfg = config_cls(
        **_common(tiny_policy_dir, toy_preferences, out),
        rewards=[RewardSpec(kind="function", path=f"{reward_file}:count_a")],
        steps=2,
        reward_norm_samples=16,
    )
    summary = train(cfg)
    norm = summary["reward_norm"]
    reference = torch.cat(seen[:2])  # 16 reference responses, in batches of B * G = 8
    assert len(reference) == 16
    normalised = (reference - norm["bias"]) / norm["gain"]
    assert normalised.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert normalised.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    rows = _rows(out)
    for row, raw in zip(rows, seen[2:], strict=True):  # the logged score is the normalised one
        assert row["score"] == pytest.approx(((raw - norm["bias"]) / norm["gain"]).mean().item(), abs=1e-5)
        assert row["reward"] == pytest.approx(raw.mean().item(), abs=1e-5)
