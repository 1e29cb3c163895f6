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

import functools
from dataclasses import dataclass
from typing import Literal

from rlhfkit.config import option
from rlhfkit.data import load_preferences
from rlhfkit.data.collate import encode_pair
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.losses.dpo import REFERENCE_FREE, DPOParams, check_params, get_dpo_loss
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.lora import LoRAConfig
from rlhfkit.trainers.checkpoint import CheckpointConfig
from rlhfkit.trainers.metrics import ReportTo
from rlhfkit.trainers.row_pairs import pair_logps_of, setup_pair_run, train_pair_steps
from rlhfkit.trainers.runtime import BF16_HELP, forward_autocast, from_main, make_accelerator, setup_torch
from rlhfkit.trainers.saving import save_trained

REFERENCE_TAG = "dpo-reference-v1"  # in the reference cache's key: this trainer's (N, 2) table


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


def _evaluate(
    model, items: list, indices: list[int], pad_id: int, cfg: DPOConfig, reference, loss_fn
) -> dict:
    """The loss and its metrics (accuracy, margin, rewards, logps) over the pairs ``indices``."""
    if not indices:
        return {}
    joined = pair_logps_of(model, items, indices, pad_id, cfg.eval_batch_size, reference)
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
    reference_free = cfg.loss_type in REFERENCE_FREE  # SimPO: no reference pass at all
    run = setup_pair_run(
        cfg,
        accelerator,
        model,
        items,
        n_train,
        eval_idx,
        cfg.eval_pairs,
        pad_id,
        REFERENCE_TAG,
        reference_free,
    )

    # --- train
    train_pair_steps(
        run,
        cfg,
        accelerator,
        items,
        pad_id,
        lambda x, _: loss_fn(x, params),
        f"dpo ({cfg.loss_type})",
        "accuracy",
    )

    # --- evaluate (main process), merge LoRA, save
    run.model.eval()
    accelerator.wait_for_everyone()
    summary = None
    if main:
        with forward_autocast(cfg, accelerator):
            on_train = _evaluate(run.plain, items, run.trained_eval, pad_id, cfg, run.reference, loss_fn)
            on_eval = _evaluate(run.plain, items, eval_idx, pad_id, cfg, run.reference, loss_fn)
        summary = {
            "stage": "dpo",
            "loss_type": cfg.loss_type,
            "reference": None if cfg.loss_type in REFERENCE_FREE else cfg.reference,
            "reference_cache_hit": run.cache_hit,
            "lora": cfg.lora.enabled,
            "steps": run.steps,
            "processes": world,
            "train_pairs": n_train,
            "eval_pairs": len(eval_idx),
            "train_loss_first": run.log.rows[0]["loss"],
            "train_loss_last": run.log.rows[-1]["loss"],
            "train_accuracy": on_train.get("accuracy"),
            "train_margin": on_train.get("margin"),
            **{f"eval_{k}": v for k, v in on_eval.items()},
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, run.model, tokenizer, cfg.output_dir, cfg, summary)  # keeps reference_cache/
    return summary
