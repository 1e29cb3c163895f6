"""``rlhfkit loop``: iterative RLHF with active selection of the pairs to label.

Each round r = 1..R works in ``<runs_dir>/<name>/round-r/`` (see ``rlhfkit.loop.layout``):

    candidates  sample K responses per prompt from the current policy, for a fresh slice of training prompts
    select      score every candidate pair with the current reward model(s); pick ``labels_per_round``
                pairs with the strategy (``rlhfkit.loop.selection``)
    label       the simulated labeler (a gold reward model) or people in the feedback app label them
    reward      train the reward model from the backbone on ALL labels so far (and, with strategy=ensemble,
                ``ensemble_size - 1`` more members with other seeds: they select the next round's pairs)
    policy      PPO / GRPO from the current policy, or DPO (see ``rlhfkit.loop.stages.policy_config``);
                the reference is always the initial policy
    eval        the round's policy against the initial one (win rate, proxy score, KL)
    record      append the round's record to ``loop.jsonl``; with the simulated labeler also the gold score
                of the evaluated samples and the reward model's accuracy on held-out gold-labelled pairs

Resuming: a stage is done when its output exists (a file, or a folder with ``summary.json``; everything is
written atomically) and is then skipped, as ``rlhfkit pipeline`` skips stages. A stage whose inputs were
(re)made by this invocation runs again even if its output exists, so deleting a stage's output redoes it
and everything that depends on it, and nothing else. Round 1 has no reward model trained on this loop's
labels: it selects with ``initial_reward_model`` if given (an ensemble needs two members, so ensemble
selects round 1 at random), else at random; ``selected.jsonl`` says which strategy picked each pair.

Python use::

    from rlhfkit.config import load_config
    from rlhfkit.loop.run import LoopConfig, run_loop
    records = run_loop(load_config(LoopConfig, "configs/hh-loop.yaml"))

CLI: ``rlhfkit loop configs/hh-loop.yaml [key=value ...]``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlhfkit.config import ConfigError, config_to_dict, save_config
from rlhfkit.data import DataError, load_prompts
from rlhfkit.data.split import load_split
from rlhfkit.eval.evaluate import evaluate
from rlhfkit.loop.candidates import member_probs, sample_candidates, selected_records
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.human import HumanLabeler
from rlhfkit.loop.labeler import SimulatedLabeler
from rlhfkit.loop.layout import RoundPaths, RunLayout, add_timing, read_jsonl, replace_record, write_jsonl
from rlhfkit.loop.scoring import RewardScorer
from rlhfkit.loop.selection import MIN_MEMBERS, candidate_pairs, select
from rlhfkit.loop.self_play import (
    gold_reward_config,
    self_play_examples,
    self_play_pairs,
    write_gold_accuracy,
)
from rlhfkit.loop.stages import (
    POLICY_TRAINERS,
    eval_config,
    heldout_pairs,
    policy_config,
    reward_config,
    round_record,
    write_pairs,
)
from rlhfkit.trainers.reward import train_reward
from rlhfkit.trainers.saving import read_summary

__all__ = ["LoopConfig", "run_loop", "format_records"]

Stage = tuple[str, int]  # (stage name, round)


@dataclass
class _Stages:
    """Runs stages in order, skipping finished ones unless something they depend on was just remade."""

    fresh: set[Stage] = field(default_factory=set)

    def run(
        self, name: str, paths: RoundPaths, r: int, done: bool, after: list[Stage], work: Callable
    ) -> None:
        where = f"round {r}" if r else "gold"  # round 0: the self-play gold model, before round 1
        if done and not any(stage in self.fresh for stage in after):
            print(f"[rlhfkit] {where} {name}: done already in {paths.dir}")
            return
        print(f"[rlhfkit] {where} {name}", flush=True)
        start = time.time()
        work()
        add_timing(paths, name, time.time() - start)
        self.fresh.add((name, r))


def _member_stage(m: int) -> str:
    return "reward" if m == 0 else f"reward-member-{m}"


def run_loop(cfg: LoopConfig) -> list[dict[str, Any]]:
    """Run (or resume) the loop; returns the ``loop.jsonl`` records, one per round.

    Raises:
        rlhfkit.config.ConfigError: the data has fewer training prompts than the rounds need.
        rlhfkit.data.DataError: bad data (unless ``data.skip_invalid``), or no preference labels.
        rlhfkit.errors.ModelNotFoundError: a model (policy, backbone, gold) cannot be found.
        TimeoutError: the human labeler's ``timeout_seconds`` passed.
    """
    prompts = _prompts(cfg)
    layout = RunLayout(Path(cfg.runs_dir) / cfg.name)
    if layout.config.exists() and yaml.safe_load(layout.config.read_text()) != config_to_dict(cfg):
        print(
            f"[rlhfkit] note: the config differs from {layout.config}; finished stages are kept as they are"
        )
    save_config(cfg, layout.config)
    per_round = cfg.candidates.prompts_per_round
    stages = _Stages()
    gold_path = cfg.simulated.gold_reward_model
    if cfg.labeler == "simulated" and cfg.simulated.self_play.train_records:
        gold_path = _self_play_gold(cfg, layout, prompts[: cfg.rounds * per_round], stages)
    gold = functools.cache(
        lambda: RewardScorer.load(gold_path, cfg.simulated.max_length, cfg.reward.eval_batch_size)
    )
    for r in range(1, cfg.rounds + 1):
        _round(cfg, layout, r, prompts[(r - 1) * per_round : r * per_round], stages, gold, gold_path)
    records = read_jsonl(layout.records)
    print(format_records(records))
    return records


def _prompts(cfg: LoopConfig) -> list:
    """The distinct prompts of the training split, in split order (rounds take consecutive slices)."""
    train, _ = load_split(cfg.data, load_prompts)
    distinct = list({json.dumps(p.prompt, sort_keys=True): p.prompt for p in train}.values())
    need = cfg.rounds * cfg.candidates.prompts_per_round
    if len(distinct) < need:
        raise ConfigError(
            f"{cfg.data.path}: {len(distinct)} distinct training prompts, but rounds x "
            f"candidates.prompts_per_round = {cfg.rounds} x {cfg.candidates.prompts_per_round} = {need} "
            "are needed (no prompt is used twice)"
        )
    return distinct


def _self_play_gold(cfg: LoopConfig, layout: RunLayout, used: list, stages: _Stages) -> str:
    """Make the self-play pairs, train the gold model on them and measure it (``rlhfkit.loop.self_play``);
    returns the gold model's folder."""
    paths = layout.gold

    def pairs() -> None:
        train, held_out = self_play_examples(cfg, used)
        write_jsonl(layout.gold_heldout, (p.to_dict() for p in self_play_pairs(cfg, held_out, cfg.seed + 1)))
        write_jsonl(paths.pairs, (p.to_dict() for p in self_play_pairs(cfg, train, cfg.seed)))

    def accuracy() -> None:
        value = write_gold_accuracy(cfg, layout)
        print(f"[rlhfkit] gold model: the human response wins on {value:.3f} of held-out self-play pairs")

    def reward() -> None:
        train_reward(gold_reward_config(cfg, layout))

    stages.run("self-play pairs", paths, 0, paths.pairs.exists(), [], pairs)
    stages.run("reward", paths, 0, read_summary(paths.reward) is not None, [("self-play pairs", 0)], reward)
    stages.run("accuracy", paths, 0, layout.gold_accuracy.exists(), [("reward", 0)], accuracy)
    return str(paths.reward)


