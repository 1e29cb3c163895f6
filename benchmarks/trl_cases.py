"""The TRL side of ``benchmarks/compare_trl.py``: one case, run by TRL's trainer with TRL's defaults.

Only what must match rlhfkit is set: the model and data rows (given in the order rlhfkit consumes them, read
sequentially), batch, lengths, beta, temperature, generations, PPO epochs, seed, learning rate (TRL's
default for the trainer) on a constant schedule, and the CPU in fp32 (``use_cpu=True``; ``bf16=True``, mixed
precision, with ``--bf16``); no saving,
no evaluation, no reporting. Gradient checkpointing stays at TRL's default (on).

A :class:`transformers.TrainerCallback` reads the clock and a :class:`compare_worker.TokenCounter` at every
``on_step_end`` (one optimizer step; one rollout for PPO, whose loop calls no ``on_step_begin``) and keeps
the sanity metric from ``on_log``.

Imports no rlhfkit: the PPO case runs in ``.venv-trl112`` (TRL 1.12, the last release with
``trl.experimental.ppo``).
"""

from __future__ import annotations

import os
import time

import torch
import transformers
import trl
from compare_worker import TokenCounter, read_jsonl, worker_result
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)


class Recorder(TrainerCallback):
    """Clock and token count at the end of every step; the sanity metric of every log."""

    def __init__(self, counter: TokenCounter, metric: str):
        self.counter, self.metric = counter, metric
        self.ends: list[float] = []
        self.token_marks: list[int] = []
        self.values: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())
        self.token_marks.append(self.counter.total)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and self.metric in logs:
            self.values.append(logs[self.metric])


def _args(config_cls, spec: dict, **settings):
    """TRL's config for the case: its defaults, but for what has to match rlhfkit's run."""
    defaults = {
        "output_dir": spec["out_dir"],
        "max_steps": spec["steps"],
        "per_device_train_batch_size": spec["batch_size"],
        "learning_rate": spec["lr"],
        "lr_scheduler_type": "constant",
        "train_sampling_strategy": "sequential",  # the rows are already in rlhfkit's order
        "seed": spec["seed"],
        "bf16": bool(spec.get("bf16")),  # compare_trl.py --bf16: autocast, fp32 weights (as rlhfkit's)
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
    }
    return config_cls(**{**defaults, **settings})


def _policy(spec: dict, counter: TokenCounter):
    return counter.attach(AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32))


def _scorer(folder: str, tokenizer):
    """A one-label sequence classifier (reward or value model) from ``folder``."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _policy_trainer(trainer_class, args, spec, counter, recorder, data):
    """A TRL trainer (SFT, DPO) of the counted policy, with the policy's tokenizer."""
    return trainer_class(
        model=_policy(spec, counter),
        args=args,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(spec["model"]),
        callbacks=[recorder],
    )


def _sft(spec, counter, recorder, data):
    args = _args(trl.SFTConfig, spec, max_length=spec["max_length"], completion_only_loss=True)
    return _policy_trainer(trl.SFTTrainer, args, spec, counter, recorder, data)


def _reward(spec, counter, recorder, data):
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    torch.manual_seed(spec["seed"])  # the same fresh head as rlhfkit's (seeded the same way, then loaded)
    model = counter.attach(_scorer(spec["model"], tokenizer))
    args = _args(trl.RewardConfig, spec, max_length=spec["max_length"])
    return trl.RewardTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[recorder]
    )


def _dpo(spec, counter, recorder, data):
    args = _args(
        trl.DPOConfig,
        spec,
        beta=spec["beta"],
        max_length=spec["max_length"],
        precompute_ref_log_probs=spec["reference"] == "precomputed",
        precompute_ref_batch_size=spec["batch_size"],
    )
    return _policy_trainer(trl.DPOTrainer, args, spec, counter, recorder, data)


def _group(spec, counter, recorder, data):
    """GRPO or RLOO: G completions per prompt, one optimizer step per generation batch."""
    grpo = spec["kind"] == "grpo"
    reward_tokenizer = AutoTokenizer.from_pretrained(spec["reward_model"])
    args = _args(
        trl.GRPOConfig if grpo else trl.RLOOConfig,
        spec,
        per_device_train_batch_size=spec["batch_size"] * spec["group_size"],  # completions per step
        num_generations=spec["group_size"],
        max_completion_length=spec["max_new_tokens"],
        temperature=spec["temperature"],
        beta=spec["beta"],
        shuffle_dataset=False,
        # GRPO: the plain k3 KL term of the paper (and of rlhfkit), not the ratio-weighted one
        **({"use_bias_correction_kl": False} if grpo else {}),
    )
    trainer_cls = trl.GRPOTrainer if grpo else trl.RLOOTrainer
    return trainer_cls(
        model=_policy(spec, counter),
        reward_funcs=_scorer(spec["reward_model"], reward_tokenizer),
        args=args,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(spec["model"]),
        reward_processing_classes=reward_tokenizer,
        callbacks=[recorder],
    )


def _ppo(spec, counter, recorder, data):
    """TRL 1.12's experimental PPO: policy, reference (a copy), value and reward models."""
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    if spec.get("bf16"):
        # its trainer builds a bare Accelerator(), which reads the precision from this variable (the
        # transformers that TRL 1.12 was written against set it from bf16=True; 5.x no longer does)
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    tokenizer = AutoTokenizer.from_pretrained(spec["model"], padding_side="left")
    args = _args(
        PPOConfig,
        spec,
        total_episodes=spec["steps"] * spec["batch_size"],
        num_mini_batches=1,
        num_ppo_epochs=spec["epochs"],
        response_length=spec["max_new_tokens"],
        stop_token="eos",
        temperature=spec["temperature"],
        kl_coef=spec["beta"],
        num_sample_generations=0,
    )
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=_policy(spec, counter),
        ref_model=None,
        reward_model=_scorer(spec["reward_model"], tokenizer),
        value_model=_scorer(spec["reward_model"], tokenizer),
        train_dataset=data,
        callbacks=[recorder],
    )
    # its own loader shuffles; read the prompts in rlhfkit's order instead
    loader = DataLoader(data, spec["batch_size"], collate_fn=trainer.data_collator, drop_last=True)
    trainer.dataloader = trainer.accelerator.prepare(loader)
    return trainer


BUILDERS = {"sft": _sft, "reward": _reward, "dpo": _dpo, "grpo": _group, "rloo": _group, "ppo": _ppo}


def run(spec: dict, started: float) -> dict:
    torch.set_num_threads(spec["threads"])
    counter = TokenCounter()
    recorder = Recorder(counter, spec["metric"]["trl"])
    data = Dataset.from_list(read_jsonl(spec["trl_data"]))
    trainer = BUILDERS[spec["kind"]](spec, counter, recorder, data)
    trainer.train()
    ends = recorder.ends
    return worker_result(
        spec,
        step_s=[b - a for a, b in zip(ends, ends[1:], strict=False)],
        token_marks=recorder.token_marks,
        metric=recorder.values,
        startup_s=ends[0] - started,
        counter=counter,
        versions={"trl": trl.__version__, "transformers": transformers.__version__},
    )
