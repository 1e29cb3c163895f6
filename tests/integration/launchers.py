"""Starting N CPU processes (gloo) for the distributed tests: ``torchrun``, or ``accelerate launch`` with a
shipped launcher config, each running ``rlhfkit.cli`` (or a given module) in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def launch(args: list[str], cwd, accelerate_config: str | None = None, script: Path | None = None):
    """Run ``python -m rlhfkit.cli <args>`` (or ``python <script> <args>``) in 2 processes and return the
    finished process; fails the test (with the tail of its output) on a non-zero exit. With
    ``accelerate_config`` (a file under ``configs/accelerate/``) the processes are started by
    ``accelerate launch`` with that config, else by ``torchrun``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if accelerate_config is None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    else:
        config = REPO / "configs" / "accelerate" / accelerate_config
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
        cmd += ["--num_processes", "2", "--main_process_port", str(_free_port())]
    cmd += [str(script), *args] if script is not None else ["-m", "rlhfkit.cli", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_rows(out) -> list[dict]:
    """The rows of a run's ``metrics.jsonl``."""
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
