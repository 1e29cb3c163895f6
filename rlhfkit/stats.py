"""The statistics eval, the report and the feedback app share: win rates and paired differences with
bootstrap intervals, the Wilson interval of a proportion, and inter-rater agreement. numpy and the
standard library only; no torch.

## Win rates and paired differences

Paired win rate of system A over system B, with a percentile-bootstrap confidence interval.

Notation: n prompts; ``scores_a[i]`` and ``scores_b[i]`` judge the two systems' responses to
prompt i (a reward-model score, a judge's rating, ...). Per prompt the outcome is

    o_i = 1 if a_i > b_i,  0.5 if a_i == b_i,  0 otherwise          # (n,)

and the win rate is mean(o). The interval is the percentile bootstrap (Efron & Tibshirani 1993,
"An Introduction to the Bootstrap", ch. 13): resample the n outcomes with replacement ``n_boot``
times, take the mean of each resample, and report the (1 - c)/2 and 1 - (1 - c)/2 percentiles of
those means for confidence c. Resampling prompts (not individual scores) keeps the pairing.

With several samples per prompt (:func:`paired_comparison`), sample j of A is paired with sample j of
B on the same prompt, each prompt's outcomes and score differences are averaged over its samples, and the
bootstrap resamples prompts, so the interval reflects the number of prompts, not of samples.

A share pooled over clusters of unequal size (:func:`bootstrap_ratio_ci`: agreeing labeler pairs over
all labeler pairs, a unit judged by 10 labelers giving 45 pairs) resamples the clusters, not the pairs:
the ratio of the resampled sums (the cluster bootstrap; Davison & Hinkley 1997, "Bootstrap Methods and
their Application", section 3.8).

## Agreement between raters

The unit of analysis is one thing several raters judged (the app: one pair of responses of one item),
mapped to ``{rater: nominal value}`` (:data:`Units`).

- **Pairwise agreement**: over every unit and every two raters who both labelled it, the share that
  gave the same value. Per rater: over the pairs that include them.
- **Krippendorff's alpha** (nominal; Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"),
  over units with at least two values::

      alpha = 1 - D_o / D_e
      D_o = 1/n * sum_u 1/(m_u - 1) * sum_{a != b in u} [v_ua != v_ub]     (observed disagreement)
      D_e = 1/(n (n - 1)) * sum_{c != k} n_c n_k                          (expected by chance)

  with m_u the values in unit u, n = sum_u m_u, n_c the number of values equal to c. D_o is the mean,
  over every value, of the share of the other values in its unit that differ from it. Per rater,
  D_o is that mean over the rater's own values only, and D_e is the project's: alpha_a < alpha
  says the rater disagrees with the others more than the average rater does. Alpha is None
  when it is undefined (no unit with two values, or every value the same).
- **Krippendorff's alpha, interval metric** (:func:`krippendorff_alpha_interval`; Krippendorff 2011,
  section "interval metric"), for numeric values such as a 1-9 rating: the same ratio with the squared
  difference in place of ``[v != w]``::

      D_o = 1/n * sum_u 1/(m_u - 1) * sum_{a != b in u} (v_ua - v_ub)^2
      D_e = 1/(n (n - 1)) * sum_{i != j} (v_i - v_j)^2                  (over all n pairable values)

  so that a disagreement of 1 point on the scale costs less than one of 4 points.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "wilson_interval",
    "pairwise_agreement",
    "krippendorff_alpha",
    "krippendorff_alpha_interval",
    "Units",
    "WinRate",
    "win_rate",
    "bootstrap_mean_ci",
    "bootstrap_ratio_ci",
    "PairedComparison",
    "paired_comparison",
    "length_slope",
    "length_adjusted_difference",
]

Units = Mapping[tuple, Mapping[str, str]]  # unit -> {rater: value}

# Resample in chunks so memory stays ~ _CHUNK_ELEMENTS * 8 bytes whatever n and n_boot are.
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class WinRate:
    """Win rate of A over B (ties count half) with its bootstrap interval [low, high]."""

    rate: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int
    n: int

    def __str__(self) -> str:
        return (
            f"{self.rate:.2f} [{self.low:.2f}, {self.high:.2f}] "
            f"(n={self.n}: {self.wins} W / {self.ties} T / {self.losses} L)"
        )


def bootstrap_mean_ci(
    values, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its percentile-bootstrap interval.

    Efron & Tibshirani (1993), "An Introduction to the Bootstrap", ch. 13 (percentile interval).
    Draws ``n_boot`` resamples of size n with replacement from ``numpy.random.default_rng(seed)``.
    """
    x = np.asarray(values, dtype=np.float64)  # (n,)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("values is empty")
    if np.isnan(x).any():
        raise ValueError("values contain NaN")
    means = _bootstrap(n, n_boot, seed, confidence, lambda idx: x[idx].mean(axis=1))
    return float(x.mean()), *means


