"""Supervised fine-tuning: next-token loss on response tokens only.

Python use::

    from rlhfkit.trainers.sft import SFTConfig, train_sft
    summary = train_sft(SFTConfig(model="smollm2-135m-instruct", output_dir="runs/my-sft", max_steps=20))

CLI: ``rlhfkit sft [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhfkit.config import option
from rlhfkit.data import load_sft
from rlhfkit.data.collate import collate_sft, encode_sft
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.losses import sft_loss
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.logprobs import next_token_logprobs
from rlhfkit.models.lora import LoRAConfig, prepare_trainable
from rlhfkit.trainers.checkpoint import CheckpointConfig, check_finite
from rlhfkit.trainers.metrics import ReportTo
from rlhfkit.trainers.runtime import (
    BF16_HELP,
    forward_autocast,
    from_main,
    make_accelerator,
    setup_torch,
    shard,
    to_device,
)
from rlhfkit.trainers.saving import save_trained
from rlhfkit.trainers.training import batches, start_training


@dataclass
class SFTConfig:
    """Supervised fine-tuning of a causal LM on prompt -> response pairs (the chosen side of preference
    data works too)."""

    model: str = option("smollm2-135m-instruct", "base model: built-in name, local folder or hub id")
    output_dir: str = option("runs/sft", "where the fine-tuned policy is saved (loads in transformers)")
    data: DataConfig = option(DataConfig, "training data")
    use_chat_template: bool = option(True, "render prompts with the tokenizer's chat template, if any")
    max_length: int = option(256, "tokens per example (prompt + response)")
    max_prompt_length: int = option(192, "prompt tokens kept (from the end of the prompt)")
    batch_size: int = option(8, "examples per optimizer step")
    epochs: int = option(1, "passes over the training data (unless max_steps is set)")
    max_steps: int | None = option(None, "optimizer steps; overrides epochs")
    lr: float = option(1e-5, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear warmup steps")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    lora: LoRAConfig = option(LoRAConfig, "LoRA adapters (lora.r > 0); the saved model has them merged in")
    gradient_checkpointing: bool = option(
        False, "recompute activations in the backward pass: less memory, slower"
    )
    checkpoint: CheckpointConfig = option(CheckpointConfig, "training checkpoints and resuming")
    report_to: ReportTo = option(
        "none", "also send metrics.jsonl rows to: none, tensorboard, wandb (offline)"
    )
    eval_examples: int | None = option(64, "held-out examples scored before and after training (None: all)")
    eval_batch_size: int = option(8, "examples per evaluation forward pass")
    seed: int = option(0, "seed for batching and initialisation")
    dtype: str = option("float32", "weights: float32, bfloat16 or float16 (to train: float32 and bf16)")
    bf16: bool = option(False, BF16_HELP)
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.batch_size < 1 or self.max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")


def _loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SFT loss of a collated batch; padding-free forward, LM head on the response tokens only."""
    target = batch["loss_mask"].clone()
    target[:, 0] = 0  # the first token has no prediction
    logprobs = next_token_logprobs(model, batch["input_ids"], batch["attention_mask"], target).logprobs
    return sft_loss(logprobs, batch["loss_mask"])


def _response_nll(model, encoded: list, pad_id: int, batch_size: int) -> float:
    """Mean per-token NLL (nats) of the response tokens of ``encoded`` examples."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            batch = to_device(collate_sft(encoded[start : start + batch_size], pad_id), model.device)
            loss, metrics = _loss(model, batch)
            total += loss.item() * metrics["tokens"].item()
            count += int(metrics["tokens"].item())
    return total / max(count, 1)


def train_sft(cfg: SFTConfig) -> dict:
    """Fine-tune ``cfg.model`` and save it to ``cfg.output_dir``; returns the run's summary.

    The summary holds the held-out response NLL before and after training (``eval_nll_before``,
    ``eval_nll``), so a run shows whether it helped. Under N processes each takes ``batch_size``
    examples of a global batch of ``N * batch_size``; the loss is the mean over the response tokens of
    the *global* batch (token counts are summed over processes), so the update equals a one-process run
    with ``batch_size = N * batch_size``.

    Raises:
        rlhfkit.data.DataError: bad training data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: ``cfg.model`` cannot be found.
    """
    accelerator = make_accelerator()
    main, world = accelerator.is_main_process, accelerator.num_processes
    setup_torch(cfg.seed, cfg.threads)
    train, held_out = load_split(cfg.data, load_sft)
    tokenizer = load_tokenizer(cfg.model, system_prompt=cfg.data.system_prompt)
    model = prepare_trainable(load_policy(cfg.model, cfg.dtype), cfg.lora, cfg.gradient_checkpointing)

    def encode(examples):
        return [
            encode_sft(tokenizer, ex, cfg.max_length, cfg.max_prompt_length, cfg.use_chat_template)
            for ex in examples
        ]

    train_enc, eval_enc = encode(train), encode(held_out[: cfg.eval_examples])
    global_batch = min(cfg.batch_size * world, len(train_enc) // world * world)
    steps = cfg.max_steps or cfg.epochs * math.ceil(len(train_enc) / global_batch)
    optimizer, scheduler, checkpoints, start, extra, log = start_training(cfg, model, steps, main)
    pad_id = tokenizer.pad_token_id
    if start:
        eval_before = extra.get("eval_nll_before")
    else:
        with forward_autocast(cfg, accelerator):
            eval_before = (
                _response_nll(model, eval_enc, pad_id, cfg.eval_batch_size) if eval_enc and main else None
            )
    model, optimizer = accelerator.prepare(model, optimizer)  # DDP (or FSDP / DeepSpeed) under a launcher

    model.train()
    stream = batches(train_enc, global_batch, cfg.seed, skip=start)
    progress = tqdm(
        range(start + 1, steps + 1), desc="sft", unit="step", initial=start, total=steps, disable=not main
    )
    for step in progress:
        batch = to_device(collate_sft(shard(next(stream), accelerator), pad_id), accelerator.device)
        with forward_autocast(cfg, accelerator):
            loss, metrics = _loss(model, batch)  # mean over local tokens
        # the global token mean: sum of (local mean * local tokens) over processes / all tokens
        tokens = metrics["tokens"].float()
        totals = accelerator.reduce(torch.stack([tokens, loss.detach() * tokens]), "sum")  # (2,)
        global_loss = totals[1] / totals[0]
        check_finite(step, loss=global_loss)
        # DDP averages gradients over processes, hence the factor `world`
        accelerator.backward(loss * tokens * world / totals[0])
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        row = log.log(
            step,
            {
                "loss": global_loss,
                "tokens": totals[0],
                "grad_norm": grad_norm,
                "lr": scheduler.get_last_lr()[0],
            },
        )
        progress.set_postfix(loss=f"{row['loss']:.3f}")
        if checkpoints.due(step):
            checkpoints.save(step, {"eval_nll_before": eval_before})
    log.close()

    model.eval()
    accelerator.wait_for_everyone()
    summary = None
    if main:
        plain = accelerator.unwrap_model(model)
        with forward_autocast(cfg, accelerator):
            eval_after = _response_nll(plain, eval_enc, pad_id, cfg.eval_batch_size) if eval_enc else None
        summary = {
            "stage": "sft",
            "steps": steps,
            "processes": world,
            "train_examples": len(train_enc),
            "eval_examples": len(eval_enc),
            "train_loss_first": log.rows[0]["loss"],
            "train_loss_last": log.rows[-1]["loss"],
            "eval_nll_before": eval_before,
            "eval_nll": eval_after,
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, model, tokenizer, cfg.output_dir, cfg, summary)
    return summary
