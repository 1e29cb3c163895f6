"""What each round trains and measures, as calls to the trainers: the stage configs the loop fills in,
the held-out gold-labelled pairs, and the round's ``loop.jsonl`` record."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from rlhfkit.data import DataError, PreferencePair, load_preferences
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.eval.evaluate import EvalConfig
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.labeler import Gold, orient_by_gold
from rlhfkit.loop.labels import preference_pairs
from rlhfkit.loop.layout import RoundPaths, RunLayout, read_jsonl, total_time, write_jsonl
from rlhfkit.loop.scoring import RewardScorer
from rlhfkit.rewards import RewardSpec
from rlhfkit.trainers.dpo import DPOConfig, train_dpo
from rlhfkit.trainers.grpo import GRPOConfig, train_grpo
from rlhfkit.trainers.ppo import PPOConfig, train_ppo
from rlhfkit.trainers.reward import RewardConfig
from rlhfkit.trainers.saving import read_summary

POLICY_TRAINERS = {"ppo": train_ppo, "grpo": train_grpo, "dpo": train_dpo}


def labels_up_to(layout: RunLayout, r: int) -> list[dict[str, Any]]:
    """Every label record of rounds 1..r."""
    return [record for i in range(1, r + 1) for record in read_jsonl(layout.round(i).labels)]


def write_pairs(layout: RunLayout, r: int) -> DataConfig:
    """Write ``round-r/pairs.jsonl``, the trainable pairs of all labels so far; returns the data section
    that trains on all of them (no held-out split: accuracy is measured on gold-labelled pairs).

    Raises:
        DataError: no label so far is a preference (all ties or both bad).
    """
    pairs = preference_pairs(labels_up_to(layout, r))
    path = layout.round(r).pairs
    if not pairs:
        reason = f"no preference to train on in the labels of rounds 1-{r} (only ties / both bad)"
        raise DataError(str(layout.round(r).labels), None, "label", reason)
    write_jsonl(path, (p.to_dict() for p in pairs))
    return DataConfig(path=str(path), format="trl", eval_fraction=0.0)


def reward_config(cfg: LoopConfig, paths: RoundPaths, member: int, data: DataConfig) -> RewardConfig:
    """Ensemble member ``member`` (0: the reward model RL and eval use), trained from the backbone on
    ``data``; members differ only in their seed (head initialisation and batch order)."""
    output = str(paths.member(member))
    return replace(
        cfg.reward, model=cfg.reward_backbone, output_dir=output, data=data, seed=cfg.seed + member
    )


def policy_config(
    cfg: LoopConfig, r: int, paths: RoundPaths, current: str, data: DataConfig | None
) -> PPOConfig | GRPOConfig | DPOConfig:
    """The round's policy update from ``current`` (the latest policy), with the initial policy as the
    reference. DPO takes its reference to be the policy it starts from, so it restarts from the initial
    policy each round and trains on all labels so far (``data``)."""
    shared = {"output_dir": str(paths.policy), "seed": cfg.seed + r}
    if cfg.method == "ppo":
        return replace(
            cfg.ppo,
            policy=current,
            reference=cfg.policy,
            reward_model=str(paths.reward),
            value_model=None,  # initialised from the reward model
            data=cfg.data,
            **shared,
        )
    if cfg.method == "grpo":
        rewards = [RewardSpec(kind="model", path=str(paths.reward))]
        rewards += [spec for spec in cfg.grpo.rewards if spec.kind != "model"]  # rules and functions stay
        return replace(
            cfg.grpo, policy=current, reference=cfg.policy, rewards=rewards, data=cfg.data, **shared
        )
    return replace(cfg.dpo, policy=cfg.policy, data=data, **shared)


def eval_config(cfg: LoopConfig, paths: RoundPaths, gold: str | None = None) -> EvalConfig:
    """The round's policy against the initial one, judged by the round's reward model (the primary judge)
    and, with the simulated labeler, by the `gold` model that labelled the pairs; the same held-out
    prompts and sampling seed every round."""
    judges = [RewardSpec(kind="model", path=str(paths.reward), name="reward")]
    judges += [RewardSpec(kind="model", path=gold, name="gold")] if gold else []
    return replace(
        cfg.eval,
        baseline=cfg.policy,
        policies=[str(paths.policy)],
        reference=cfg.policy,
        judges=judges,
        output_dir=str(paths.eval),
        data=cfg.data,
        seed=cfg.seed,
    )


def heldout_pairs(cfg: LoopConfig, layout: RunLayout, gold: Gold) -> list[PreferencePair]:
    """The first ``simulated.heldout_pairs`` held-out data pairs (with ``simulated.self_play``: its
    held-out self-play pairs) with chosen/rejected set by the gold model
    (:func:`rlhfkit.loop.labeler.orient_by_gold`): the yardstick of reward-model accuracy. Made once and
    kept in ``heldout.jsonl``."""
    if not layout.heldout.exists():
        if cfg.simulated.self_play.train_records:
            rows = read_jsonl(layout.gold_heldout)
            held_out = [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
        else:
            _, held_out = load_split(cfg.data, functools.partial(load_preferences, format=cfg.data.format))
        oriented = orient_by_gold(held_out[: cfg.simulated.heldout_pairs], gold)
        write_jsonl(layout.heldout, (p.to_dict() for p in oriented))
    # read back as written: HH keeps empty responses (silence is an annotated reply), TRL files refuse them
    return [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in read_jsonl(layout.heldout)]


def round_record(
    cfg: LoopConfig, layout: RunLayout, r: int, gold: Gold | None, heldout: list[PreferencePair]
) -> dict[str, Any]:
    """The ``loop.jsonl`` record of round ``r`` (its eval must be done). ``gold`` (simulated labeler only)
    re-scores the evaluated policy's samples; reward accuracy is measured on ``heldout`` (if any)."""
    paths = layout.round(r)
    row = read_summary(paths.eval)["policies"][paths.policy.name]
    gold_score = accuracy = None
    if gold is not None:
        samples = read_jsonl(paths.eval / "samples.jsonl")
        responses = [s[paths.policy.name]["response"] for s in samples]
        gold_score = gold([s["prompt"] for s in samples], responses).mean().item()
    if heldout:
        proxy = RewardScorer.load(str(paths.reward), cfg.reward.max_length, cfg.reward.eval_batch_size)
        accuracy = proxy.accuracy(heldout)
    return {
        "round": r,
        "labels_total": len(labels_up_to(layout, r)),
        "labels_round": len(read_jsonl(paths.labels)),
        "strategy": cfg.strategy,
        "method": cfg.method,
        "reward_heldout_accuracy": accuracy,
        "proxy_score": row["score"],
        "gold_score": gold_score,
        "kl": row["kl"],
        "win_rate": row["win_rate"],
        "win_rate_low": row["win_low"],
        "win_rate_high": row["win_high"],
        "wall_seconds": total_time(paths),
    }
