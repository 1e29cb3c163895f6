"""Tests for rlhfkit.eval.winrate, with the outcomes worked out by hand."""

import numpy as np
import pytest

from rlhfkit.stats import (
    WinRate,
    bootstrap_mean_ci,
    bootstrap_ratio_ci,
    krippendorff_alpha,
    krippendorff_alpha_interval,
    length_adjusted_difference,
    length_slope,
    paired_comparison,
    win_rate,
)


def test_hand_computed_rate_and_counts():
    # a = [3, 1, 2, 2], b = [1, 2, 2, 0]
    # 3>1 win (1), 1<2 loss (0), 2==2 tie (0.5), 2>0 win (1) -> mean = 2.5 / 4 = 0.625
    wr = win_rate([3, 1, 2, 2], [1, 2, 2, 0])
    assert wr.rate == pytest.approx(0.625)
    assert (wr.wins, wr.ties, wr.losses, wr.n) == (2, 1, 1, 4)
    assert 0.0 <= wr.low <= wr.rate <= wr.high <= 1.0


def test_all_wins_has_degenerate_interval():
    wr = win_rate([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert (wr.rate, wr.low, wr.high) == (1.0, 1.0, 1.0)
    assert (wr.wins, wr.ties, wr.losses) == (3, 0, 0)


def test_all_ties_is_one_half():
    wr = win_rate([1, 1], [1, 1])
    assert (wr.rate, wr.low, wr.high) == (0.5, 0.5, 0.5)


def test_interval_contains_rate_and_stays_in_unit_range():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1.0, 200), rng.normal(0.0, 1.0, 200)
    wr = win_rate(a, b)
    assert 0.0 <= wr.low < wr.rate < wr.high <= 1.0
    # Normal-approximation half-width for a proportion near 0.6 with n=200 is ~1.96*0.035 = 0.068.
    assert 0.04 < (wr.high - wr.low) / 2 < 0.10


def test_same_seed_same_interval_other_seed_differs():
    a = [3, 1, 2, 2, 5, 0, 1, 4]
    b = [1, 2, 2, 0, 4, 1, 1, 1]
    assert win_rate(a, b, seed=3) == win_rate(a, b, seed=3)
    intervals = {(w.low, w.high) for w in (win_rate(a, b, n_boot=50, seed=s) for s in range(5))}
    assert len(intervals) > 1


def test_higher_confidence_gives_wider_interval():
    a, b = [3, 1, 2, 2, 5, 0, 1, 4], [1, 2, 2, 0, 4, 1, 1, 1]
    narrow, wide = win_rate(a, b, confidence=0.5), win_rate(a, b, confidence=0.99)
    assert wide.low <= narrow.low and narrow.high <= wide.high


def test_str_format():
    wr = WinRate(rate=0.62, low=0.53, high=0.71, wins=38, ties=3, losses=23, n=64)
    assert str(wr) == "0.62 [0.53, 0.71] (n=64: 38 W / 3 T / 23 L)"


def test_bootstrap_mean_ci_matches_percentiles_of_resampled_means():
    values = np.array([0.0, 1.0, 0.5, 1.0])
    mean, low, high = bootstrap_mean_ci(values, n_boot=500, seed=7, confidence=0.9)
    assert mean == pytest.approx(0.625)
    # Same draws by hand: 500 resamples of 4 indices from default_rng(7).
    idx = np.random.default_rng(7).integers(0, 4, size=(500, 4))
    means = values[idx].mean(axis=1)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [5.0, 95.0])))


@pytest.mark.parametrize(
    "a, b, match",
    [
        ([1, 2], [1], "paired"),
        ([], [], "no scores"),
        ([1.0, float("nan")], [0.0, 0.0], "NaN"),
        ([1.0, 0.0], [float("nan"), 0.0], "NaN"),
        ([[1, 2]], [[1, 2]], "1-D"),
    ],
)
def test_win_rate_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        win_rate(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n_boot": 0}, "n_boot"), ({"confidence": 1.0}, "confidence"), ({"confidence": 0.0}, "confidence")],
)
def test_bootstrap_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_mean_ci([1.0, 0.0], **kwargs)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_mean_ci([])


def test_paired_comparison_by_hand_one_sample():
    # a = [3, 1, 2, 2], b = [1, 2, 2, 0]: outcomes [1, 0, 0.5, 1] -> 0.625; diffs [2, -1, 0, 2] -> 0.75
    cmp = paired_comparison([3, 1, 2, 2], [1, 2, 2, 0], n_boot=500, seed=1)
    assert cmp.win_rate == pytest.approx(0.625)
    assert cmp.diff == pytest.approx(0.75)
    assert (cmp.n, cmp.k) == (4, 1)
    assert cmp.win_low <= cmp.win_rate <= cmp.win_high
    assert cmp.diff_low <= cmp.diff <= cmp.diff_high
    # the interval is the bootstrap of the per-prompt values
    assert (cmp.diff, cmp.diff_low, cmp.diff_high) == bootstrap_mean_ci([2, -1, 0, 2], n_boot=500, seed=1)


