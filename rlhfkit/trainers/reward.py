"""Reward-model training on preference pairs with the Bradley-Terry loss.

The reward model reads the full dialogue string, prompt + response, exactly as HH-RLHF holds it
(:func:`rlhfkit.data.join_prompt_response`), truncated from the left. It is saved so that
``AutoModelForSequenceClassification.from_pretrained(output_dir)`` loads it and its single logit is the
reward.

Python use::

    from rlhfkit.trainers.reward import RewardConfig, train_reward
    summary = train_reward(RewardConfig(model="minilm-l6", output_dir="runs/my-rm"))
    print(summary["eval_accuracy"])

CLI: ``rlhfkit reward [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhfkit.config import option
from rlhfkit.data import PreferencePair, join_prompt_response, load_preferences
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.losses import bradley_terry_loss
from rlhfkit.models.loading import load_reward_model
from rlhfkit.models.lora import LoRAConfig, merge_lora, prepare_trainable
from rlhfkit.models.packing import can_pack, length_groups
from rlhfkit.models.reward import load_reward_tokenizer, normalize_reward_head, reward_scores, score_texts
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
)
from rlhfkit.trainers.saving import save_trained
from rlhfkit.trainers.training import batches, start_training


@dataclass
class RewardConfig:
    """Reward model = backbone + scalar head, trained on {prompt, chosen, rejected} pairs."""

    model: str = option("minilm-l6", "backbone: built-in name, local folder or hub id (encoder or causal LM)")
    output_dir: str = option("runs/reward", "where the reward model is saved")
    data: DataConfig = option(DataConfig, "preference pairs")
    max_length: int = option(256, "tokens per dialogue (the start of long dialogues is cut)")
    batch_size: int = option(16, "pairs per optimizer step")
    epochs: int = option(1, "passes over the training pairs (unless max_steps is set)")
    max_steps: int | None = option(None, "optimizer steps; overrides epochs")
    lr: float = option(3e-5, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear warmup steps")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    lora: LoRAConfig = option(
        LoRAConfig, "LoRA adapters on the backbone (lora.r > 0); the scalar head stays fully trainable"
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, slower"
    )
    checkpoint: CheckpointConfig = option(CheckpointConfig, "training checkpoints and resuming")
    report_to: ReportTo = option(
        "none", "also send metrics.jsonl rows to: none, tensorboard, wandb (offline)"
    )
    normalize: bool = option(
        True,
        "after training, rescale the head so training responses score mean 0, std 1 (Ziegler et al. 2019)",
    )
    normalize_samples: int = option(256, "training pairs whose responses set that mean and std")
    micro_batch_tokens: int | None = option(
        1024,
        "real tokens per forward + backward inside a step: pairs of similar length are grouped and their "
        "gradients accumulated (the same update, less memory and padding); null: the whole batch at once",
    )
    eval_batch_size: int = option(32, "dialogues per evaluation forward pass")
    seed: int = option(0, "seed for batching")
    dtype: str = option("float32", "weights: float32, bfloat16 or float16 (to train: float32 and bf16)")
    bf16: bool = option(False, BF16_HELP)
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def _texts(pairs: list[PreferencePair]) -> tuple[list[str], list[str]]:
    chosen = [join_prompt_response(p.prompt, p.chosen) for p in pairs]
    rejected = [join_prompt_response(p.prompt, p.rejected) for p in pairs]
    return chosen, rejected


def evaluate_pairs(model, tokenizer, pairs: list[PreferencePair], max_length: int, batch_size: int) -> dict:
    """Pair accuracy (share with r_chosen > r_rejected) and mean margin on ``pairs``."""
    chosen, rejected = _texts(pairs)
    r_c = score_texts(model, tokenizer, chosen, max_length, batch_size)
    r_r = score_texts(model, tokenizer, rejected, max_length, batch_size)
    _, metrics = bradley_terry_loss(r_c, r_r)
    return {"accuracy": metrics["accuracy"].item(), "margin": metrics["margin"].item(), "pairs": len(pairs)}


def reward_step(
    model,
    tokenizer,
    pairs: list[PreferencePair],
    max_length: int,
    micro_batch_tokens: int | None,
    backward: Callable[[torch.Tensor], None],
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, torch.Tensor]:
    """Bradley-Terry loss of ``pairs``, its gradients accumulated through ``backward(loss)``; the forward
    passes run under ``autocast()`` (:func:`~rlhfkit.trainers.runtime.forward_autocast`), the backward
    passes outside it.

    The pairs go through the model in micro-batches of similar length holding at most
    ``micro_batch_tokens`` real tokens each (both dialogues of a pair in the same micro-batch), every
    micro-batch loss weighted by its share of the pairs, so the accumulated gradient is that of the whole
    batch. ``None``, or a DDP-wrapped model (one backward per step), takes the batch at once.

    Returns:
        the loss and metrics of :func:`rlhfkit.losses.bradley_terry_loss` over all ``pairs``, detached.
    """
    chosen, rejected = _texts(pairs)
    margin = torch.tensor([p.margin or 0.0 for p in pairs])  # (B,)
    groups = [list(range(len(pairs)))]
    if micro_batch_tokens is not None and can_pack(model):
        ids = tokenizer(chosen + rejected, truncation=True, max_length=max_length).input_ids
        groups = length_groups(
            [len(ids[i]) + len(ids[i + len(pairs)]) for i in range(len(pairs))], micro_batch_tokens
        )
    scored, order = [], []
    for group in groups:
        texts = [chosen[i] for i in group] + [rejected[i] for i in group]
        b = len(group)
        with autocast():
            rewards = reward_scores(model, tokenizer, texts, max_length)  # (2b,)
            loss, _ = bradley_terry_loss(rewards[:b], rewards[b:], margin[group].to(rewards.device))
        backward(loss * (b / len(pairs)))
        scored.append(rewards.detach().view(2, b))
        order += group
    rewards = torch.cat(scored, dim=1)  # (2, B) in the order of `order`
    loss, metrics = bradley_terry_loss(rewards[0], rewards[1], margin[order].to(rewards.device))
    return {"loss": loss, **metrics}


def _normalize(model, tokenizer, pairs: list[PreferencePair], cfg: RewardConfig) -> dict:
    """Make the rewards of ``pairs``' responses mean 0, std 1; returns what was measured."""
    chosen, rejected = _texts(pairs)
    scores = score_texts(model, tokenizer, chosen + rejected, cfg.max_length, cfg.eval_batch_size)
    mean, std = scores.mean().item(), scores.std().item()
    centred = normalize_reward_head(model, mean, std)
    return {"normalized_from_mean": mean, "normalized_from_std": std, "normalized_mean_removed": centred}


