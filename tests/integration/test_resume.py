"""Checkpoints survive SIGKILL, resuming matches an uninterrupted run, and NaN stops a run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.config import load_config
from rlhfkit.trainers.checkpoint import COMPLETE, CheckpointConfig, Checkpointer, NonFiniteError
from rlhfkit.trainers.sft import SFTConfig, train_sft

STEPS = 60


def _args(policy, data, out, *extra):
    return [
        f"model={policy}",
        f"data.path={data}",
        f"output_dir={out}",
        f"max_steps={STEPS}",
        "batch_size=4",
        "lr=1e-3",
        "threads=1",
        "eval_examples=4",
        "checkpoint.every=4",
        "checkpoint.keep=2",
        *extra,
    ]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_policy_dir, toy_preferences, tmp_path):
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rlhfkit.cli", "sft", *_args(tiny_policy_dir, toy_preferences, killed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "checkpoints" / "step-00000008" / COMPLETE
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never reached its second checkpoint"
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"

    from rlhfkit.cli import main

    assert main(["sft", *_args(tiny_policy_dir, toy_preferences, killed), "checkpoint.resume=true"]) == 0

    straight = tmp_path / "straight"
    train_sft(load_config(SFTConfig, overrides=_args(tiny_policy_dir, toy_preferences, straight)))

    resumed_w, straight_w = load_file(killed / "model.safetensors"), load_file(straight / "model.safetensors")
    assert resumed_w.keys() == straight_w.keys()
    for name in straight_w:
        torch.testing.assert_close(resumed_w[name], straight_w[name], rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    ref = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] == pytest.approx(ref[-1]["loss"], rel=1e-5)
    # only the newest `keep` checkpoints remain, and they moved with the final model
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-00000056", "step-00000060"]


def test_a_half_written_checkpoint_is_never_picked(tmp_path):
    model = torch.nn.Linear(2, 1)
    cfg = CheckpointConfig(every=1, keep=5, resume=True)
    ckpt = Checkpointer(cfg, tmp_path, {"model": model})
    ckpt.save(3)
    saved = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ckpt.save(4)
    os.remove(tmp_path / "checkpoints" / "step-00000004" / COMPLETE)  # as if the process died mid-save
    Path(tmp_path / "checkpoints" / ".step-00000005-tmp").mkdir()  # a leftover temporary folder
    step, _ = ckpt.start()
    assert step == 3
    torch.testing.assert_close(model.weight, saved)


def test_resume_without_a_checkpoint_says_so(tmp_path):
    ckpt = Checkpointer(CheckpointConfig(resume=True), tmp_path, {})
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        ckpt.start()


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_policy_dir, toy_preferences, tmp_path
):
    out = tmp_path / "nan"
    cfg = load_config(
        SFTConfig, overrides=_args(tiny_policy_dir, toy_preferences, out, "lr=1e12", "checkpoint.every=1")
    )
    with pytest.raises(NonFiniteError, match=r"step (\d+): loss is not finite") as err:
        train_sft(cfg)
    bad_step = int(err.value.args[0].split()[1].rstrip(":"))
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept[-1] == f"step-{bad_step - 1:08d}"  # the last good step, nothing after it
    assert not (out / "summary.json").exists()