def test_paired_comparison_averages_samples_within_a_prompt():
    # 2 prompts x 2 samples, prompt-major.
    # prompt 0: a = [1, 0], b = [0, 0] -> outcomes [1, 0.5] -> 0.75; diffs [1, 0] -> 0.5
    # prompt 1: a = [0, 5], b = [2, 1] -> outcomes [0, 1]   -> 0.5;  diffs [-2, 4] -> 1.0
    # win rate = (0.75 + 0.5) / 2 = 0.625; diff = (0.5 + 1.0) / 2 = 0.75
    cmp = paired_comparison([1, 0, 0, 5], [0, 0, 2, 1], samples_per_prompt=2, n_boot=300)
    assert (cmp.win_rate, cmp.diff, cmp.n, cmp.k) == (pytest.approx(0.625), pytest.approx(0.75), 2, 2)
    # resampling prompts, the win-rate means can only be 0.5, 0.625 or 0.75
    assert {cmp.win_low, cmp.win_high} <= {0.5, 0.625, 0.75}


def test_paired_comparison_rejects_bad_input():
    with pytest.raises(ValueError, match="paired"):
        paired_comparison([1, 2], [1])
    with pytest.raises(ValueError, match="whole number"):
        paired_comparison([1, 2, 3], [1, 2, 3], samples_per_prompt=2)
    with pytest.raises(ValueError, match="NaN"):
        paired_comparison([1, float("nan")], [1, 2])


def test_length_adjusted_difference_by_hand():
    # baseline B: scores [1, 2, 3] at lengths [3, 2, 1]: slope = cov / var = (-2/3) / (2/3) = -1
    # (every token costs 1 point). A: scores [3, 3, 4] at lengths [1, 1, 0]: raw diffs [2, 1, 1],
    # mean 4/3; adjusted (score + length): A [4, 4, 4], B [4, 4, 4] -> the gain is all length: 0
    assert length_slope([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    slope, diff, low, high = length_adjusted_difference(
        [3, 3, 4], [1, 1, 0], [1, 2, 3], [3, 2, 1], n_boot=200
    )
    assert paired_comparison([3, 3, 4], [1, 2, 3]).diff == pytest.approx(4 / 3)
    assert (slope, diff, low, high) == (
        pytest.approx(-1.0),
        pytest.approx(0.0),
        pytest.approx(0.0),
        pytest.approx(0.0),
    )
    # a gain at the same length survives the adjustment: A = B + 1 everywhere, same lengths
    _, diff, low, _ = length_adjusted_difference([2, 3, 4], [3, 2, 1], [1, 2, 3], [3, 2, 1], n_boot=200)
    assert diff == pytest.approx(1.0) and low == pytest.approx(1.0)
    assert length_slope([1, 2], [5, 5]) == 0.0  # no length variation: nothing to adjust


def test_interval_alpha_by_hand():
    # unit a {2, 4, 8}: squared differences 4 + 36 + 16 = 56 per unordered pair, 112 ordered, / (3 - 1)
    # = 56; unit b {7, 9}: 2 * 4 / 1 = 8; unit c has one value and is left out. n = 5, D_o = 64 / 5.
    # All 10 pairs of {2, 4, 8, 7, 9}: 4+36+25+49+16+9+25+1+1+4 = 170, ordered 340, D_e = 340 / 20 = 17.
    units = {("a",): {"W1": 2, "W2": 4, "W3": 8}, ("b",): {"W1": 7, "W2": 9}, ("c",): {"W1": 3}}
    assert krippendorff_alpha_interval(units) == pytest.approx(1 - (64 / 5) / 17)  # = 21/85


def test_interval_alpha_on_two_values_is_the_nominal_alpha():
    units = {
        (u,): {f"W{i}": int(v) for i, v in enumerate(values)} for u, values in enumerate(["001", "11", "10"])
    }
    nominal = {u: {w: str(v) for w, v in values.items()} for u, values in units.items()}
    assert krippendorff_alpha_interval(units) == pytest.approx(krippendorff_alpha(nominal)[0])


def test_interval_alpha_undefined():
    assert krippendorff_alpha_interval({("a",): {"W1": 3}}) is None  # no unit with two values
    assert krippendorff_alpha_interval({("a",): {"W1": 3, "W2": 3}}) is None  # every value the same


def test_bootstrap_ratio_ci_resamples_clusters():
    # clusters (1 of 3) and (1 of 1): the pooled share is 2/4; a resample of 2 clusters is 2/6, 2/4 or 1
    ratio, low, high = bootstrap_ratio_ci([1, 1], [3, 1], n_boot=400, seed=1)
    assert ratio == 0.5
    assert low == pytest.approx(1 / 3) and high == 1.0
    assert bootstrap_ratio_ci([2], [4], n_boot=10) == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("num", "den", "match"),
    [([1], [1, 2], "paired"), ([], [], "paired"), ([1], [0], "positive sum"), ([1], [-1], ">= 0")],
)
def test_bootstrap_ratio_ci_errors(num, den, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ratio_ci(num, den)