def _bootstrap(n: int, n_boot, seed: int, confidence: float, statistic) -> tuple[float, float]:
    """(low, high): the percentile interval of ``statistic(idx)`` over ``n_boot`` resamples, ``idx`` a
    (rows, n) array of indices drawn with replacement (in chunks) and ``statistic`` giving (rows,)."""
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n_boot = int(n_boot)

    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot, dtype=np.float64)  # (n_boot,)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, rows):
        stop = min(start + rows, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))  # (rows, n) prompt indices
        stats[start:stop] = statistic(idx)

    alpha = 1.0 - confidence
    low, high = np.percentile(stats, [100.0 * alpha / 2, 100.0 * (1.0 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ratio_ci(
    numerators, denominators, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(ratio, low, high): ``sum(numerators) / sum(denominators)`` and its percentile-bootstrap interval
    over the n clusters (element i of each is cluster i), as :func:`bootstrap_mean_ci` draws them: a
    cluster bootstrap for a share pooled over clusters of unequal size (agreeing labeler pairs over all
    labeler pairs, each unit a cluster). A resample whose denominators sum to 0 counts as ratio 0.

    Raises:
        ValueError: unpaired, empty or non-1-D input, NaN, a negative denominator or a zero total.
    """
    a = np.asarray(numerators, dtype=np.float64)  # (n,)
    b = np.asarray(denominators, dtype=np.float64)  # (n,)
    if a.ndim != 1 or a.shape != b.shape or a.shape[0] == 0:
        raise ValueError(
            f"numerators and denominators must be paired non-empty 1-D, got {a.shape}, {b.shape}"
        )
    if np.isnan(a).any() or np.isnan(b).any() or (b < 0).any() or b.sum() == 0:
        raise ValueError("denominators must be >= 0 with a positive sum, and nothing NaN")

    def ratio(idx):
        den = b[idx].sum(axis=1)
        return np.divide(a[idx].sum(axis=1), den, out=np.zeros_like(den), where=den > 0)

    return float(a.sum() / b.sum()), *_bootstrap(a.shape[0], n_boot, seed, confidence, ratio)


def win_rate(scores_a, scores_b, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> WinRate:
    """How often system A beats system B on the same n prompts (ties count 0.5), with a bootstrap CI.

    ``scores_a`` and ``scores_b`` are paired: element i of each scores the response to prompt i.
    Raises ValueError for a length mismatch, empty input or NaN scores.
    """
    a = np.asarray(scores_a, dtype=np.float64)  # (n,)
    b = np.asarray(scores_b, dtype=np.float64)  # (n,)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"scores_a and scores_b must be paired, got lengths {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] == 0:
        raise ValueError("no scores: need at least one prompt")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("scores contain NaN")

    outcomes = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))  # (n,)
    wins = int((a > b).sum())
    ties = int((a == b).sum())
    n = int(a.shape[0])
    rate, low, high = bootstrap_mean_ci(outcomes, n_boot=n_boot, seed=seed, confidence=confidence)
    return WinRate(rate=rate, low=low, high=high, wins=wins, ties=ties, losses=n - wins - ties, n=n)


@dataclass(frozen=True)
class PairedComparison:
    """A against B on the same prompts: the win rate (ties half) and the mean score difference A - B,
    each with its percentile-bootstrap interval over prompts; ``n`` prompts, ``k`` samples each."""

    win_rate: float
    win_low: float
    win_high: float
    diff: float
    diff_low: float
    diff_high: float
    n: int
    k: int


def paired_comparison(
    scores_a,
    scores_b,
    samples_per_prompt: int = 1,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """Win rate and paired mean score difference of A over B, with bootstrap intervals over prompts.

    Notation: n prompts, k samples per prompt; ``scores_a`` and ``scores_b`` are (n * k,), prompt-major
    (element i * k + j is sample j of prompt i). Per prompt i:

        o_i = mean_j [1 if a_ij > b_ij, 0.5 if equal, else 0]        # (n,) outcomes
        d_i = mean_j (a_ij - b_ij)                                    # (n,) paired differences

    The win rate is mean(o), the score difference mean(d); both intervals are
    :func:`bootstrap_mean_ci` of those n per-prompt values (the same resampled prompts for both, as the
    same ``seed`` draws the same indices).

    Raises:
        ValueError: unpaired or empty scores, NaN, or a length that is not a multiple of k.
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores must be paired 1-D arrays, got shapes {a.shape} and {b.shape}")
    if isinstance(samples_per_prompt, bool) or samples_per_prompt < 1 or a.shape[0] % samples_per_prompt:
        raise ValueError(
            f"{a.shape[0]} scores are not a whole number of prompts x {samples_per_prompt} samples"
        )
    if a.shape[0] == 0:
        raise ValueError("no scores: need at least one prompt")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("scores contain NaN")
    k = int(samples_per_prompt)
    a, b = a.reshape(-1, k), b.reshape(-1, k)  # (n, k)
    outcomes = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)).mean(1)  # (n,)
    diffs = (a - b).mean(1)  # (n,)
    rate, low, high = bootstrap_mean_ci(outcomes, n_boot=n_boot, seed=seed, confidence=confidence)
    diff, diff_low, diff_high = bootstrap_mean_ci(diffs, n_boot=n_boot, seed=seed, confidence=confidence)
    return PairedComparison(rate, low, high, diff, diff_low, diff_high, n=a.shape[0], k=k)


def length_slope(scores, lengths) -> float:
    """The least-squares slope b of score = a + b * length over one system's responses (score units per
    length unit); 0 when the lengths do not vary.

    Raises:
        ValueError: unpaired or empty input.
    """
    y = np.asarray(scores, dtype=np.float64)
    x = np.asarray(lengths, dtype=np.float64)
    if y.ndim != 1 or y.shape != x.shape or y.shape[0] == 0:
        raise ValueError(f"scores and lengths must be paired 1-D arrays, got shapes {y.shape} and {x.shape}")
    var = x.var()
    return 0.0 if var == 0 else float(((x - x.mean()) * (y - y.mean())).mean() / var)


def length_adjusted_difference(
    scores_a, lengths_a, scores_b, lengths_b, samples_per_prompt: int = 1, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, float]:
    """The paired score difference A - B at equal length: how much of a gain is not explained by length.

    A judge that prefers shorter (or longer) responses rewards a policy that only changed its length.
    With b the slope of score on length among B's responses (:func:`length_slope`; B is the baseline, so
    the slope is not fitted to the tuned policy), each score is adjusted to ``score - b * length`` and
    the paired difference of the adjusted scores is taken as in :func:`paired_comparison`:

        d_i = mean_j [(a_ij - b * la_ij) - (b_ij - b * lb_ij)]           # (n,)

    (a regression adjustment in the spirit of AlpacaEval's length-controlled win rates, Dubois et al.
    2024). Returns ``(b, mean(d), low, high)``, the interval the percentile bootstrap over prompts.

    Raises:
        ValueError: as :func:`paired_comparison`, or lengths not paired with the scores.
    """
    slope = length_slope(scores_b, lengths_b)
    la, lb = np.asarray(lengths_a, dtype=np.float64), np.asarray(lengths_b, dtype=np.float64)
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if la.shape != a.shape:
        raise ValueError(f"lengths_a {la.shape} are not paired with scores_a {a.shape}")
    cmp = paired_comparison(a - slope * la, b - slope * lb, samples_per_prompt, n_boot, seed)
    return slope, cmp.diff, cmp.diff_low, cmp.diff_high


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% for z = 1.96); None when n = 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pairwise_agreement(units: Units) -> tuple[float | None, dict[str, float | None]]:
    """``(overall, {annotator: theirs})``: shares of agreeing annotator pairs (None where there are none)."""
    agree = total = 0
    mine: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for values in units.values():
        people = sorted(values)
        for x in range(len(people)):
            for y in range(x + 1, len(people)):
                same = int(values[people[x]] == values[people[y]])
                agree, total = agree + same, total + 1
                for who in (people[x], people[y]):
                    mine[who][0] += same
                    mine[who][1] += 1
    per = {who: a / t for who, (a, t) in mine.items()}
    return (agree / total if total else None), per


def krippendorff_alpha(units: Units) -> tuple[float | None, dict[str, float | None]]:
    """``(alpha, {annotator: alpha_a})``, nominal, as defined in the module docstring."""
    counts: Counter[str] = Counter()
    disagreement: dict[str, list[float]] = defaultdict(list)  # annotator -> D for each of their values
    for values in units.values():
        m = len(values)
        if m < 2:
            continue
        counts.update(values.values())
        for who, v in values.items():
            others = sum(1 for w, u in values.items() if w != who and u != v)
            disagreement[who].append(others / (m - 1))
    n = sum(counts.values())
    chance = sum(counts[c] * counts[k] for c in counts for k in counts if c != k)
    if n < 2 or chance == 0:
        return None, {who: None for who in disagreement}
    expected = chance / (n * (n - 1))
    observed = sum(sum(d) for d in disagreement.values()) / n
    per = {who: 1 - (sum(d) / len(d)) / expected for who, d in disagreement.items()}
    return 1 - observed / expected, per


def krippendorff_alpha_interval(units: Mapping[tuple, Mapping[str, float]]) -> float | None:
    """Krippendorff's alpha with the interval metric (module docstring) over units of numeric values
    ``{unit: {rater: value}}``; units with fewer than two values are left out. None when undefined (no
    unit with two values, or every value the same)."""
    groups = [np.asarray(list(v.values()), dtype=np.float64) for v in units.values() if len(v) >= 2]
    if not groups:
        return None
    values = np.concatenate(groups)  # (n,) every pairable value
    n = values.shape[0]
    # sum over ordered pairs i != j of (x_i - x_j)^2 = 2 n sum (x - mean)^2
    expected = 2 * n * ((values - values.mean()) ** 2).sum() / (n * (n - 1))
    if expected == 0:
        return None
    observed = sum(2 * len(g) * ((g - g.mean()) ** 2).sum() / (len(g) - 1) for g in groups) / n
    return float(1 - observed / expected)
