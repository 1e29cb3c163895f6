"""What both worker sides of ``benchmarks/compare_trl.py`` share: counting real tokens, and the result row.

Imports torch and the standard library only: the TRL PPO worker runs in ``.venv-trl112``, where rlhfkit is
not installed.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

import torch


class TokenCounter:
    """Real (non-pad) tokens fed to the trained model in forward passes that build a graph.

    Counted where every forward pass of the model goes through, whatever calls it (the model, its
    backbone directly, padded or packed rows): a pre-hook on the input embedding adds, when gradients are
    enabled, the ``attention_mask.sum()`` the model or its backbone was called with, or every token of a
    call without a mask (a padding-free, packed row). A packed row with a 4D mask (sequences sharing a
    prefix, computed once) counts the tokens of every sequence in it, the shared ones once per sequence,
    as a padded batch would: a sequence ends at a column no later column attends to, and its tokens are
    the columns that end attends to (a sequence that is all shared prefix, a duplicate, is not seen, so
    the count can only fall short). Training passes count; sampling, reference and scoring passes
    (under ``no_grad``) do not. Gradient checkpointing recomputes layers, not the embedding, so nothing
    is counted twice.
    """

    def __init__(self) -> None:
        self.total = 0
        self.model: torch.nn.Module | None = None
        self._masks: list[torch.Tensor | None] = []  # the masks of the calls in progress, innermost last

    def attach(self, model: torch.nn.Module) -> torch.nn.Module:
        self.model = model
        for module in {model, model.base_model}:  # where an attention mask comes in
            module.register_forward_pre_hook(self._enter, with_kwargs=True)
            module.register_forward_hook(self._leave)
        model.get_input_embeddings().register_forward_pre_hook(self._count)
        return model

    def _enter(self, module, args, kwargs) -> None:
        self._masks.append(kwargs.get("attention_mask"))

    def _leave(self, module, args, output) -> None:
        self._masks.pop()

    def _count(self, module, args) -> None:
        if not torch.is_grad_enabled():
            return
        ids = args[0]
        mask = self._masks[-1] if self._masks else None
        if mask is not None and mask.dim() == 4:  # (1, 1, W, W) additive: 0 where a query may attend
            allowed = mask[0, 0] == 0  # (W, W) query, key
            ends = allowed.sum(0) == 1  # columns attended to by themselves only
            self.total += int(allowed[ends].sum())
        else:
            self.total += int(mask.sum()) if mask is not None and mask.shape == ids.shape else ids.numel()


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def worker_result(
    spec: dict,
    step_s: list[float],
    token_marks: list[int],
    metric: list[float],
    startup_s: float,
    counter: TokenCounter,
    versions: dict[str, str],
) -> dict:
    """One worker's result row.

    Args:
        step_s: seconds of each timed step (every step but the first, the warm-up).
        token_marks: ``counter.total`` at the end of every step, the warm-up included.
        metric: the sanity metric (loss, mean reward or score) of every logged step.
        startup_s: seconds from the worker's start to the end of the warm-up step.
    """
    passes = spec["epochs"]  # PPO trains on each rollout batch `epochs` times; its tokens count once
    tokens = [(b - a) / passes for a, b in zip(token_marks, token_marks[1:], strict=False)]
    return {
        "case": spec["name"],
        "step_s": step_s,
        "step_tokens": tokens,
        "metric_first": metric[0] if metric else None,
        "metric_last": metric[-1] if metric else None,
        "startup_s": startup_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
        "params": sum(p.numel() for p in counter.model.parameters()),
        "gradient_checkpointing": bool(getattr(counter.model, "is_gradient_checkpointing", False)),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, **versions},
    }
