"""Kahneman-Tversky optimisation (KTO) on unpaired desirable / undesirable examples: no pairs, no reward
model, no sampling.

Each example is a prompt, one completion and a label (``{"prompt", "completion", "label"}``, or a
preference pair taken apart: chosen desirable, rejected undesirable). The loss
(:func:`rlhfkit.losses.kto.kto_loss`, Ethayarajh et al. 2024) raises a desirable completion's log-ratio
``r = log pi(y|x) - log pi_ref(y|x)`` above a reference point z0 and pushes an undesirable one below it;
z0 is the batch's mean log-ratio on *mismatched* rows, completions scored after a prompt they were not
written for (clamped at 0, detached). Every example has one fixed mismatched partner
(:func:`rlhfkit.data.unpaired.mismatched_partners`: another example's completion, from another prompt),
so that the reference log-probs of both rows can be cached per example, like DPO's.

A step takes B examples as B row pairs (example row, mismatched row) through the policy
(:mod:`rlhfkit.trainers.row_pairs`, shared with DPO): the example rows with gradients, the mismatched rows
without (they only feed the detached z0). The reference is the policy as it starts, ``precomputed`` (one
cached no-grad pass before the first update) or ``on_the_fly``; with LoRA it is the base model with the
adapter off, and the saved policy has the adapter merged in.

Notation:
    B  examples per step (``batch_size``); 2B rows: B with gradients, B without
    T  padded row length (prompt + response)

Python use::

    from rlhfkit.trainers.kto import KTOConfig, train_kto
    summary = train_kto(KTOConfig(policy="runs/hh-demo/sft", output_dir="runs/my-kto", max_steps=20))
    print(summary["eval_reward_margin"])

CLI: ``rlhfkit kto [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import torch

from rlhfkit.config import option
from rlhfkit.data import load_unpaired
from rlhfkit.data.collate import encode_sft
from rlhfkit.data.records import SFTExample
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.data.unpaired import mismatched_partners, unpaired_examples
from rlhfkit.losses.dpo import PairLogps
from rlhfkit.losses.kto import (
    RECOMMENDED_RATIO,
    KTOParams,
    UnpairedLogps,
    check_params,
    kto_loss,
    weight_ratio,
)
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.lora import LoRAConfig
from rlhfkit.trainers.checkpoint import CheckpointConfig
from rlhfkit.trainers.metrics import ReportTo
from rlhfkit.trainers.row_pairs import pair_logps_of, setup_pair_run, train_pair_steps
from rlhfkit.trainers.runtime import BF16_HELP, forward_autocast, from_main, make_accelerator, setup_torch
from rlhfkit.trainers.saving import save_trained

REFERENCE_TAG = "kto-reference-v1"  # in the reference cache's key: (example row, mismatched row) per item


@dataclass
class KTOConfig:
    """KTO of a policy on unpaired {prompt, completion, label} examples (or pairs taken apart)."""

    policy: str = option("runs/hh-demo/sft", "policy to train, also the reference (usually the SFT output)")
    output_dir: str = option("runs/kto", "where the trained policy is saved (loads in transformers)")
    data: DataConfig = option(
        DataConfig,
        "unpaired {prompt, completion, label: true|false} records (format auto), or preference pairs (trl, "
        "hh, tldr) taken apart after the split: chosen desirable, rejected undesirable",
    )
    beta: float = option(0.1, "inverse temperature of the implicit reward beta * log(pi / pi_ref)")
    desirable_weight: float = option(
        1.0,
        "lambda_D, the weight of desirable examples' loss; keep lambda_D n_D / (lambda_U n_U) in [1, 4/3]",
    )
    undesirable_weight: float = option(
        1.0, "lambda_U, the weight of undesirable examples' loss (raise it when they are fewer)"
    )
    reference: Literal["precomputed", "on_the_fly"] = option(
        "precomputed", "reference log-probs: one cached pass before training, or every step"
    )
    use_chat_template: bool = option(True, "render prompts with the tokenizer's chat template, if any")
    max_length: int = option(256, "tokens per row (prompt + response)")
    max_prompt_length: int = option(192, "prompt tokens kept (from the end of the prompt)")
    batch_size: int = option(8, "examples per optimizer step (and as many mismatched rows, no gradients)")
    epochs: int = option(1, "passes over the training examples (unless max_steps is set)")
    max_steps: int | None = option(None, "optimizer steps; overrides epochs")
    lr: float = option(5e-6, "AdamW learning rate (the paper finds KTO wants a higher one than DPO)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear warmup steps")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    eval_examples: int | None = option(
        64, "held-out examples (and as many trained ones) scored after training"
    )
    eval_batch_size: int = option(8, "examples per no-grad forward pass (reference pass, evaluation)")
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
    seed: int = option(0, "seed for batching, mismatched partners and initialisation")
    dtype: str = option("float32", "weights: float32, bfloat16 or float16 (to train: float32 and bf16)")
    bf16: bool = option(False, BF16_HELP)
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        if self.max_length < 2 or not 0 < self.max_prompt_length < self.max_length:
            raise ValueError("need max_length >= 2 and 0 < max_prompt_length < max_length")
        check_params(self.params())

    def params(self) -> KTOParams:
        """The loss's hyper-parameters."""
        return KTOParams(self.beta, self.desirable_weight, self.undesirable_weight)


