"""How often labelers agree on a preference data set: the comparisons judged by several labelers.

The unit is one pair of responses to one prompt: ``(group, the two texts in sorted order)``, the group
being the record's ``group`` (the post id of a summarize-from-feedback comparison) or else its prompt,
so that two labelers shown the same two summaries in either order judge the same unit. A labeler is a
record's ``meta["worker"]``. Each judgement gives

- a nominal value: which of the two (in sorted order, ``"0"`` or ``"1"``) was preferred;
- for records with a 1-9 ``meta["confidence"]`` (:mod:`rlhfkit.data.tldr`: 1 = the first shown is
  definitely better, 9 = the second), that confidence turned to the sorted order: with s = |c - 5| the
  strength of preference for the chosen text, ``5 - s`` when the chosen text sorts first, else ``5 + s``.

Only units judged by two labelers or more count. Over them: pairwise agreement (the share of labeler
pairs within a unit that preferred the same text) with its 95% Wilson interval, Krippendorff's alpha on
the nominal choice and, where every judgement has a confidence, the interval alpha on the 1-9 scale
(:mod:`rlhfkit.stats`). The Wilson interval treats the labeler pairs as independent, which pairs of one
unit are not (a unit of 10 labelers gives 45 pairs); the cluster-bootstrap interval
(:func:`rlhfkit.stats.bootstrap_ratio_ci`, resampling units) does not, and is the one to quote when a
few units hold most of the pairs.

A labeler who judged the same unit twice keeps their first judgement; the others are counted in
``repeats``. Records without a worker are left out (``no_worker``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rlhfkit.data import PreferencePair
from rlhfkit.stats import (
    bootstrap_ratio_ci,
    krippendorff_alpha,
    krippendorff_alpha_interval,
    pairwise_agreement,
    wilson_interval,
)

__all__ = ["LabelAgreement", "label_agreement", "preference_units"]


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement over the units judged by several labelers (module docstring)."""

    units: int  # pairs judged by >= 2 labelers
    judgements: int  # judgements of those pairs
    labelers: int  # distinct labelers among them
    labeler_pairs: int  # sum over units of m (m - 1) / 2
    agreeing_pairs: int
    agreement: float | None  # agreeing_pairs / labeler_pairs
    agreement_low: float | None  # 95% Wilson interval
    agreement_high: float | None
    agreement_boot_low: float | None  # 95% cluster-bootstrap interval, resampling units
    agreement_boot_high: float | None
    alpha_nominal: float | None  # on which text was preferred
    alpha_interval: float | None  # on the 1-9 confidence (None without confidences)
    repeats: int = 0
    no_worker: int = 0

    def lines(self) -> list[str]:
        """The numbers, one per line, as `benchmarks/tldr_agreement.py` prints them."""
        wilson = (
            f" [{self.agreement_low:.3f}, {self.agreement_high:.3f}]" if self.agreement is not None else ""
        )
        boot = (
            f"; [{self.agreement_boot_low:.3f}, {self.agreement_boot_high:.3f}] (95% bootstrap "
            "over summary pairs)"
            if self.agreement_boot_low is not None
            else ""
        )
        return [
            f"pairs judged by >= 2 labelers: {self.units} ({self.judgements} judgements, "
            f"{self.labelers} labelers, {self.labeler_pairs} labeler pairs)",
            f"pairwise agreement: {_num(self.agreement)}{wilson} (95% Wilson, "
            f"{self.agreeing_pairs}/{self.labeler_pairs}){boot}",
            f"Krippendorff alpha, nominal (choice): {_num(self.alpha_nominal)}",
            f"Krippendorff alpha, interval (1-9 confidence): {_num(self.alpha_interval)}",
            f"repeated judgements left out: {self.repeats}; records without a worker: {self.no_worker}",
        ]


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def preference_units(
    pairs: Iterable[PreferencePair],
) -> tuple[dict[tuple, dict[str, str]], dict[tuple, dict[str, int | None]], int, int]:
    """``(choices, confidences, repeats, no_worker)``: ``{unit: {worker: "0" | "1"}}`` and
    ``{unit: {worker: confidence on the sorted order, or None}}`` for every unit (module docstring),
    including those judged once; the counts of repeated judgements and of records without a worker."""
    choices: dict[tuple, dict[str, str]] = {}
    confidences: dict[tuple, dict[str, int | None]] = {}
    repeats = no_worker = 0
    for pair in pairs:
        worker = (pair.meta or {}).get("worker")
        if worker is None:
            no_worker += 1
            continue
        texts = tuple(sorted((pair.chosen, pair.rejected)))
        unit = (pair.group if pair.group is not None else pair.prompt, texts)
        if worker in choices.setdefault(unit, {}):
            repeats += 1
            continue
        chosen = texts.index(pair.chosen)  # 0: the chosen text sorts first
        choices[unit][worker] = str(chosen)
        confidence = (pair.meta or {}).get("confidence")
        if confidence is not None:
            strength = abs(confidence - 5)
            confidence = 5 + strength if chosen else 5 - strength
        confidences.setdefault(unit, {})[worker] = confidence
    return choices, confidences, repeats, no_worker


def label_agreement(pairs: Iterable[PreferencePair], n_boot: int = 2000, seed: int = 0) -> LabelAgreement:
    """Agreement of the labelers of `pairs` over the units judged by two or more (module docstring);
    `n_boot` and `seed` are those of the cluster bootstrap."""
    all_choices, all_confidences, repeats, no_worker = preference_units(pairs)
    choices = {u: v for u, v in all_choices.items() if len(v) >= 2}
    per_unit = [pairwise_agreement({u: v})[0] for u, v in choices.items()]  # (units,) share agreeing
    sizes = [len(v) * (len(v) - 1) // 2 for v in choices.values()]  # (units,) labeler pairs
    n_pairs = sum(sizes)
    agreement, _ = pairwise_agreement(choices)
    agreeing = round(agreement * n_pairs) if agreement is not None else 0
    low, high = wilson_interval(agreeing, n_pairs) or (None, None)
    boot_low = boot_high = None
    if choices:
        agreed = [share * size for share, size in zip(per_unit, sizes, strict=True)]  # (units,)
        _, boot_low, boot_high = bootstrap_ratio_ci(agreed, sizes, n_boot, seed)
    confidences = {u: all_confidences[u] for u in choices}
    rated = all(c is not None for v in confidences.values() for c in v.values())
    return LabelAgreement(
        units=len(choices),
        judgements=sum(len(v) for v in choices.values()),
        labelers=len({w for v in choices.values() for w in v}),
        labeler_pairs=n_pairs,
        agreeing_pairs=agreeing,
        agreement=agreement,
        agreement_low=low,
        agreement_high=high,
        agreement_boot_low=boot_low,
        agreement_boot_high=boot_high,
        alpha_nominal=krippendorff_alpha(choices)[0],
        alpha_interval=krippendorff_alpha_interval(confidences) if rated and choices else None,
        repeats=repeats,
        no_worker=no_worker,
    )
