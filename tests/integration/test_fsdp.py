"""PPO, GRPO and RLOO with the policy (and PPO's value model) sharded by FSDP2 over two CPU processes
(gloo): they train, one PPO step equals one under DDP on the same samples, a sharded checkpoint resumes
to where a straight run ends, and the saved policy is a plain ``transformers`` folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from launchers import launch, metric_rows
from safetensors.torch import load_file

RL = ["batch_size=2", "sampling.max_new_tokens=6", "lr=1e-3", "threads=1"]
CASES = {  # name: command, its keys, the loss logged
    "ppo": ("ppo", ["mini_batch_size=1", "ppo_epochs=1"], "policy_loss"),
    "ppo-shared-head": ("ppo", ["mini_batch_size=2", "shared_value_head=true"], "policy_loss"),
    "grpo": ("grpo", ["group_size=2", "mini_batch_size=2"], "loss"),
    "rloo": (
        "rloo",
        [
            "group_size=2",
            "mini_batch_size=2",
            "gradient_checkpointing=true",
            "kl_coef=0",
            "reward_norm_samples=4",
        ],
        "loss",
    ),
}
SHARDED = "[rlhfkit] fsdp: the policy"


def _reward(name: str, reward_dir) -> list[str]:
    if name == "ppo":
        return [f"reward_model={reward_dir}"]
    return [f"rewards=[{{kind: model, path: {reward_dir}}}]"]


@pytest.mark.parametrize("name", list(CASES))
def test_rl_trainers_train_sharded(name, tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path):
    """Two steps each; GRPO goes through the shipped ``configs/accelerate/fsdp.yaml`` (which asks for FSDP
    through the environment), the others through ``fsdp=true`` under torchrun. PPO with a value head on
    the policy shards the head too (one loss, one optimizer for both); RLOO recomputes activations, and
    with no KL term (no reference loaded) normalises its reward on samples of the sharded policy."""
    from transformers import AutoModelForCausalLM

    command, extra, loss_key = CASES[name]
    out = tmp_path / name
    args = [f"policy={tiny_policy_dir}", f"data.path={toy_preferences}", f"output_dir={out}"]
    args += [*_reward(command, tiny_reward_dir), *RL, *extra, "steps=2", "checkpoint.every=2"]
    if command == "grpo":
        proc = launch([command, *args], tmp_path, accelerate_config="fsdp.yaml")
    else:
        proc = launch([command, *args, "fsdp=true"], tmp_path)
    assert SHARDED in proc.stdout + proc.stderr
    if name == "rloo":
        assert "reward normalised on 4 reference responses" in proc.stdout

    rows = metric_rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r[loss_key]) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    # the saved policy is the full model, in a folder plain transformers loads; and it was trained
    trained = AutoModelForCausalLM.from_pretrained(out)
    initial = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    assert trained.config.architectures == initial.config.architectures
    moved = [k for k, v in initial.state_dict().items() if not torch.equal(v, trained.state_dict()[k])]
    assert moved
    # the checkpoint holds the full policy and the optimizer state of every parameter, by name
    state = torch.load(out / "checkpoints" / "step-00000002" / "state.pt", weights_only=False)
    policy = state["objects"]["policy"]
    assert {k: v.shape for k, v in policy.items()} == {k: v.shape for k, v in initial.state_dict().items()}
    optimizer = state["objects"]["policy_opt" if command == "ppo" else "optimizer"]["state"]
    expected = {k: p.shape for k, p in initial.named_parameters()}
    if name == "ppo-shared-head":  # the policy's and the head's parameters, in one optimizer
        expected = {f"0.{k}": v for k, v in expected.items()}
        expected |= {"1.linear.weight": (1, initial.config.hidden_size), "1.linear.bias": (1,)}
    assert {k: tuple(v["exp_avg"].shape) for k, v in optimizer.items()} == {
        k: tuple(v) for k, v in expected.items()
    }


def _ppo_args(policy_dir, reward_dir, data, out) -> list[str]:
    """PPO's keys (no command name) for a tiny run writing to ``out``."""
    return [
        f"policy={policy_dir}",
        f"data.path={data}",
        f"output_dir={out}",
        f"reward_model={reward_dir}",
        *RL,
    ]


@pytest.mark.parametrize("value", ["value-model", "shared-head"])
def test_one_sharded_ppo_step_equals_one_under_ddp(
    value, tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path
):
    """One rollout of 2 prompts per process, then 2 epochs of 2 minibatches: 4 updates of the policy and of
    the value model (or of the policy with its value head, one joint loss). Both runs sample from the same
    weights with the same generators, and the worker records what they sampled, so they are shown to
    train on the same responses; the updates then agree to float rounding (FSDP reduce-scatters where
    DDP all-reduces, and runs the forward padding-free)."""
    worker = Path(__file__).with_name("ppo_recording_worker.py")
    keys = ["steps=1", "mini_batch_size=1", "ppo_epochs=2"]
    if value == "shared-head":
        keys.append("shared_value_head=true")
    runs = {}
    for mode in ("false", "true"):
        out = tmp_path / f"fsdp-{mode}"
        args = _ppo_args(tiny_policy_dir, tiny_reward_dir, toy_preferences, out)
        launch([*args, *keys, f"fsdp={mode}"], tmp_path, script=worker)
        runs[mode] = out
    ddp, fsdp = runs["false"], runs["true"]
    for rank in (0, 1):
        [a], [b] = (torch.load(run / f"rollouts-rank{rank}.pt") for run in (ddp, fsdp))
        assert torch.equal(a, b)
    [row_ddp], [row_fsdp] = metric_rows(ddp), metric_rows(fsdp)
    for key in ("policy_loss", "value_loss", "kl", "score_raw", "entropy"):
        assert row_fsdp[key] == pytest.approx(row_ddp[key], abs=1e-5), key
    initial = load_file(tiny_policy_dir / "model.safetensors")
    wa, wb = load_file(ddp / "model.safetensors"), load_file(fsdp / "model.safetensors")
    assert wa.keys() == wb.keys() == initial.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=0, atol=5e-5)
    assert any(not torch.equal(wa[key], initial[key]) for key in wa)


def test_sharded_checkpoint_resumes_where_a_straight_run_ends(
    tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path
):
    """PPO (policy, value model, two AdamW states, adaptive beta, sampling generators), sharded: 2 steps
    straight, and 1 step, stop, resume to 2, give the same policy."""
    common = ["fsdp=true", "mini_batch_size=1", "ppo_epochs=1", "adaptive_kl=true", "checkpoint.every=1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    launch(
        ["ppo", *_ppo_args(tiny_policy_dir, tiny_reward_dir, toy_preferences, straight), *common, "steps=2"],
        tmp_path,
    )
    args = ["ppo", *_ppo_args(tiny_policy_dir, tiny_reward_dir, toy_preferences, resumed), *common]
    launch([*args, "steps=1"], tmp_path)
    proc = launch([*args, "steps=2", "checkpoint.resume=true"], tmp_path)
    assert "resumed from" in proc.stdout

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    rows_a, rows_b = metric_rows(straight), metric_rows(resumed)
    assert [r["step"] for r in rows_b] == [1, 2]
    assert rows_b[1]["beta"] == pytest.approx(rows_a[1]["beta"], rel=1e-6)
    assert rows_b[1]["value_loss"] == pytest.approx(rows_a[1]["value_loss"], abs=1e-5)
