"""The training set-up SFT, reward and DPO share: endless shuffled batches, AdamW with warmup, and
:func:`start_training` (optimizer, checkpoints, metrics log, resumed where a checkpoint says)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from transformers import get_scheduler

from rlhfkit.trainers.checkpoint import Checkpointer
from rlhfkit.trainers.metrics import MetricsLog


def batches(items: Sequence, batch_size: int, seed: int, skip: int = 0) -> Iterator[list]:
    """Endless shuffled batches: each pass over ``items`` is a fresh permutation (``seed`` + pass).

    ``skip`` batches are passed over first, so a resumed run sees the same data as an uninterrupted one.
    """
    per_epoch = len(items) // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch size {batch_size} is larger than the {len(items)} records")
    epoch, start = divmod(skip, per_epoch)
    while True:
        order = list(range(len(items)))
        random.Random(seed + epoch).shuffle(order)
        for first in range(start * batch_size, per_epoch * batch_size, batch_size):
            yield [items[i] for i in order[first : first + batch_size]]
        epoch, start = epoch + 1, 0


def make_optimizer(
    params, lr: float, weight_decay: float, warmup_steps: int, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with a linear warmup to ``lr`` and a constant rate after it."""
    optimizer = torch.optim.AdamW(
        [p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay, fused=True
    )
    scheduler = get_scheduler(
        "constant_with_warmup", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps
    )
    return optimizer, scheduler


def start_training(
    cfg, model: torch.nn.Module, steps: int, main: bool
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, Checkpointer, int, dict, MetricsLog]:
    """The set-up SFT, reward and DPO training share: AdamW over ``model``'s trainable parameters
    (``cfg.lr``, ``cfg.weight_decay``, a linear warmup of ``cfg.warmup_steps``) for ``steps`` updates;
    checkpoints of the model, optimizer and scheduler (``cfg.checkpoint``), resumed from the last complete
    one when asked; the metrics log, continued from there.

    Returns:
        optimizer, scheduler, checkpointer, the last completed step (0 for a fresh run), the resumed
        checkpoint's extra state, and the log.
    """
    optimizer, scheduler = make_optimizer(
        model.parameters(), cfg.lr, cfg.weight_decay, cfg.warmup_steps, steps
    )
    checkpoints = Checkpointer(
        cfg.checkpoint,
        cfg.output_dir,
        {"model": model, "optimizer": optimizer, "scheduler": scheduler},
        main=main,
    )
    start, extra = checkpoints.start()
    log = MetricsLog(cfg.output_dir, resume_step=start, report_to=cfg.report_to, config=cfg, main=main)
    return optimizer, scheduler, checkpoints, start, extra, log