def _round(
    cfg: LoopConfig,
    layout: RunLayout,
    r: int,
    prompts: list,
    stages: _Stages,
    gold: Callable,
    gold_path: str,
) -> None:
    paths = layout.round(r)
    current = cfg.policy if r == 1 else str(layout.round(r - 1).policy)
    size = cfg.ensemble_size if cfg.strategy == "ensemble" else 1
    labels = [("label", i) for i in range(1, r + 1)]

    def sample() -> None:
        candidates = sample_candidates(current, prompts, cfg.candidates, cfg.seed + r, cfg.data.system_prompt)
        write_jsonl(paths.candidates, candidates)

    def label() -> None:
        simulated = cfg.labeler == "simulated"
        labeler = (
            SimulatedLabeler(gold(), cfg.simulated.mode, cfg.simulated.noise, cfg.simulated.seed)
            if simulated
            else HumanLabeler(cfg.human, cfg.name)
        )
        write_jsonl(paths.labels, labeler.label(r, read_jsonl(paths.selected)))

    def train_policy() -> None:
        data = write_pairs(layout, r) if cfg.method == "dpo" else None
        POLICY_TRAINERS[cfg.method](policy_config(cfg, r, paths, current, data))

    def record() -> None:
        simulated = cfg.labeler == "simulated"
        heldout = heldout_pairs(cfg, layout, gold()) if simulated else []
        rec = round_record(cfg, layout, r, gold() if simulated else None, heldout)
        replace_record(layout.records, rec)
        print(format_records([rec], header=False))

    # the reward models that select this round's pairs (none for random selection)
    previous = [(_member_stage(m), r - 1) for m in range(size if MIN_MEMBERS[cfg.strategy] else 0)]
    stages.run("candidates", paths, r, paths.candidates.exists(), [("policy", r - 1)], sample)
    stages.run(
        "select",
        paths,
        r,
        paths.selected.exists(),
        [("candidates", r), *previous],
        lambda: _select(cfg, layout, r),
    )
    stages.run("label", paths, r, paths.labels.exists(), [("select", r)], label)
    for m in range(size):
        stages.run(
            _member_stage(m),
            paths,
            r,
            read_summary(paths.member(m)) is not None,
            labels,
            lambda m=m: train_reward(reward_config(cfg, paths, m, write_pairs(layout, r))),
        )
    policy_inputs = [("policy", r - 1), ("reward", r), *(labels if cfg.method == "dpo" else [])]
    stages.run("policy", paths, r, read_summary(paths.policy) is not None, policy_inputs, train_policy)
    stages.run(
        "eval",
        paths,
        r,
        read_summary(paths.eval) is not None,
        [("policy", r), ("reward", r)],
        lambda: evaluate(eval_config(cfg, paths, gold_path if cfg.labeler == "simulated" else None)),
    )
    recorded = {rec["round"] for rec in read_jsonl(layout.records)} if layout.records.exists() else set()
    stages.run("record", paths, r, r in recorded, [("eval", r), ("reward", r), ("label", r)], record)


