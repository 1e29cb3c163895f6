"""What DPO and KTO share: training on a fixed plan of batches of *row pairs*, with reference log-probs.

An item is two encoded rows (input ids, loss mask) that are always scored together: DPO's chosen and
rejected replies to one prompt; KTO's example and its mismatched row (another example's completion after
this example's prompt). A batch of B items is ONE right-padded forward pass over 2B rows (all first rows,
then all second rows; :func:`rlhfkit.data.collate.collate_pairs`), summed into a :class:`PairLogps`.

The reference is the policy as it starts. Its log-probs of both rows come ``precomputed`` (one no-grad
pass over every item the run will touch, before the first update, cached in
``<output_dir>/reference_cache/`` under a key of the weights, the token ids and the precision) or
``on_the_fly`` (every step; a frozen copy of the policy, or with LoRA the base with the adapter off).

:func:`setup_pair_run` fixes the steps' batches up front, scores the reference, wraps the model for
training and resumes from a checkpoint; :func:`train_pair_steps` runs the steps with a loss the trainer
passes in; :func:`pair_logps_of` scores any items without gradients (evaluation).

Notation:
    B  items per step; the forward pass sees 2B rows
    T  padded row length (prompt + response)
    N  items (training, then held out)
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhfkit.data.collate import collate_pairs
from rlhfkit.losses.dpo import PairLogps
from rlhfkit.models.loading import load_policy
from rlhfkit.models.logprobs import sequence_logprobs
from rlhfkit.models.lora import base_model_of, prepare_trainable
from rlhfkit.models.reference_cache import (
    cache_key,
    cache_path,
    load_cached,
    save_cached,
    weights_fingerprint,
)
from rlhfkit.trainers.checkpoint import Checkpointer, check_finite
from rlhfkit.trainers.metrics import MetricsLog
from rlhfkit.trainers.runtime import forward_autocast, mean_over_processes, shard, to_device
from rlhfkit.trainers.training import batches, start_training

# (2B,) reference log-probs of the items ``indices`` whose collated batch is given
ReferenceFn = Callable[[Sequence[int], dict], torch.Tensor]
# a step's loss: (row-pair log-probs, the items' indices) -> (loss, metrics)
StepLoss = Callable[[PairLogps, Sequence[int]], tuple[torch.Tensor, dict]]


def chunks(items: Sequence[int], size: int) -> list[list[int]]:
    """``items`` cut into consecutive lists of ``size`` (the last may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def pair_logps(
    model, batch: dict, indices: Sequence[int], reference: ReferenceFn | None, second_grad: bool = True
) -> PairLogps:
    """Policy (and reference) summed log-probs of a collated batch of items: one (2B, T) forward pass, or
    with ``second_grad=False`` two (B, T) passes, the second rows' without gradients (KTO's mismatched
    rows feed only its detached reference point: no backward pass through them)."""
    batch = to_device(batch, next(model.parameters()).device)
    b = len(indices)
    columns = (batch["input_ids"], batch["attention_mask"], batch["loss_mask"])  # each (2B, T)
    if second_grad:
        logps = sequence_logprobs(model, *columns)  # (2B,)
    else:
        first = sequence_logprobs(model, *(c[:b] for c in columns))  # (B,)
        with torch.no_grad():
            second = sequence_logprobs(model, *(c[b:] for c in columns))  # (B,)
        logps = torch.cat([first, second])  # (2B,)
    tokens = batch["loss_mask"][:, 1:].sum(dim=1)  # (2B,) scored response tokens
    ref = reference(indices, batch).to(logps.device) if reference is not None else None  # (2B,)
    return PairLogps(
        chosen=logps[:b],
        rejected=logps[b:],
        ref_chosen=None if ref is None else ref[:b],
        ref_rejected=None if ref is None else ref[b:],
        chosen_tokens=tokens[:b],
        rejected_tokens=tokens[b:],
    )


def pair_logps_of(
    model, items: list, indices: list[int], pad_id: int, batch_size: int, reference: ReferenceFn | None
) -> PairLogps:
    """:func:`pair_logps` of the items ``indices``, ``batch_size`` at a time, without gradients, joined."""
    with torch.no_grad():
        parts = [
            pair_logps(model, collate_pairs([items[i] for i in chunk], pad_id), chunk, reference)
            for chunk in chunks(indices, batch_size)
        ]
    return PairLogps(*(None if t[0] is None else torch.cat(t) for t in zip(*parts, strict=True)))


def precompute_reference(
    cfg, model, items: list, needed: list[int], pad_id: int, tag: str
) -> tuple[torch.Tensor, bool]:
    """Reference log-probs of ``items`` as an (N, 2) table (first row, second row; NaN outside
    ``needed``) and whether it came from the cache (``tag`` names the trainer's table in the key). Call
    it before the first update, while the policy still is the reference."""
    precision = f"{cfg.dtype}+bf16" if cfg.bf16 else cfg.dtype
    key = cache_key(tag, weights_fingerprint(model), precision, [[i, items[i]] for i in needed])
    table = load_cached(cache_path(cfg.output_dir, key), key)
    if table is not None:
        return table, True
    table = torch.full((len(items), 2), float("nan"))
    with torch.no_grad():
        for chunk in tqdm(chunks(needed, cfg.eval_batch_size), desc="reference", unit="batch"):
            batch = collate_pairs([items[i] for i in chunk], pad_id)
            logps = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
            table[chunk] = logps.view(2, len(chunk)).T  # (2B,) -> (B, 2)
    save_cached(cache_path(cfg.output_dir, key), key, table)
    return table, False


def table_reference(table: torch.Tensor) -> ReferenceFn:
    """Reference log-probs looked up in a precomputed (N, 2) table."""

    def reference(indices: Sequence[int], batch: dict) -> torch.Tensor:
        return torch.cat([table[list(indices), 0], table[list(indices), 1]])  # (2B,)

    return reference


def on_the_fly_reference(cfg, model) -> ReferenceFn:
    """Reference log-probs computed every step: with LoRA the base model (adapter switched off, no
    copy), else a frozen copy of the policy as loaded."""
    if cfg.lora.enabled:
        frozen, adapter_off = model, functools.partial(base_model_of, model)
    else:
        frozen, adapter_off = load_policy(cfg.policy, cfg.dtype, trainable=False), contextlib.nullcontext

    def reference(indices: Sequence[int], batch: dict) -> torch.Tensor:
        with torch.no_grad(), adapter_off():
            return sequence_logprobs(frozen, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])

    return reference


