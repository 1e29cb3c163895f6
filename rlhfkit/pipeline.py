"""The whole loop in one command: SFT -> reward model (the proxy) -> judge -> PPO and/or GRPO -> evaluation.

The proxy reward model is what PPO optimises; the judge is a second reward model trained on the other
half of the training pairs, which no trainer ever loads: the evaluation reports every policy under both,
so a gain that holds only under the proxy (over-optimisation) shows as such.

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
from rlhfkit.data.split import DataConfig
from rlhfkit.eval.evaluate import EvalConfig, evaluate, format_table
from rlhfkit.rewards import RewardSpec
from rlhfkit.trainers.grpo import GRPOConfig, train_grpo
from rlhfkit.trainers.ppo import PPOConfig, train_ppo
from rlhfkit.trainers.reward import RewardConfig, train_reward
from rlhfkit.trainers.saving import read_summary
from rlhfkit.trainers.sft import SFTConfig, train_sft

Stage = Literal["sft", "reward", "judge", "ppo", "grpo", "eval"]
STAGES: tuple[str, ...] = ("sft", "reward", "judge", "ppo", "grpo", "eval")
DEFAULT_STAGES: tuple[str, ...] = ("sft", "reward", "judge", "ppo", "eval")
RL_STAGES: tuple[str, ...] = ("ppo", "grpo")  # each optimises the proxy from the SFT policy


@dataclass
class PipelineConfig:
    """SFT -> reward (proxy) -> judge -> PPO and/or GRPO -> eval on one data set; each section configures
    its stage."""

    name: str = option("hh-demo", "run name: outputs go to <runs_dir>/<name>/<stage>/")
    runs_dir: str = option("runs", "parent folder of all runs")
    policy: str = option("smollm2-135m-instruct", "base policy model that SFT starts from")
    reward_backbone: str = option("minilm-l6", "backbone of the proxy reward model (the one PPO optimises)")
    judge_backbone: str | None = option(None, "backbone of the judge reward model (default: reward_backbone)")
    data: DataConfig = option(DataConfig, "data for every stage (one shared train/eval split)")
    seed: int = option(0, "seed for every stage")
    stages: list[Stage] = option(
        list(DEFAULT_STAGES),
        "stages to run, in order; ppo and grpo each tune the SFT policy against the proxy (grpo is not run "
        "by default), and eval compares every one of them that is listed with SFT",
    )
    force: bool = option(False, "re-run stages that already finished")
    sft: SFTConfig = option(SFTConfig, "supervised fine-tuning stage")
    reward: RewardConfig = option(
        RewardConfig, "proxy reward-model stage (with a judge stage: on the first half of the training pairs)"
    )
    judge: RewardConfig = option(
        RewardConfig, "judge reward-model stage: the second half of the training pairs; no trainer loads it"
    )
    ppo: PPOConfig = option(PPOConfig, "PPO stage")
    grpo: GRPOConfig = option(GRPOConfig, "GRPO stage (when listed in stages): its rewards are the proxy")
    eval: EvalConfig = option(EvalConfig, "evaluation stage")


def stage_configs(cfg: PipelineConfig) -> dict[str, object]:
    """Each stage's config with the pipeline's shared data, seed, folders and model paths filled in."""
    out = {stage: str(Path(cfg.runs_dir) / cfg.name / stage) for stage in STAGES}
    shared = {"data": cfg.data, "seed": cfg.seed}
    proxy_part = "first_half" if "judge" in cfg.stages else cfg.data.train_part
    judges = [RewardSpec(kind="model", path=out["reward"], name="proxy")]
    if "judge" in cfg.stages:
        judges.append(RewardSpec(kind="model", path=out["judge"], name="judge"))
    return {
        "sft": replace(cfg.sft, model=cfg.policy, output_dir=out["sft"], **shared),
        "reward": replace(
            cfg.reward,
            model=cfg.reward_backbone,
            output_dir=out["reward"],
            data=replace(cfg.data, train_part=proxy_part),
            seed=cfg.seed,
        ),
        "judge": replace(
            cfg.judge,
            model=cfg.judge_backbone or cfg.reward_backbone,
            output_dir=out["judge"],
            data=replace(cfg.data, train_part="second_half"),
            seed=cfg.seed + 1,
        ),
        "ppo": replace(
            cfg.ppo,
            policy=out["sft"],
            reference=out["sft"],
            reward_model=out["reward"],
            value_model=None,
            output_dir=out["ppo"],
            **shared,
        ),
        "grpo": replace(
            cfg.grpo,
            policy=out["sft"],
            reference=out["sft"],
            rewards=[RewardSpec(kind="model", path=out["reward"], name="proxy")],
            output_dir=out["grpo"],
            **shared,
        ),
        "eval": replace(
            cfg.eval,
            baseline=out["sft"],
            policies=[out[stage] for stage in RL_STAGES if stage in cfg.stages] or [out["ppo"]],
            reference=out["sft"],
            judges=judges,
            output_dir=out["eval"],
            **shared,
        ),
    }


RUNNERS = {
    "sft": train_sft,
    "reward": train_reward,
    "judge": train_reward,
    "ppo": train_ppo,
    "grpo": train_grpo,
    "eval": evaluate,
}


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
    for stage, label in (("reward", "Proxy  "), ("judge", "Judge  ")):
        if stage in summaries:
            s = summaries[stage]
            lines.append(
                f"{label} held-out pair accuracy {s['eval_accuracy']:.3f} on {s['eval_pairs']} pairs "
                f"(untrained {s['eval_accuracy_before']:.3f}), trained on {s['train_pairs']} pairs"
            )
    for stage in RL_STAGES:
        if stage in summaries:
            lines.append(f"{stage.upper():<8}" + format_windows(summaries[stage]))
    if "eval" in summaries:
        lines += ["Eval", format_table(summaries["eval"])]
    walls = {k: v.get("wall_s") for k, v in summaries.items() if v.get("wall_s") is not None}
    if walls:
        lines.append("wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in walls.items()))
    return "\n".join(lines)


def format_windows(s: dict) -> str:
    """An RL run's training progress as windows: the mean of its first k steps against its last k."""
    w = s.get("windows") or {}
    if "score_first" not in w:
        return f"{s['steps']} steps"
    parts = [
        f"proxy score {w['score_first']:+.3f} -> {w['score_last']:+.3f} "
        f"(means of the first and last {w['k']} of {s['steps']} rollouts)"
    ]
    if "score_penalised_first" in w:
        parts.append(
            f"with the no-EOS penalty {w['score_penalised_first']:+.3f} -> {w['score_penalised_last']:+.3f}"
        )
    if "kl_last" in w:
        parts.append(f"KL {w['kl_last']:.2f} nats")
    if "explained_variance_last" in w:
        ev = (w["explained_variance_first"], w["explained_variance_last"])
        parts.append(f"value explained variance {ev[0]:.2f} -> {ev[1]:.2f}")
    return ", ".join(parts)
