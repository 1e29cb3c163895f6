"""The rlhfkit side of ``benchmarks/compare_trl.py``: one case, run by the package's own trainer function.

Step times come from the trainer's ``<output_dir>/metrics.jsonl`` (a cumulative ``time_s`` per step; one
row per optimizer step, one per rollout for the RL trainers). Two measuring hooks are added from outside,
without changing the trainers: the trained model's loader is wrapped so that a
:class:`compare_worker.TokenCounter` is attached to it, and ``MetricsLog.log`` is wrapped to read that counter
(and the clock) at the end of every step.
"""

from __future__ import annotations

import importlib
import time
from importlib.metadata import version
from pathlib import Path

import transformers
from compare_worker import TokenCounter, read_jsonl, worker_result

import rlhfkit.trainers.metrics as metrics
from rlhfkit.data.split import DataConfig
from rlhfkit.rewards import RewardSpec
from rlhfkit.rollout.config import SamplingConfig
from rlhfkit.trainers.dpo import DPOConfig, train_dpo
from rlhfkit.trainers.grpo import GRPOConfig, train_grpo
from rlhfkit.trainers.ppo import PPOConfig, train_ppo
from rlhfkit.trainers.reward import RewardConfig, train_reward
from rlhfkit.trainers.rloo import RLOOConfig, train_rloo
from rlhfkit.trainers.sft import SFTConfig, train_sft


def _shared(spec: dict) -> dict:
    """Settings every trainer takes: data (no held-out split), output, seed, threads, checkpointing."""
    data = DataConfig(path=spec["rlhfkit_data"], eval_fraction=0.0, split_seed=spec["seed"])
    return {
        "data": data,
        "output_dir": spec["out_dir"],
        "seed": spec["seed"],
        "threads": spec["threads"],
        "gradient_checkpointing": spec["rlhfkit_gradient_checkpointing"],
        "bf16": bool(spec.get("bf16")),
    }


def _offline(spec: dict) -> dict:
    """SFT / reward / DPO: steps, batch, length, AdamW without weight decay or warmup."""
    return {
        **_shared(spec),
        "max_steps": spec["steps"],
        "batch_size": spec["batch_size"],
        "max_length": spec["max_length"],
        "lr": spec["lr"],
        "weight_decay": 0.0,
        "warmup_steps": 0,
    }


def _rollouts(spec: dict) -> dict:
    """GRPO / RLOO / PPO: rollouts, prompts per rollout, sampling, no missing-EOS penalty (as TRL)."""
    return {
        **_shared(spec),
        "policy": spec["model"],
        "steps": spec["steps"],
        "batch_size": spec["batch_size"],
        "sampling": SamplingConfig(
            max_prompt_length=spec["max_prompt_length"],
            max_new_tokens=spec["max_new_tokens"],
            temperature=spec["temperature"],
        ),
        "lr": spec["lr"],
        "kl_coef": spec["beta"],
        "missing_eos_penalty": 0.0,
    }


def _group(spec: dict) -> dict:
    """GRPO / RLOO: G samples per prompt, one update per rollout (the whole batch is one minibatch)."""
    return {
        **_rollouts(spec),
        "rewards": [RewardSpec(kind="model", path=spec["reward_model"])],
        "group_size": spec["group_size"],
        "mini_batch_size": spec["batch_size"] * spec["group_size"],
    }


def _config(spec: dict):
    """(trainer function, config) of the case."""
    kind = spec["kind"]
    if kind == "sft":
        return train_sft, SFTConfig(
            model=spec["model"],
            max_prompt_length=spec["max_prompt_length"],
            eval_examples=0,
            **_offline(spec),
        )
    if kind == "reward":
        return train_reward, RewardConfig(model=spec["model"], normalize=False, **_offline(spec))
    if kind == "dpo":
        return train_dpo, DPOConfig(
            policy=spec["model"],
            beta=spec["beta"],
            reference=spec["reference"],
            max_prompt_length=spec["max_prompt_length"],
            eval_pairs=0,
            eval_batch_size=spec["batch_size"],  # the reference pre-pass batch, as TRL's
            **_offline(spec),
        )
    if kind == "grpo":
        return train_grpo, GRPOConfig(**_group(spec))
    if kind == "rloo":
        return train_rloo, RLOOConfig(**_group(spec))
    return train_ppo, PPOConfig(
        reward_model=spec["reward_model"],
        # TRL's reward and value models read the policy's tokens: the prompt cut to its limit + the response
        reward_max_length=spec["max_prompt_length"] + spec["max_new_tokens"],
        shared_value_head=spec.get("shared_value_head", False),
        mini_batch_size=spec["batch_size"],
        ppo_epochs=spec["epochs"],
        value_lr=spec["lr"],  # TRL trains policy and value with one optimizer at one rate
        **_rollouts(spec),
    )


def _instrument(kind: str, counter: TokenCounter, marks: list[tuple[float, int]]) -> None:
    """Count the trained model's tokens, and read the clock and the count at every logged step."""
    where = "rl_run" if kind in ("grpo", "rloo", "ppo") else kind  # the RL trainers load through rl_run
    module = importlib.import_module(f"rlhfkit.trainers.{where}")
    name = "load_reward_model" if kind == "reward" else "load_policy"
    load = getattr(module, name)

    def counting_load(*args, **kwargs):
        model = load(*args, **kwargs)
        if any(p.requires_grad for p in model.parameters()):  # not a frozen reference
            counter.attach(model)
        return model

    setattr(module, name, counting_load)
    log = metrics.MetricsLog.log

    def marking_log(self, step, metrics):
        marks.append((time.perf_counter(), counter.total))
        return log(self, step, metrics)

    metrics.MetricsLog.log = marking_log


def run(spec: dict, started: float) -> dict:
    counter, marks = TokenCounter(), []
    _instrument(spec["kind"], counter, marks)
    train, cfg = _config(spec)
    train(cfg)
    rows = read_jsonl(Path(spec["out_dir"]) / "metrics.jsonl")
    times = [row["time_s"] for row in rows]
    return worker_result(
        spec,
        step_s=[b - a for a, b in zip(times, times[1:], strict=False)],
        token_marks=[tokens for _, tokens in marks],
        metric=[row[spec["metric"]["rlhfkit"]] for row in rows],
        startup_s=marks[0][0] - started,
        counter=counter,
        versions={"rlhfkit": version("rlhfkit"), "transformers": transformers.__version__},
    )