def train_reward(cfg: RewardConfig) -> dict:
    """Train a reward model and save it to ``cfg.output_dir``; returns the run's summary.

    The summary holds held-out pair accuracy and mean margin before and after training (the margin after
    normalisation, in units of reward std, when ``cfg.normalize``).

    Raises:
        rlhfkit.data.DataError: bad preference data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: ``cfg.model`` cannot be found.
    """
    accelerator = make_accelerator()
    main, world = accelerator.is_main_process, accelerator.num_processes
    setup_torch(cfg.seed, cfg.threads)
    train, held_out = load_split(cfg.data, functools.partial(load_preferences, format=cfg.data.format))
    tokenizer = load_reward_tokenizer(cfg.model)
    model = load_reward_model(cfg.model, cfg.dtype, trainable=True)
    model = prepare_trainable(model, cfg.lora, cfg.gradient_checkpointing, task_type="SEQ_CLS")

    def evaluate(scorer):
        if not held_out or not main:  # the main process evaluates, the others wait
            return {}
        with forward_autocast(cfg, accelerator):
            return evaluate_pairs(scorer, tokenizer, held_out, cfg.max_length, cfg.eval_batch_size)

    global_batch = min(cfg.batch_size * world, len(train) // world * world)
    steps = cfg.max_steps or cfg.epochs * math.ceil(len(train) / global_batch)
    optimizer, scheduler, checkpoints, start, extra, log = start_training(cfg, model, steps, main)
    before = extra.get("before", {}) if start else evaluate(model)
    model, optimizer = accelerator.prepare(model, optimizer)  # DDP (or FSDP / DeepSpeed) under a launcher
    stream = batches(train, global_batch, cfg.seed, skip=start)
    model.train()
    progress = tqdm(
        range(start + 1, steps + 1), desc="reward", unit="step", initial=start, total=steps, disable=not main
    )
    for step in progress:
        pairs = shard(next(stream), accelerator)  # this process's pairs of the global batch
        metrics = reward_step(
            model,
            tokenizer,
            pairs,
            cfg.max_length,
            cfg.micro_batch_tokens,
            accelerator.backward,
            functools.partial(forward_autocast, cfg, accelerator),
        )
        # a mean over pairs; every process has as many, so the mean of the means is the global mean
        metrics = mean_over_processes(accelerator, metrics)
        check_finite(step, loss=metrics["loss"])  # before the update
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        row = log.log(step, {**metrics, "grad_norm": grad_norm})
        progress.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
        if checkpoints.due(step):
            checkpoints.save(step, {"before": before})
    log.close()

    accelerator.wait_for_everyone()
    summary = plain = None
    if main:
        # the head is normalised and saved as plain transformers weights (adapter merged in)
        plain = merge_lora(accelerator.unwrap_model(model))
        plain.eval()
        with forward_autocast(cfg, accelerator):
            norm = _normalize(plain, tokenizer, train[: cfg.normalize_samples], cfg) if cfg.normalize else {}
        after = evaluate(plain)
        summary = {
            "stage": "reward",
            "steps": steps,
            "processes": world,
            "train_pairs": len(train),
            "eval_pairs": len(held_out),
            "eval_accuracy_before": before.get("accuracy"),
            "eval_accuracy": after.get("accuracy"),
            "eval_margin": after.get("margin"),
            **norm,
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, model, tokenizer, cfg.output_dir, cfg, summary, plain=plain)
    return summary
