"""Direct preference optimisation (DPO) and its family, on preference pairs: no reward model, no sampling.

Each step takes B pairs, runs chosen and rejected through the policy in ONE forward pass (2B right-padded
rows, chosen first), sums the log-probabilities of each response's tokens (the loss mask of
:func:`rlhfkit.data.collate.encode_sft`) and applies the loss named by ``loss_type`` from
:data:`rlhfkit.losses.dpo.DPO_LOSSES`: ``sigmoid`` (DPO), ``ipo``, ``robust`` (cDPO, label smoothing),
``hinge`` (SLiC) or ``simpo`` (reference-free).

The reference is the policy as it starts (usually the SFT model). Its log-probabilities come either
``precomputed`` (one no-grad pass over the pairs the run will touch, before the first update, cached in
``<output_dir>/reference_cache/``; no reference model is held while training) or ``on_the_fly`` (every
step; a frozen copy of the policy is loaded). With LoRA (``lora.r > 0``) the reference is the base model
with the adapter switched off, so no copy is ever loaded; the saved policy has the adapter merged in.

Notation:
    B  pairs per step (``batch_size``); the forward pass sees 2B rows
    T  padded row length (prompt + response)

Python use::

    from rlhfkit.trainers.dpo import DPOConfig, train_dpo
    summary = train_dpo(DPOConfig(policy="runs/hh-demo/sft", output_dir="runs/my-dpo", max_steps=20))
    print(summary["eval_accuracy"])

CLI: ``rlhfkit dpo [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from rlhfkit.config import option
from rlhfkit.data import load_preferences
from rlhfkit.data.collate import collate_pairs, encode_pair
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.losses.dpo import REFERENCE_FREE, DPOParams, PairLogps, check_params, get_dpo_loss
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.logprobs import sequence_logprobs
from rlhfkit.models.lora import LoRAConfig, base_model_of, prepare_trainable
from rlhfkit.models.reference_cache import (
    cache_key,
    cache_path,
    load_cached,
    save_cached,
    weights_fingerprint,
)
from rlhfkit.trainers.checkpoint import CheckpointConfig, check_finite
from rlhfkit.trainers.metrics import ReportTo
from rlhfkit.trainers.runtime import (
    BF16_HELP,
    forward_autocast,
    from_main,
    make_accelerator,
    mean_over_processes,
    setup_torch,
    shard,
    to_device,
)
from rlhfkit.trainers.saving import save_trained
from rlhfkit.trainers.training import batches, start_training

# (2B,) reference log-probs of the pairs ``indices`` whose collated batch is given
ReferenceFn = Callable[[Sequence[int], dict], torch.Tensor]


@dataclass
class DPOConfig:
    """Preference optimisation of a policy on {prompt, chosen, rejected} pairs (DPO and its family)."""

    policy: str = option("runs/hh-demo/sft", "policy to train, also the reference (usually the SFT output)")
    output_dir: str = option("runs/dpo", "where the trained policy is saved (loads in transformers)")
    data: DataConfig = option(DataConfig, "preference pairs (TRL or HH format)")
    loss_type: Literal["sigmoid", "ipo", "robust", "hinge", "simpo"] = option(
        "sigmoid", "sigmoid (DPO), ipo, robust (cDPO, label smoothing), hinge (SLiC), simpo (no reference)"
    )
    beta: float = option(0.1, "inverse temperature of the implicit reward (SimPO: 2-2.5; IPO: its tau)")
    label_smoothing: float = option(0.0, "robust: assumed share of flipped labels, in [0, 0.5)")
    simpo_gamma: float = option(0.5, "simpo: target reward margin gamma")
    reference: Literal["precomputed", "on_the_fly"] = option(
        "precomputed", "reference log-probs: one cached pass before training, or every step"
    )
    use_chat_template: bool = option(True, "render prompts with the tokenizer's chat template, if any")
    max_length: int = option(256, "tokens per row (prompt + response)")
    max_prompt_length: int = option(192, "prompt tokens kept (from the end of the prompt)")
    batch_size: int = option(8, "pairs per optimizer step (2x rows per forward pass)")
    epochs: int = option(1, "passes over the training pairs (unless max_steps is set)")
    max_steps: int | None = option(None, "optimizer steps; overrides epochs")
    lr: float = option(5e-7, "AdamW learning rate (LoRA usually wants a higher one)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear warmup steps")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    eval_pairs: int | None = option(64, "held-out pairs (and as many trained pairs) scored after training")
    eval_batch_size: int = option(8, "pairs per no-grad forward pass (reference pass, evaluation)")
    lora: LoRAConfig = option(
        LoRAConfig, "LoRA on the policy (lora.r > 0); the reference is then the base with the adapter off"
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, slower"
    )
    checkpoint: CheckpointConfig = option(CheckpointConfig, "training checkpoints and resuming")
    report_to: ReportTo = option(
        "none", "also send metrics.jsonl rows to: none, tensorboard, wandb (offline)"
    )
    seed: int = option(0, "seed for batching and initialisation")
    dtype: str = option("float32", "weights: float32, bfloat16 or float16 (to train: float32 and bf16)")
    bf16: bool = option(False, BF16_HELP)
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        if self.max_length < 2 or not 0 < self.max_prompt_length < self.max_length:
            raise ValueError("need max_length >= 2 and 0 < max_prompt_length < max_length")
        check_params(DPOParams(self.beta, self.label_smoothing, self.simpo_gamma))


def _chunks(items: Sequence[int], size: int) -> list[list[int]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _pair_logps(model, batch: dict, indices: Sequence[int], reference: ReferenceFn | None) -> PairLogps:
    """Policy (and reference) summed log-probs of a collated batch of pairs: one (2B, T) forward pass."""
    batch = to_device(batch, next(model.parameters()).device)
    logps = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])  # (2B,)
    tokens = batch["loss_mask"][:, 1:].sum(dim=1)  # (2B,) scored response tokens
    ref = reference(indices, batch).to(logps.device) if reference is not None else None  # (2B,)
    b = len(indices)
    return PairLogps(
        chosen=logps[:b],
        rejected=logps[b:],
        ref_chosen=None if ref is None else ref[:b],
        ref_rejected=None if ref is None else ref[b:],
        chosen_tokens=tokens[:b],
        rejected_tokens=tokens[b:],
    )


def _precompute_reference(
    cfg: DPOConfig, model, items: list, needed: list[int], pad_id: int
) -> tuple[torch.Tensor, str, bool]:
    """Reference log-probs of ``items`` as an (N, 2) table (chosen, rejected; NaN outside ``needed``),
    its cache key, and whether it came from the cache. Call it before the first update, while the policy
    still is the reference."""
    precision = f"{cfg.dtype}+bf16" if cfg.bf16 else cfg.dtype
    key = cache_key(
        "dpo-reference-v1", weights_fingerprint(model), precision, [[i, items[i]] for i in needed]
    )
    table = load_cached(cache_path(cfg.output_dir, key), key)
    if table is not None:
        return table, key, True
    table = torch.full((len(items), 2), float("nan"))
    with torch.no_grad():
        for chunk in tqdm(_chunks(needed, cfg.eval_batch_size), desc="dpo reference", unit="batch"):
            batch = collate_pairs([items[i] for i in chunk], pad_id)
            logps = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
            table[chunk] = logps.view(2, len(chunk)).T  # (2B,) -> (B, 2)
    save_cached(cache_path(cfg.output_dir, key), key, table)
    return table, key, False


def _table_reference(table: torch.Tensor) -> ReferenceFn:
    """Reference log-probs looked up in a precomputed (N, 2) table."""

    def reference(indices: Sequence[int], batch: dict) -> torch.Tensor:
        return torch.cat([table[list(indices), 0], table[list(indices), 1]])  # (2B,)

    return reference


def _on_the_fly_reference(cfg: DPOConfig, model) -> ReferenceFn:
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


def _evaluate(
    model, items: list, indices: list[int], pad_id: int, cfg: DPOConfig, reference, loss_fn
) -> dict:
    """The loss and its metrics (accuracy, margin, rewards, logps) over the pairs ``indices``."""
    if not indices:
        return {}
    parts = []
    with torch.no_grad():
        for chunk in _chunks(indices, cfg.eval_batch_size):
            parts.append(
                _pair_logps(model, collate_pairs([items[i] for i in chunk], pad_id), chunk, reference)
            )
    joined = PairLogps(*(None if t[0] is None else torch.cat(t) for t in zip(*parts, strict=True)))
    loss, metrics = loss_fn(joined, DPOParams(cfg.beta, cfg.label_smoothing, cfg.simpo_gamma))
    return {"loss": loss.item(), **{k: v.item() for k, v in metrics.items()}}


def train_dpo(cfg: DPOConfig) -> dict:
    """Train ``cfg.policy`` on preference pairs and save it to ``cfg.output_dir``; returns the summary.

    The summary holds the loss's accuracy (share of pairs whose implicit reward prefers the chosen
    response) and margin on up to ``eval_pairs`` trained pairs (``train_accuracy``) and held-out pairs
    (``eval_accuracy``, ``eval_margin``, ...), measured after training.

    Raises:
        rlhfkit.data.DataError: bad preference data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: ``cfg.policy`` cannot be found.
        ValueError: no training pairs.
    """
    # --- setup: processes, data, policy, reference log-probs, LoRA, optimizer
    accelerator = make_accelerator()
    main, world = accelerator.is_main_process, accelerator.num_processes
    setup_torch(cfg.seed, cfg.threads)
    train, held_out = load_split(cfg.data, functools.partial(load_preferences, format=cfg.data.format))
    if not train:
        raise ValueError("no training pairs (check data.path, data.max_train and data.eval_fraction)")
    held_out = held_out[: cfg.eval_pairs]
    tokenizer = load_tokenizer(cfg.policy, system_prompt=cfg.data.system_prompt)
    pad_id = tokenizer.pad_token_id
    model = load_policy(cfg.policy, cfg.dtype)
    loss_fn = get_dpo_loss(cfg.loss_type)
    params = DPOParams(cfg.beta, cfg.label_smoothing, cfg.simpo_gamma)

    # pairs 0..n_train-1 are training pairs, the rest held out; the steps' batches are fixed up front
    items = [
        encode_pair(tokenizer, p, cfg.max_length, cfg.max_prompt_length, cfg.use_chat_template)
        for p in train + held_out
    ]
    n_train = len(train)
    eval_idx = list(range(n_train, len(items)))
    global_batch = min(cfg.batch_size * world, n_train // world * world)  # pairs per step, all processes
    steps = cfg.max_steps or cfg.epochs * math.ceil(n_train / global_batch)
    plan = list(itertools.islice(batches(range(n_train), global_batch, cfg.seed), steps))
    trained_idx = list(dict.fromkeys(i for batch in plan for i in batch))  # first-seen order
    train_eval_idx = trained_idx[: cfg.eval_pairs]
    my_plan = [shard(batch, accelerator) for batch in plan]  # this process's pairs of each step

    reference: ReferenceFn | None = None  # stays None for reference-free losses (SimPO)
    cache_hit = None
    if cfg.loss_type not in REFERENCE_FREE and cfg.reference == "precomputed":
        # before any update the policy is the reference: score every pair the run will touch, once
        # (each process scores its own pairs; the main process also those it evaluates at the end)
        needed = {i for batch in my_plan for i in batch}
        needed = sorted(needed | ({*train_eval_idx, *eval_idx} if main else set()))
        with forward_autocast(cfg, accelerator):
            table, _, cache_hit = _precompute_reference(cfg, model, items, needed, pad_id)
        reference = _table_reference(table)
    model = prepare_trainable(model, cfg.lora, cfg.gradient_checkpointing)
    if cfg.loss_type not in REFERENCE_FREE and cfg.reference == "on_the_fly":
        reference = _on_the_fly_reference(cfg, model)
    optimizer, scheduler, checkpoints, start, _, log = start_training(cfg, model, steps, main)
    plain = model
    model, optimizer = accelerator.prepare(model, optimizer)  # DDP (or FSDP / DeepSpeed) under a launcher

    # --- train
    model.train()
    progress = tqdm(
        my_plan[start:],
        desc=f"dpo ({cfg.loss_type})",
        unit="step",
        initial=start,
        total=len(plan),
        disable=not main,
    )
    for step, indices in enumerate(progress, start=start + 1):
        batch = collate_pairs([items[i] for i in indices], pad_id)  # (2B, T): chosen rows, then rejected
        with forward_autocast(cfg, accelerator):
            x = _pair_logps(model, batch, indices, reference)
        # a mean over pairs; every process has as many, so the mean of the means is the global mean
        loss, metrics = loss_fn(x, params)
        metrics = mean_over_processes(accelerator, {"loss": loss, **metrics})
        check_finite(step, loss=metrics["loss"])
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        lr = scheduler.get_last_lr()[0]  # the rate this step's update uses
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        row = log.log(step, {**metrics, "grad_norm": grad_norm, "lr": lr})
        progress.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
        if checkpoints.due(step):
            checkpoints.save(step)
    log.close()

    # --- evaluate (main process), merge LoRA, save
    model.eval()
    accelerator.wait_for_everyone()
    summary = None
    if main:
        with forward_autocast(cfg, accelerator):
            on_train = _evaluate(plain, items, train_eval_idx, pad_id, cfg, reference, loss_fn)
            on_eval = _evaluate(plain, items, eval_idx, pad_id, cfg, reference, loss_fn)
        summary = {
            "stage": "dpo",
            "loss_type": cfg.loss_type,
            "reference": None if cfg.loss_type in REFERENCE_FREE else cfg.reference,
            "reference_cache_hit": cache_hit,
            "lora": cfg.lora.enabled,
            "steps": steps,
            "processes": world,
            "train_pairs": n_train,
            "eval_pairs": len(eval_idx),
            "train_loss_first": log.rows[0]["loss"],
            "train_loss_last": log.rows[-1]["loss"],
            "train_accuracy": on_train.get("accuracy"),
            "train_margin": on_train.get("margin"),
            **{f"eval_{k}": v for k, v in on_eval.items()},
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, model, tokenizer, cfg.output_dir, cfg, summary)  # keeps reference_cache/
    return summary