@dataclass
class PairRun:
    """A run set up by :func:`setup_pair_run`: the steps' items, the models, optimizer and bookkeeping."""

    model: torch.nn.Module  # wrapped for training (DDP, ...) by the accelerator
    plain: torch.nn.Module  # the same weights, unwrapped (evaluation)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checkpoints: Checkpointer
    log: MetricsLog
    start: int  # the last completed step (0 for a fresh run)
    steps: int
    my_plan: list[list[int]]  # this process's items of each step
    trained_eval: list[int]  # the first items the steps touch, evaluated at the end with eval_idx
    reference: ReferenceFn | None  # None for a reference-free loss
    cache_hit: bool | None  # whether the precomputed reference came from the cache (None: not used)


def setup_pair_run(
    cfg,
    accelerator,
    model,
    items: list,
    n_train: int,
    eval_idx: list[int],
    eval_trained: int | None,
    pad_id: int,
    tag: str,
    reference_free: bool = False,
) -> PairRun:
    """Plan the steps over items ``0..n_train-1``, score the reference, prepare ``model`` for training.

    The plan: ``cfg.max_steps`` (or ``cfg.epochs`` passes) of global batches of ``cfg.batch_size`` items
    per process, shuffled with ``cfg.seed``, fixed up front, so a resumed run sees the same batches.
    With ``cfg.reference == "precomputed"`` every item a step of this process touches, and on the main
    process those it evaluates at the end (``eval_idx`` and the first ``eval_trained`` items the steps
    touch, None: all), is scored once before any update; then LoRA
    (``cfg.lora``) and gradient checkpointing are applied, AdamW and checkpoints set up (resumed when
    ``cfg.checkpoint`` says) and the model wrapped by ``accelerator``.

    Raises:
        ValueError: a batch larger than the training items (see :func:`batches`).
    """
    main, world = accelerator.is_main_process, accelerator.num_processes
    global_batch = min(cfg.batch_size * world, n_train // world * world)  # items per step, all processes
    steps = cfg.max_steps or cfg.epochs * math.ceil(n_train / global_batch)
    plan = list(itertools.islice(batches(range(n_train), global_batch, cfg.seed), steps))
    trained_eval = list(dict.fromkeys(i for batch in plan for i in batch))[:eval_trained]  # first-seen order
    my_plan = [shard(batch, accelerator) for batch in plan]  # this process's items of each step

    reference, cache_hit = None, None
    if not reference_free and cfg.reference == "precomputed":
        # before any update the policy is the reference: score every item the run will touch, once
        needed = {i for batch in my_plan for i in batch}
        needed = sorted(needed | ({*trained_eval, *eval_idx} if main else set()))
        with forward_autocast(cfg, accelerator):
            table, cache_hit = precompute_reference(cfg, model, items, needed, pad_id, tag)
        reference = table_reference(table)
    model = prepare_trainable(model, cfg.lora, cfg.gradient_checkpointing)
    if not reference_free and cfg.reference == "on_the_fly":
        reference = on_the_fly_reference(cfg, model)
    optimizer, scheduler, checkpoints, start, _, log = start_training(cfg, model, steps, main)
    plain = model
    model, optimizer = accelerator.prepare(model, optimizer)  # DDP (or FSDP / DeepSpeed) under a launcher
    return PairRun(
        model,
        plain,
        optimizer,
        scheduler,
        checkpoints,
        log,
        start,
        steps,
        my_plan,
        trained_eval,
        reference,
        cache_hit,
    )


def train_pair_steps(
    run: PairRun,
    cfg,
    accelerator,
    items: list,
    pad_id: int,
    step_loss: StepLoss,
    desc: str,
    shown: str,
    second_grad: bool = True,
) -> None:
    """Run the steps ``run.start + 1 .. run.steps``: forward, ``step_loss``, backward, clipped AdamW step,
    one metrics row (the loss's metrics averaged over processes, ``grad_norm``, ``lr``), checkpoints.
    ``shown`` is the metric the progress bar shows beside the loss; ``second_grad``: see :func:`pair_logps`.

    Raises:
        FloatingPointError: a non-finite loss (see :func:`check_finite`).
    """
    run.model.train()
    progress = tqdm(
        run.my_plan[run.start :],
        desc=desc,
        unit="step",
        initial=run.start,
        total=run.steps,
        disable=not accelerator.is_main_process,
    )
    for step, indices in enumerate(progress, start=run.start + 1):
        batch = collate_pairs([items[i] for i in indices], pad_id)  # (2B, T): first rows, then second rows
        with forward_autocast(cfg, accelerator):
            x = pair_logps(run.model, batch, indices, run.reference, second_grad)
        # a mean over items; every process has as many, so the mean of the means is the global mean
        loss, metrics = step_loss(x, indices)
        metrics = mean_over_processes(accelerator, {"loss": loss, **metrics})
        check_finite(step, loss=metrics["loss"])
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
        lr = run.scheduler.get_last_lr()[0]  # the rate this step's update uses
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        row = run.log.log(step, {**metrics, "grad_norm": grad_norm, "lr": lr})
        progress.set_postfix(loss=f"{row['loss']:.3f}", **{shown: f"{row[shown]:.2f}"})
        if run.checkpoints.due(step):
            run.checkpoints.save(step)
    run.log.close()