def _encode_items(tokenizer, examples: list, partners: list[int], cfg: KTOConfig) -> list:
    """One item per example: (its own row, its mismatched row: example ``partners[i]``'s completion after
    this example's prompt), each (input ids, loss mask) as :func:`encode_sft` makes them."""
    lengths = (cfg.max_length, cfg.max_prompt_length, cfg.use_chat_template)
    return [
        (
            encode_sft(tokenizer, SFTExample(ex.prompt, ex.completion), *lengths),
            encode_sft(tokenizer, SFTExample(ex.prompt, examples[j].completion), *lengths),
        )
        for ex, j in zip(examples, partners, strict=True)
    ]


def _unpaired(x: PairLogps, desirable: torch.Tensor) -> UnpairedLogps:
    """Row-pair log-probs read as KTO's: first rows the examples, second rows their mismatched rows."""
    return UnpairedLogps(x.chosen, x.ref_chosen, x.rejected, x.ref_rejected, desirable.to(x.chosen.device))


def _evaluate(model, items, indices, labels, pad_id, cfg: KTOConfig, reference) -> dict:
    """The loss and its metrics over the examples ``indices``, with z0 from all their mismatched rows."""
    if not indices:
        return {}
    joined = pair_logps_of(model, items, indices, pad_id, cfg.eval_batch_size, reference)
    loss, metrics = kto_loss(_unpaired(joined, labels[indices]), cfg.params())
    return {"loss": loss.item(), **{k: v.item() for k, v in metrics.items()}}


