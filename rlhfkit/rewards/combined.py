"""Several reward sources, weighted and summed; each source's scores are kept for the logs.

Notation:
    N  number of completions in a batch
    K  number of reward sources

``total[n] = sum_k weight_k * score_k[n]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhfkit.data.records import Prompt
from rlhfkit.rewards.sources import (
    FormatReward,
    FunctionReward,
    LengthReward,
    ModelReward,
    RewardError,
    RewardSource,
    check_scores,
)
from rlhfkit.rewards.spec import RewardSpec, check_reward_specs


@dataclass
class RewardBatch:
    """The scores of one batch.

    Attributes:
        per_source: source name -> ``(N,)`` raw (unweighted) scores, in the order of the sources.
        weights: source name -> weight.
        total: ``(N,)`` weighted sum over the sources.
    """

    per_source: dict[str, torch.Tensor]
    weights: dict[str, float]
    total: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Mean and std of the weighted sum (``reward``, ``reward_std``) and of each source's raw
        scores (``reward/<name>``, ``reward_std/<name>``); std is 0 for a single completion."""
        out = {"reward": self.total.mean().item(), "reward_std": _std(self.total)}
        for name, scores in self.per_source.items():
            out[f"reward/{name}"] = scores.mean().item()
            out[f"reward_std/{name}"] = _std(scores)
        return out


def _std(x: torch.Tensor) -> float:
    return x.std().item() if x.numel() > 1 else 0.0


class CombinedReward:
    """A weighted sum of reward sources: ``reward(prompts, completions) -> RewardBatch``.

    Raises (at construction):
        ValueError: no source, or two sources with the same name.
    """

    def __init__(self, sources: list[tuple[RewardSource, float]]):
        if not sources:
            raise ValueError("CombinedReward needs at least one reward source")
        names = [source.name for source, _ in sources]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"reward sources share the name(s) {', '.join(twice)}; name each one")
        self.sources = sources

    @property
    def names(self) -> list[str]:
        return [source.name for source, _ in self.sources]

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> RewardBatch:
        """Score every completion with every source and sum them with their weights.

        Raises:
            RewardError: a source raised, or returned a wrong count or a non-finite score (the message
                names the source and the prompt index).
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        per_source, weights = {}, {}
        total = torch.zeros(len(prompts), dtype=torch.float32)
        for source, weight in self.sources:
            scores = check_scores(source.name, source(prompts, completions), prompts)  # (N,)
            per_source[source.name] = scores
            weights[source.name] = weight
            total = total + weight * scores
        return RewardBatch(per_source, weights, total)


def build_source(spec: RewardSpec, dtype: str = "float32", max_length: int = 256) -> RewardSource:
    """The reward source a :class:`RewardSpec` describes (loads the model for ``kind: model``).

    Raises:
        RewardError: a function reward that cannot be imported.
        rlhfkit.models.loading.ModelNotFoundError: a reward model that cannot be found.
    """
    opts = dict(spec.options)
    if spec.kind == "model":
        return ModelReward(
            spec.path,
            dtype,
            int(opts.get("max_length", max_length)),
            int(opts.get("batch_size", 32)),
            name=spec.label,
        )
    if spec.kind == "function":
        return FunctionReward.from_path(spec.path, spec.label, opts)
    if spec.kind == "length":
        return LengthReward(opts.get("target", 200), opts.get("unit", "chars"), name=spec.label)
    if spec.kind == "format":
        return FormatReward(opts["pattern"], bool(opts.get("fullmatch", False)), name=spec.label)
    raise RewardError(f"unknown reward kind {spec.kind!r}")


def build_reward(specs: list[RewardSpec], dtype: str = "float32", max_length: int = 256) -> CombinedReward:
    """A :class:`CombinedReward` from config specs; ``max_length`` is the default reward-model input
    length (a model spec's ``options.max_length`` overrides it).

    Raises:
        ValueError: no spec, or two specs with the same name.
        RewardError, rlhfkit.models.loading.ModelNotFoundError: see :func:`build_source`.
    """
    check_reward_specs(specs)
    return CombinedReward([(build_source(spec, dtype, max_length), spec.weight) for spec in specs])
