"""``rlhfkit ppo <key=value ...>`` in one process of a torchrun, saving the response tokens of every
rollout it samples to ``<output_dir>/rollouts-rank<R>.pt``: two runs can then be shown to have trained on
the same samples. Started by ``test_fsdp.py``; not a test module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from rlhfkit import cli
from rlhfkit.trainers import ppo


def main(args: list[str]) -> int:
    out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("output_dir=")))
    sampled: list[torch.Tensor] = []
    sample = ppo.rollout

    def recording(*pos, **kw):
        ro = sample(*pos, **kw)
        sampled.append(ro.response_ids.cpu())
        return ro

    ppo.rollout = recording
    code = cli.main(["ppo", *args])
    torch.save(sampled, out / f"rollouts-rank{os.environ['RANK']}.pt")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