def train_kto(cfg: KTOConfig) -> dict:
    """Train ``cfg.policy`` with KTO and save it to ``cfg.output_dir``; returns the summary.

    The summary holds, after training, the loss, z0 (``kl``) and the implicit rewards of desirable and
    undesirable examples (and their ``reward_margin``) on up to ``eval_examples`` trained examples
    (``train_*``) and held-out ones (``eval_*``), and the weight ratio ``lambda_D n_D / (lambda_U n_U)``
    of the training examples (a line is printed when it is outside the paper's [1, 4/3]).

    Raises:
        rlhfkit.data.DataError: bad data (unless ``data.skip_invalid``).
        rlhfkit.models.loading.ModelNotFoundError: ``cfg.policy`` cannot be found.
        ValueError: no training examples, or fewer than two different prompts in a split.
    """
    # --- setup: processes, data, policy, reference log-probs, LoRA, optimizer
    accelerator = make_accelerator()
    main, world = accelerator.is_main_process, accelerator.num_processes
    setup_torch(cfg.seed, cfg.threads)
    train, held_out = load_split(cfg.data, functools.partial(load_unpaired, format=cfg.data.format))
    train, held_out = unpaired_examples(train), unpaired_examples(held_out)[: cfg.eval_examples]
    if not train:
        raise ValueError("no training examples (check data.path, data.max_train and data.eval_fraction)")
    n_desirable = sum(ex.label for ex in train)
    ratio = weight_ratio(cfg.params(), n_desirable, len(train) - n_desirable)
    if main and not RECOMMENDED_RATIO[0] <= ratio <= RECOMMENDED_RATIO[1]:
        print(
            f"[rlhfkit] kto: lambda_D n_D / (lambda_U n_U) = {ratio:.3g} ({n_desirable} desirable, "
            f"{len(train) - n_desirable} undesirable); the paper advises 1 to 4/3: set undesirable_weight "
            "or desirable_weight",
            flush=True,
        )
    tokenizer = load_tokenizer(cfg.policy, system_prompt=cfg.data.system_prompt)
    pad_id = tokenizer.pad_token_id
    model = load_policy(cfg.policy, cfg.dtype)

    # examples 0..n_train-1 are training ones, the rest held out. Training examples take their mismatched
    # completions from training examples; held-out ones from all (a few held-out examples may share one
    # prompt); the mismatched rows only set z0, which no gradient flows through.
    examples = train + held_out
    partners = mismatched_partners(train, cfg.seed)
    partners += mismatched_partners(examples, cfg.seed)[len(train) :] if held_out else []
    items = _encode_items(tokenizer, examples, partners, cfg)
    labels = torch.tensor([ex.label for ex in examples])  # (N,) True: desirable
    n_train = len(train)
    eval_idx = list(range(n_train, len(items)))
    run = setup_pair_run(
        cfg, accelerator, model, items, n_train, eval_idx, cfg.eval_examples, pad_id, REFERENCE_TAG
    )

    # --- train: example rows with gradients, mismatched rows without
    def step_loss(x: PairLogps, indices):
        u = _unpaired(x, labels[list(indices)])
        if world > 1:  # z0 from the whole global batch's mismatched rows, as one process would have it
            u = u._replace(
                kl_policy=accelerator.gather(u.kl_policy), kl_reference=accelerator.gather(u.kl_reference)
            )
        return kto_loss(u, cfg.params())

    train_pair_steps(run, cfg, accelerator, items, pad_id, step_loss, "kto", "kl", second_grad=False)

    # --- evaluate (main process), merge LoRA, save
    run.model.eval()
    accelerator.wait_for_everyone()
    summary = None
    if main:
        with forward_autocast(cfg, accelerator):
            on_train = _evaluate(run.plain, items, run.trained_eval, labels, pad_id, cfg, run.reference)
            on_eval = _evaluate(run.plain, items, eval_idx, labels, pad_id, cfg, run.reference)
        summary = {
            "stage": "kto",
            "reference": cfg.reference,
            "reference_cache_hit": run.cache_hit,
            "lora": cfg.lora.enabled,
            "steps": run.steps,
            "processes": world,
            "train_examples": n_train,
            "train_desirable": n_desirable,
            "weight_ratio": ratio,
            "eval_examples": len(eval_idx),
            "train_loss_first": run.log.rows[0]["loss"],
            "train_loss_last": run.log.rows[-1]["loss"],
            **{f"train_{k}": on_train.get(k) for k in ("kl", "desirable_reward", "undesirable_reward")},
            "train_reward_margin": on_train.get("reward_margin"),
            **{f"eval_{k}": v for k, v in on_eval.items()},
        }
    summary = from_main(accelerator, summary)
    save_trained(accelerator, run.model, tokenizer, cfg.output_dir, cfg, summary)  # keeps reference_cache/
    return summary
