"""Every trainer resumes: 2 steps, stop, resume to 4 gives the weights of a straight 4-step run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.config import load_config
from rlhfkit.trainers.dpo import DPOConfig, train_dpo
from rlhfkit.trainers.grpo import GRPOConfig, train_grpo
from rlhfkit.trainers.kto import KTOConfig, train_kto
from rlhfkit.trainers.ppo import PPOConfig, train_ppo
from rlhfkit.trainers.reward import RewardConfig, train_reward
from rlhfkit.trainers.rloo import RLOOConfig, train_rloo


def _count_a(prompts, completions):
    return [float(c.count("a")) for c in completions]


RL = ["batch_size=2", "sampling.max_new_tokens=6", "lr=1e-3", "data.eval_fraction=0.25"]
TRAINERS = {
    "reward": (
        RewardConfig,
        train_reward,
        "model",
        "tiny_reward_dir",
        ["batch_size=4", "lr=1e-3"],
        "max_steps",
    ),
    "dpo": (DPOConfig, train_dpo, "policy", "tiny_policy_dir", ["batch_size=2", "lr=1e-3"], "max_steps"),
    "kto": (KTOConfig, train_kto, "policy", "tiny_policy_dir", ["batch_size=2", "lr=1e-3"], "max_steps"),
    "grpo": (
        GRPOConfig,
        train_grpo,
        "policy",
        "tiny_policy_dir",
        [*RL, "group_size=2", "mini_batch_size=2"],
        "steps",
    ),
    "rloo": (
        RLOOConfig,
        train_rloo,
        "policy",
        "tiny_policy_dir",
        [*RL, "group_size=2", "mini_batch_size=2"],
        "steps",
    ),
    "ppo": (
        PPOConfig,
        train_ppo,
        "policy",
        "tiny_policy_dir",
        [*RL, "mini_batch_size=1", "ppo_epochs=1"],
        "steps",
    ),
}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_resume_matches_a_straight_run(name, request, tiny_reward_dir, toy_preferences, tmp_path):
    cls, train, model_key, model_fixture, extra, steps_key = TRAINERS[name]
    model = request.getfixturevalue(model_fixture)
    base = [f"{model_key}={model}", f"data.path={toy_preferences}", "threads=1", "checkpoint.every=2", *extra]
    if name == "ppo":
        base.append(f"reward_model={tiny_reward_dir}")
    if name in ("grpo", "rloo"):
        base.append(f"rewards=[{{kind: model, path: {tiny_reward_dir}}}]")

    def run(out, steps, *more):
        cfg = load_config(cls, overrides=[*base, f"output_dir={out}", f"{steps_key}={steps}", *more])
        return train(cfg)

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    run(tmp_path / "resumed", 4, "checkpoint.resume=true")

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-4, atol=1e-5)
    steps = [line for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(steps) == 4  # steps 1-2 kept from the first run, 3-4 from the resumed one
