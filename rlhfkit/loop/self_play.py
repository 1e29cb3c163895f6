"""The simulated labeler's gold model, learnt from human-written responses (self-play pairs).

A support table holds one human answer per customer message and no comparisons. To stand in for people
without a hand-made score, the loop can make comparisons out of it, as self-play fine-tuning does (SPIN;
Chen et al. 2024, "Self-Play Fine-Tuning Converts Weak Language Models to Strong Language Models": the
human response is preferred over the model's own): for each of ``self_play.train_records`` training
messages that no round uses, the pair ``{prompt, chosen: the human response, rejected: a sample of the
initial policy}``. A reward model trained on these pairs (Bradley-Terry, from ``self_play.backbone``) is
the gold model: it scores how much an answer looks like what the people who wrote the table would write,
rather than like the SFT model's drafts. The same pairs for ``self_play.heldout_records`` held-out
messages give its held-out accuracy (``gold/accuracy.json``) and the yardstick of each round's reward
model. It is a stand-in for people, not a measure of what they prefer: it knows nothing of guidelines
that the table itself does not follow.
"""

from __future__ import annotations

import json
from dataclasses import replace

from rlhfkit.config import ConfigError
from rlhfkit.data import PreferencePair, SFTExample, load_sft
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.loop.candidates import sample_candidates
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.layout import RunLayout, read_jsonl
from rlhfkit.loop.scoring import RewardScorer
from rlhfkit.trainers.reward import RewardConfig


def self_play_examples(cfg: LoopConfig, used: list) -> tuple[list[SFTExample], list[SFTExample]]:
    """The (train, held-out) rows that become self-play pairs: the last ``train_records`` training rows
    whose prompt is not in `used` (the rounds' prompts), and the first ``heldout_records`` held-out rows.

    Raises:
        rlhfkit.config.ConfigError: fewer unused training rows than ``train_records``.
    """
    spec = cfg.simulated.self_play
    train, held_out = load_split(cfg.data, load_sft)
    taken = {json.dumps(p, sort_keys=True) for p in used}
    free = [ex for ex in train if json.dumps(ex.prompt, sort_keys=True) not in taken]
    if len(free) < spec.train_records:
        raise ConfigError(
            f"{cfg.data.path}: {len(free)} training rows are left after the rounds' prompts, but "
            f"simulated.self_play.train_records is {spec.train_records}"
        )
    return free[len(free) - spec.train_records :], held_out[: spec.heldout_records]


def self_play_pairs(cfg: LoopConfig, examples: list[SFTExample], seed: int) -> list[PreferencePair]:
    """One pair per example: the human response chosen over one sample of the initial policy
    (``cfg.policy``, under ``data.system_prompt``), sampled with ``self_play.sampling``."""
    spec = cfg.simulated.self_play
    sampling = replace(cfg.candidates, sampling=spec.sampling, batch_size=spec.batch_size)
    prompts = [ex.prompt for ex in examples]
    samples = sample_candidates(cfg.policy, prompts, sampling, seed, cfg.data.system_prompt, k=1)
    return [
        PreferencePair(ex.prompt, ex.response, sample["responses"][0])
        for ex, sample in zip(examples, samples, strict=True)
    ]


def gold_reward_config(cfg: LoopConfig, layout: RunLayout) -> RewardConfig:
    """The gold model's training: the ``reward`` section's settings, from ``self_play.backbone``, on all
    of ``gold/pairs.jsonl`` (its held-out pairs are separate)."""
    data = DataConfig(path=str(layout.gold.pairs), format="trl", eval_fraction=0.0)
    backbone = cfg.simulated.self_play.backbone
    return replace(cfg.reward, model=backbone, output_dir=str(layout.gold.reward), data=data, seed=cfg.seed)


def write_gold_accuracy(cfg: LoopConfig, layout: RunLayout) -> float:
    """The gold model's accuracy on the held-out self-play pairs (the human response scored higher),
    written to ``gold/accuracy.json`` and returned."""
    pairs = [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in read_jsonl(layout.gold_heldout)]
    gold = RewardScorer.load(str(layout.gold.reward), cfg.simulated.max_length, cfg.reward.eval_batch_size)
    accuracy = gold.accuracy(pairs)
    tmp = layout.gold_accuracy.with_name(f".{layout.gold_accuracy.name}.tmp")
    tmp.write_text(json.dumps({"heldout_pairs": len(pairs), "accuracy": accuracy}, indent=2) + "\n")
    tmp.replace(layout.gold_accuracy)
    return accuracy
