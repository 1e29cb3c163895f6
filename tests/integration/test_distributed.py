"""Two CPU processes (gloo, via torchrun) train exactly like one process with twice the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.cli import main

STEPS = 3


def _torchrun(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "rlhfkit.cli", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(a, b, atol):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=atol)


CASES = {
    "sft": ("model", "tiny_policy_dir", ["lr=1e-3", "eval_examples=2"], 2),
    "reward": ("model", "tiny_reward_dir", ["lr=1e-3", "normalize=false", "eval_batch_size=4"], 2),
    "dpo": ("policy", "tiny_policy_dir", ["lr=1e-3", "eval_pairs=2"], 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one_with_the_global_batch(name, request, toy_preferences, tmp_path):
    key, fixture, extra, batch = CASES[name]
    model = request.getfixturevalue(fixture)
    common = [f"{key}={model}", f"data.path={toy_preferences}", f"max_steps={STEPS}", "threads=1", *extra]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([name, *common, f"output_dir={one}", f"batch_size={2 * batch}"]) == 0
    _torchrun([name, *common, f"output_dir={two}", f"batch_size={batch}"], tmp_path)

    _assert_same_weights(one, two, atol=1e-5)
    for a, b in zip(_rows(one), _rows(two), strict=True):
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
    assert scalars[-1].value == pytest.approx(_rows(out)[-1]["loss"], abs=1e-4)
