"""Two CPU processes (gloo, via torchrun): SFT, reward, DPO and KTO train exactly like one process with
twice the batch; PPO, GRPO and RLOO run and write one set of outputs. SFT starts through the shipped
``configs/accelerate/multi_gpu.yaml`` (``accelerate launch --num_processes 2``: on a CPU, DDP over
gloo)."""

from __future__ import annotations

import json

import pytest
import torch
from launchers import launch, metric_rows
from safetensors.torch import load_file

from rlhfkit.cli import main

STEPS = 3


def _assert_same_weights(a, b, atol):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=atol)


CASES = {
    "sft": ("model", "tiny_policy_dir", ["lr=1e-3", "eval_examples=2"], 2),
    "reward": ("model", "tiny_reward_dir", ["lr=1e-3", "normalize=false", "eval_batch_size=4"], 2),
    "dpo": ("policy", "tiny_policy_dir", ["lr=1e-3", "eval_pairs=2"], 2),
    "kto": ("policy", "tiny_policy_dir", ["lr=1e-3", "eval_examples=2"], 2),
}


LAUNCHER_CONFIGS = {"sft": "multi_gpu.yaml"}


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one_with_the_global_batch(name, request, toy_preferences, tmp_path):
    key, fixture, extra, batch = CASES[name]
    model = request.getfixturevalue(fixture)
    common = [f"{key}={model}", f"data.path={toy_preferences}", f"max_steps={STEPS}", "threads=1", *extra]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([name, *common, f"output_dir={one}", f"batch_size={2 * batch}"]) == 0
    args = [name, *common, f"output_dir={two}", f"batch_size={batch}"]
    launch(args, tmp_path, accelerate_config=LAUNCHER_CONFIGS.get(name))

    # the one-process run is padding-free (and micro-batched for the reward model); under DDP each rank
    # pads its batch (one forward per backward). The two agree to float rounding, which three AdamW steps
    # at lr 1e-3 (~3e-3 of movement) can grow to ~1e-5 on elements with near-zero gradients.
    _assert_same_weights(one, two, atol=5e-5)
    for a, b in zip(metric_rows(one), metric_rows(two), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["processes"] == 2
    assert not list(two.glob(".*")), "only the main process writes, and nothing half-written is left"


def test_metrics_go_to_tensorboard_too(tiny_policy_dir, toy_preferences, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    args = [f"model={tiny_policy_dir}", f"data.path={toy_preferences}", f"output_dir={out}", "max_steps=2"]
    assert main(["sft", *args, "batch_size=2", "eval_examples=2", "threads=1", "report_to=tensorboard"]) == 0
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file was written"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Scalars("loss")
    assert [s.step for s in scalars] == [1, 2]
    assert scalars[-1].value == pytest.approx(metric_rows(out)[-1]["loss"], abs=1e-4)


RL_COMMON = [
    "steps=2",
    "batch_size=2",
    "sampling.max_new_tokens=6",
    "lr=1e-3",
    "threads=1",
    "checkpoint.every=2",
]
RL_CASES = {
    "ppo": ["mini_batch_size=1", "ppo_epochs=1", "adaptive_kl=true"],
    "grpo": ["group_size=2", "mini_batch_size=2"],
    "rloo": ["group_size=2", "mini_batch_size=2"],
}


@pytest.mark.parametrize("name", list(RL_CASES))
def test_rl_trainers_run_on_two_processes(name, tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path):
    """No equality with one process here: every process samples its own responses (seed + rank)."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / name
    reward = (
        [f"reward_model={tiny_reward_dir}"]
        if name == "ppo"
        else [f"rewards=[{{kind: model, path: {tiny_reward_dir}}}]"]
    )
    args = [f"policy={tiny_policy_dir}", f"data.path={toy_preferences}", f"output_dir={out}", *reward]
    launch([name, *args, *RL_COMMON, *RL_CASES[name]], tmp_path)

    rows = metric_rows(out)
    assert [r["step"] for r in rows] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert AutoModelForCausalLM.from_pretrained(out) is not None
    assert not list(out.glob(".*")), "only the main process writes, and nothing half-written is left"
    # the checkpoint keeps each process's sampling state, and the two differ
    state = torch.load(out / "checkpoints" / "step-00000002" / "state.pt", weights_only=False)
    first, second = state["extra"]["generators"]
    assert not torch.equal(first, second)