def _selectors(cfg: LoopConfig, layout: RunLayout, r: int) -> list[str]:
    """The reward models that score round r's candidates: the previous round's (ensemble), or in round 1
    ``initial_reward_model`` if given."""
    if r == 1:
        return [cfg.initial_reward_model] if cfg.initial_reward_model else []
    size = cfg.ensemble_size if cfg.strategy == "ensemble" else 1
    return [str(path) for path in layout.round(r - 1).members(size)]


def _select(cfg: LoopConfig, layout: RunLayout, r: int) -> None:
    paths = layout.round(r)
    candidates = read_jsonl(paths.candidates)
    pairs = candidate_pairs([c["responses"] for c in candidates])
    if not pairs:
        reason = (
            "every pair of responses is identical or has an empty response; "
            "raise candidates.sampling.temperature"
        )
        raise DataError(str(paths.candidates), None, "responses", reason)
    members = _selectors(cfg, layout, r) if MIN_MEMBERS[cfg.strategy] else []
    strategy = cfg.strategy if len(members) >= MIN_MEMBERS[cfg.strategy] else "random"
    if strategy != cfg.strategy:
        print(
            f"[rlhfkit] round {r}: {cfg.strategy} selection needs {MIN_MEMBERS[cfg.strategy]} reward "
            f"model(s), {len(members)} so far: this round's pairs are chosen at random"
        )
        members = []
    if len(pairs) < cfg.labels_per_round:
        print(f"[rlhfkit] round {r}: {len(pairs)} distinct candidate pairs, fewer than labels_per_round")
    p = member_probs(members, candidates, pairs, cfg.reward.max_length, cfg.reward.eval_batch_size)  # (M, N)
    selection = select(strategy, p, cfg.labels_per_round, seed=cfg.seed + r)
    write_jsonl(paths.selected, selected_records(candidates, pairs, selection, strategy))


def format_records(records: list[dict[str, Any]], header: bool = True) -> str:
    """A plain-text table of ``loop.jsonl`` records."""

    def num(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = []
    if header:
        lines.append(
            f"{'round':>5}{'labels':>8}{'rm acc':>8}{'proxy':>8}{'gold':>8}{'KL':>7}"
            f"{'win rate vs initial':>24}{'wall s':>8}"
        )
    for rec in records:
        win = f"{num(rec['win_rate'])} [{num(rec['win_rate_low'])}, {num(rec['win_rate_high'])}]"
        lines.append(
            f"{rec['round']:>5}{rec['labels_total']:>8}{num(rec['reward_heldout_accuracy']):>8}"
            f"{num(rec['proxy_score']):>8}{num(rec['gold_score']):>8}{num(rec['kl'], 2):>7}{win:>24}"
            f"{rec['wall_seconds']:>8.0f}"
        )
    return "\n".join(lines)
