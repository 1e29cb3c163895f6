"""The whole loop in one command: SFT -> reward model -> PPO -> evaluation.

Each stage writes to ``<runs_dir>/<name>/<stage>/`` and is skipped on a re-run once its ``summary.json``
exists (``force=true`` redoes it), so an interrupted pipeline resumes at the first unfinished stage.
The top-level ``data`` section and ``seed`` apply to every stage, so all stages share one train/eval
split; model paths are wired from stage to stage.

Python use::

    from rlhfkit.config import load_config
    from rlhfkit.pipeline import PipelineConfig, run_pipeline
    run_pipeline(load_config(PipelineConfig, "configs/hh-demo.yaml"))

CLI: ``rlhfkit pipeline configs/hh-demo.yaml [key=value ...]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from rlhfkit.config import option
from rlhfkit.eval.evaluate import EvalConfig, evaluate, format_table
from rlhfkit.trainers.common import DataConfig, read_summary
from rlhfkit.trainers.ppo import PPOConfig, train_ppo
from rlhfkit.trainers.reward import RewardConfig, train_reward
from rlhfkit.trainers.sft import SFTConfig, train_sft

Stage = Literal["sft", "reward", "ppo", "eval"]
STAGES: tuple[str, ...] = ("sft", "reward", "ppo", "eval")


@dataclass
class PipelineConfig:
    """SFT -> reward -> PPO -> eval on one data set; each section configures its stage."""

    name: str = option("hh-demo", "run name: outputs go to <runs_dir>/<name>/<stage>/")
    runs_dir: str = option("runs", "parent folder of all runs")
    policy: str = option("smollm2-135m-instruct", "base policy model that SFT starts from")
    reward_backbone: str = option("minilm-l6", "backbone of the reward model")
    data: DataConfig = option(DataConfig, "data for every stage (one shared train/eval split)")
    seed: int = option(0, "seed for every stage")
    stages: list[Stage] = option(list(STAGES), "stages to run, in order")
    force: bool = option(False, "re-run stages that already finished")
    sft: SFTConfig = option(SFTConfig, "supervised fine-tuning stage")
    reward: RewardConfig = option(RewardConfig, "reward-model stage")
    ppo: PPOConfig = option(PPOConfig, "PPO stage")
    eval: EvalConfig = option(EvalConfig, "evaluation stage")


def stage_configs(cfg: PipelineConfig) -> dict[str, object]:
    """Each stage's config with the pipeline's shared data, seed, folders and model paths filled in."""
    out = {stage: str(Path(cfg.runs_dir) / cfg.name / stage) for stage in STAGES}
    shared = {"data": cfg.data, "seed": cfg.seed}
    return {
        "sft": replace(cfg.sft, model=cfg.policy, output_dir=out["sft"], **shared),
        "reward": replace(cfg.reward, model=cfg.reward_backbone, output_dir=out["reward"], **shared),
        "ppo": replace(
            cfg.ppo,
            policy=out["sft"],
            reference=out["sft"],
            reward_model=out["reward"],
            value_model=None,
            output_dir=out["ppo"],
            **shared,
        ),
        "eval": replace(
            cfg.eval,
            baseline=out["sft"],
            policies=[out["ppo"]],
            reference=out["sft"],
            reward_model=out["reward"],
            output_dir=out["eval"],
            **shared,
        ),
    }


RUNNERS = {"sft": train_sft, "reward": train_reward, "ppo": train_ppo, "eval": evaluate}


def run_pipeline(cfg: PipelineConfig) -> dict[str, dict]:
    """Run the configured stages in order; returns each stage's summary (with its wall time)."""
    configs = stage_configs(cfg)
    summaries: dict[str, dict] = {}
    for stage in cfg.stages:
        stage_cfg = configs[stage]
        done = None if cfg.force else read_summary(stage_cfg.output_dir)
        if done is not None:
            print(f"[rlhfkit] {stage}: done already in {stage_cfg.output_dir} (force=true re-runs it)")
            summaries[stage] = done
            continue
        print(f"[rlhfkit] {stage} -> {stage_cfg.output_dir}", flush=True)
        start = time.time()
        summaries[stage] = RUNNERS[stage](stage_cfg)
        summaries[stage]["wall_s"] = round(time.time() - start, 1)
    print(format_summary(summaries))
    return summaries


def format_summary(summaries: dict[str, dict]) -> str:
    """The final table printed at the end of a pipeline run."""
    lines = ["", "=" * 72, "rlhfkit pipeline summary", "=" * 72]
    if "sft" in summaries:
        s = summaries["sft"]
        lines.append(
            f"SFT     held-out response NLL {s['eval_nll_before']:.3f} -> {s['eval_nll']:.3f} nats/token"
            if s.get("eval_nll") is not None
            else "SFT     done"
        )
    if "reward" in summaries:
        s = summaries["reward"]
        lines.append(
            f"Reward  held-out pair accuracy {s['eval_accuracy']:.3f} on {s['eval_pairs']} pairs "
            f"(untrained {s['eval_accuracy_before']:.3f}), mean margin {s['eval_margin']:.3f}"
        )
    if "ppo" in summaries:
        s = summaries["ppo"]
        lines.append(
            f"PPO     score {s['score_first']:.3f} -> {s['score_last']:.3f} over {s['steps']} rollouts, "
            f"KL {s['kl_last']:.2f} nats"
        )
    if "eval" in summaries:
        lines += ["Eval", format_table(summaries["eval"])]
    walls = {k: v.get("wall_s") for k, v in summaries.items() if v.get("wall_s") is not None}
    if walls:
        lines.append("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in walls.items()))
    return "\n".join(lines)
