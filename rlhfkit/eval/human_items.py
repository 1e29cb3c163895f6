"""``rlhfkit annotate evaluate``: blind human evaluation items, each policy's response against the
baseline's on the same held-out prompts.

The baseline and every policy answer the same prompts with the same sampling settings and the same seed
(one response per prompt and policy, sampled with :func:`rlhfkit.rollout.items.sample_batches`, the
machinery of ``rlhfkit generate``); every response is scored by each reward-model judge given, so that
the judges' verdicts on the very items people label can be set beside theirs. The items are ordinary
comparison items, one per prompt and policy, baseline vs policy, shaped as the feedback app expects
(:mod:`rlhfkit.feedback.evaluation` reads them)::

    item meta       {"evaluation": {"baseline": "sft", "policy": "ppo"}}
    response meta   {"policy": "ppo", "path": "runs/hh-demo/ppo", "sampling": {...}, "scores": {...},
                     "has_eos": true}

with the baseline's response at position 0 and the policy's at 1. Annotators never see any metadata and
each sees the two responses in an order drawn for them, so nothing on the page says which policy wrote
which response. An item's id is a hash of its prompt, its position in the prompt list, both models'
paths and the sampling settings: running the same command again adds nothing.

Prompts come from a prompts file as ``rlhfkit generate`` reads it (``{"prompt"}`` records, preference
pairs, an HH file), or from a YAML config (``configs/hh-demo.yaml``): its ``data`` section's held-out
split, the prompts ``rlhfkit eval`` uses.

Python use::

    from rlhfkit.eval.human_items import EvaluationItemsConfig, evaluation_items
    items = evaluation_items(EvaluationItemsConfig(baseline="runs/hh-demo/sft",
                                                   policies=["runs/hh-demo/ppo"],
                                                   prompts="configs/hh-demo.yaml", limit=20,
                                                   judges=["runs/hh-demo/reward", "runs/hh-demo/judge"]))
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from rlhfkit.config import ConfigError, load_config, option
from rlhfkit.data import load_prompts
from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.data.records import Prompt
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.rewards import RewardSpec, build_source
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.rollout.items import load_sampler, sample_batches, sampling_record

CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class EvaluationItemsConfig:
    """Blind evaluation items: the baseline's and each policy's response to the same prompts."""

    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    baseline: str = option("runs/sft", "the policy to compare against (usually the SFT model)")
    policies: list[str] = option(["runs/ppo"], "the policies to evaluate, each against the baseline")
    prompts: str = option(
        "prompts.jsonl",
        "a prompts file as `rlhfkit generate` reads ({prompt} or preference records, HH), or a YAML "
        "config whose data section's held-out split gives the prompts",
    )
    limit: int | None = option(None, "use only the first N prompts (null: every one)")
    judges: list[str] = option(
        [], "reward model folders that score every response, named after their folders"
    )
    sampling: SamplingConfig = option(
        SamplingConfig, "how every policy samples its response (the same settings for each)"
    )
    use_chat_template: bool = option(True, "render prompts with each policy tokenizer's chat template")
    system_prompt: str | None = option(
        None, "system message rendered before every prompt (null: the one each policy was saved with)"
    )
    seed: int = option(0, "sampling seed, the same for every policy")
    batch_size: int = option(8, "prompts per sampling batch")
    reward_max_length: int = option(256, "judge tokens per dialogue (cut from the left)")
    skip_invalid: bool = option(False, "count and report bad prompt records instead of stopping at the first")

    def __post_init__(self):
        if not self.policies:
            raise ValueError("policies: give at least one policy to evaluate")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1 (or null); got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}")
        _names([self.baseline, *self.policies], "baseline and policies")
        _names(self.judges, "judges")


def policy_name(path: str) -> str:
    """What a model folder is called in items and tables: its last path component (``runs/x/ppo`` ->
    ``ppo``)."""
    return Path(path).name or str(path)


def _names(paths: list[str], what: str) -> list[str]:
    names = [policy_name(p) for p in paths]
    for name in names:
        if names.count(name) > 1:
            clash = [p for p in paths if policy_name(p) == name]
            raise ValueError(
                f"{what}: {', '.join(clash)} would all be called {name!r}; give each a folder of its own name"
            )
    return names


def read_prompts(cfg: EvaluationItemsConfig) -> list[Prompt]:
    """The first ``cfg.limit`` prompts of ``cfg.prompts`` (see the module docstring).

    Raises:
        rlhfkit.config.ConfigError: a YAML config that cannot be read or has no ``data`` section.
        rlhfkit.data.DataError: a bad prompt record (unless skipped), or no prompts.
        ValueError: an empty held-out split.
    """
    if Path(cfg.prompts).suffix in CONFIG_SUFFIXES:
        try:
            loaded = yaml.safe_load(Path(cfg.prompts).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{cfg.prompts}: cannot read the config ({err})") from None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("data"), dict):
            raise ConfigError(f"{cfg.prompts}: no data section (expected data: {{path: ..., ...}})")
        data = load_config(DataConfig, base=loaded["data"])
        if cfg.skip_invalid:
            data.skip_invalid = True
        _, held_out = load_split(data, load_prompts)
        if not held_out:
            raise ValueError(
                f"{cfg.prompts}: the held-out split of {data.path} is empty (data.eval_fraction)"
            )
        print(
            f"[rlhfkit] {len(held_out)} held-out prompts of {data.path} (the data section of {cfg.prompts})"
        )
        return [record.prompt for record in held_out][: cfg.limit]
    report = load_prompts(cfg.prompts, skip_invalid=cfg.skip_invalid)
    if report.skipped or report.filtered:
        print(f"[rlhfkit] {report.summary()}", flush=True)
    return [record.prompt for record in report.records][: cfg.limit]


@dataclass(frozen=True)
class Sampled:
    """One policy's responses, one per prompt: texts and EOS flags (in prompt order) and how they were
    sampled (`sampling_record`)."""

    texts: list[str]
    has_eos: list[bool]
    sampling: dict


def sample_policy(cfg: EvaluationItemsConfig, path: str, prompts: list[Prompt]) -> Sampled:
    """One response per prompt from the policy at `path`, with ``cfg.sampling`` and ``cfg.seed``.

    Raises:
        rlhfkit.errors.ModelNotFoundError: `path` cannot be found.
    """
    tokenizer, policy = load_sampler(path, cfg.system_prompt)
    texts, has_eos = [], []
    batches = sample_batches(
        policy,
        tokenizer,
        prompts,
        cfg.sampling,
        1,
        cfg.use_chat_template,
        cfg.seed,
        cfg.batch_size,
        desc=f"sample {policy_name(path)}",
    )
    for _, _, out in batches:
        texts += out.response_texts
        has_eos += [bool(e) for e in out.has_eos]
    return Sampled(texts, has_eos, sampling_record(tokenizer, cfg.sampling, cfg.use_chat_template, cfg.seed))


def judge_scores(cfg: EvaluationItemsConfig, prompts: list[Prompt], sampled: dict[str, Sampled]) -> dict:
    """``{path: {judge name: [score per prompt]}}``: every response scored by every judge (one judge
    loaded at a time).

    Raises:
        rlhfkit.errors.ModelNotFoundError: a judge folder cannot be found.
        rlhfkit.errors.RewardError: a judge returned unusable scores.
    """
    scores: dict[str, dict[str, list[float]]] = {path: {} for path in sampled}
    for path in cfg.judges:
        spec = RewardSpec(kind="model", path=path, name=policy_name(path))
        judge = build_source(spec, "float32", cfg.reward_max_length)
        for policy, responses in sampled.items():
            scores[policy][spec.label] = [float(s) for s in judge(prompts, responses.texts).tolist()]
        del judge
    return scores


def evaluation_items(cfg: EvaluationItemsConfig) -> list[ItemRecord]:
    """The evaluation items (module docstring): for each prompt, one item per policy, ``(baseline's
    response, policy's response)``, in prompt order then policy order.

    Raises:
        rlhfkit.data.DataError, rlhfkit.config.ConfigError: bad prompts (see `read_prompts`).
        rlhfkit.errors.ModelNotFoundError: a policy or judge cannot be found.
        ValueError: no prompts.
    """
    prompts = read_prompts(cfg)
    if not prompts:
        raise ValueError(f"{cfg.prompts}: no prompts")
    paths = [cfg.baseline, *cfg.policies]
    sampled = {path: sample_policy(cfg, path, prompts) for path in paths}
    scores = judge_scores(cfg, prompts, sampled)

    def response(path: str, i: int) -> ResponseRecord:
        meta = {
            "policy": policy_name(path),
            "path": str(path),
            "sampling": sampled[path].sampling,
            "scores": {judge: values[i] for judge, values in scores[path].items()},
            "has_eos": sampled[path].has_eos[i],
        }
        return ResponseRecord(sampled[path].texts[i], meta)

    items = []
    for i, prompt in enumerate(prompts):
        for path in cfg.policies:
            made_by = [{"path": str(p), **sampled[p].sampling} for p in (cfg.baseline, path)]
            key = json.dumps([prompt, *made_by, i], sort_keys=True)
            items.append(
                ItemRecord(
                    prompt,
                    (response(cfg.baseline, i), response(path, i)),
                    "eval:" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16],
                    {"evaluation": {"baseline": policy_name(cfg.baseline), "policy": policy_name(path)}},
                )
            )
    return items
