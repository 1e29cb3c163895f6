"""Agreement, Krippendorff's alpha and position bias against numbers worked out by hand."""

from __future__ import annotations

from datetime import datetime

import pytest

from rlhfkit.data.items import ResponseRecord
from rlhfkit.feedback.agreement import (
    krippendorff_alpha,
    pairwise_agreement,
    position_bias,
    project_stats,
    units_of,
    wilson_interval,
)
from rlhfkit.feedback.views import AnnotationView, ItemView

# u1: x and y agree; u2: they disagree; u3: x and y say tie, z disagrees.
UNITS = {
    "u1": {"x": ">", "y": ">"},
    "u2": {"x": ">", "y": "<"},
    "u3": {"x": "tie", "y": "tie", "z": ">"},
    "u4": {"x": ">"},  # a single value: pairable with nothing, ignored
}


def test_pairwise_agreement_by_hand():
    # annotator pairs: u1 (x,y) agree; u2 (x,y) differ; u3 (x,y) agree, (x,z) and (y,z) differ -> 2 / 5
    overall, per = pairwise_agreement(UNITS)
    assert overall == pytest.approx(2 / 5)
    # x is in u1 (agree), u2 (differ), u3 (agree with y, differ with z) -> 2 / 4; z: 0 / 2
    assert per == pytest.approx({"x": 2 / 4, "y": 2 / 4, "z": 0.0})


def test_krippendorff_alpha_by_hand():
    # Pairable values: u1 (>,>), u2 (>,<), u3 (tie,tie,>): n = 7; n_> = 4, n_< = 1, n_tie = 2.
    # D_o = 1/7 * [u1: 0 + u2: (1 + 1)/1 + u3: 4 disagreeing ordered pairs / 2] = 4/7
    # D_e = sum_{c != k} n_c n_k / (n (n-1)) = 2 * (4*1 + 4*2 + 1*2) / 42 = 28/42 = 2/3
    # alpha = 1 - (4/7) / (2/3) = 1/7
    alpha, per = krippendorff_alpha(UNITS)
    assert alpha == pytest.approx(1 / 7)
    # x: disagreement shares 0 (u1), 1 (u2), 1/2 (u3: y agrees, z not) -> D_o,x = 1/2 -> 1 - (1/2)/(2/3) = 1/4
    # z: 1 (u3: both others differ) -> 1 - 1/(2/3) = -1/2
    assert per == pytest.approx({"x": 0.25, "y": 0.25, "z": -0.5})


def test_alpha_is_undefined_without_variation_or_overlap():
    assert krippendorff_alpha({"u": {"x": ">", "y": ">"}}) == (None, {"x": None, "y": None})
    assert krippendorff_alpha({"u": {"x": ">"}}) == (None, {})
    perfect = {"u1": {"x": ">", "y": ">"}, "u2": {"x": "<", "y": "<"}}
    assert krippendorff_alpha(perfect)[0] == pytest.approx(1.0)


def _annotation(item_id, who, label, ranking, order, strength="clear"):
    return AnnotationView(0, item_id, who, label, ranking, order, strength, "", datetime(2026, 1, 1), None)


def test_position_bias_counts_left_wins():
    annotations = [
        _annotation(1, "x", "a_better", [0, 1], [0, 1]),  # left won
        _annotation(2, "x", "b_better", [0, 1], [1, 0]),  # shown [1, 0], 0 (right) won
        _annotation(3, "y", "a_better", [1, 0], [1, 0]),  # left won
        _annotation(4, "y", "tie", None, [0, 1], None),  # not a strict preference: not counted
    ]
    bias = position_bias(annotations)
    assert (bias["left_wins"], bias["judgements"], bias["rate"]) == (2, 3, pytest.approx(2 / 3))
    assert bias["per_annotator"]["x"]["rate"] == 0.5 and bias["per_annotator"]["y"]["rate"] == 1.0


def test_wilson_interval():
    # p = 0.5, n = 100, z = 1.96: centre 0.5,
    # half-width 1.96 * sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    low, high = wilson_interval(50, 100)
    half = 1.96 * (0.0025 + 1.96**2 / 40000) ** 0.5 / (1 + 1.96**2 / 100)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 10)[0] == 0.0


def test_project_stats_put_it_together():
    items = [ItemView(n, f"q{n}", "?", [ResponseRecord("a"), ResponseRecord("b")], None) for n in (1, 2)]
    annotations = [
        _annotation(1, "x", "a_better", [0, 1], [0, 1]),
        _annotation(1, "y", "b_better", [0, 1], [1, 0]),
        _annotation(2, "x", "tie", None, [0, 1], None),
    ]
    assert units_of(annotations, {1: 2, 2: 2}) == {(1, 0, 1): {"x": ">", "y": ">"}, (2, 0, 1): {"x": "tie"}}
    stats = project_stats(items, annotations, [], overlap=2)
    assert (stats["items"], stats["items_labelled"], stats["items_complete"]) == (2, 2, 1)
    assert stats["pairwise_agreement"] == 1.0
    assert stats["by_label"] == {"a_better": 1, "b_better": 1, "tie": 1}
    assert stats["annotators"]["x"]["labels"] == 2 and stats["annotators"]["y"]["left_win_rate"] == 0.0
