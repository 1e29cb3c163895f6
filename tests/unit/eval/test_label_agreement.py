"""Labeler agreement on summarize-from-feedback comparisons judged by several workers, worked out by hand:
units by post and pair of texts (either order), the 1-9 confidence turned to one order, single
judgements and repeats left out."""

from __future__ import annotations

import json

import pytest

from rlhfkit.data.tldr import load_tldr
from rlhfkit.eval.label_agreement import label_agreement, preference_units
from rlhfkit.stats import wilson_interval

A, B = " A short summary.", " B longer summary."  # A sorts first


def _rows(tldr_row):
    one = [(A, "sup1"), (B, "ref")]
    return [
        # post p1: W1 and W2 prefer A (confidence 2 and 4), W3 prefers B (8)
        tldr_row("p1", one, choice=0, worker="W1", confidence=2),
        tldr_row("p1", one, choice=0, worker="W2", confidence=4),
        tldr_row("p1", one, choice=1, worker="W3", confidence=8),
        tldr_row("p1", one, choice=1, worker="W1", confidence=9),  # a repeat: left out
        # post p2: both prefer B; W2 saw the two in the other order (choice 0, confidence 1 = B definitely)
        tldr_row("p2", one, choice=1, worker="W1", confidence=7),
        tldr_row("p2", one[::-1], choice=0, worker="W2", confidence=1),
        # post p3: one judgement only
        tldr_row("p3", one, choice=0, worker="W1"),
    ]


def _pairs(tmp_path, tldr_row):
    path = tmp_path / "tldr.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(tldr_row)))
    return load_tldr(path).records


def test_units_and_confidences_in_sorted_order(tmp_path, tldr_row):
    choices, confidences, repeats, no_worker = preference_units(_pairs(tmp_path, tldr_row))
    assert choices == {
        ("p1", (A, B)): {"W1": "0", "W2": "0", "W3": "1"},
        ("p2", (A, B)): {"W1": "1", "W2": "1"},
        ("p3", (A, B)): {"W1": "0"},
    }
    # W2 on p2: B (sorted second) with strength |1 - 5| = 4, so 5 + 4 = 9
    assert confidences[("p2", (A, B))] == {"W1": 7, "W2": 9}
    assert confidences[("p1", (A, B))] == {"W1": 2, "W2": 4, "W3": 8}
    assert (repeats, no_worker) == (1, 0)


def test_agreement_by_hand(tmp_path, tldr_row):
    report = label_agreement(_pairs(tmp_path, tldr_row), n_boot=400)
    assert (report.units, report.judgements, report.labelers) == (2, 5, 3)
    # labeler pairs: p1 (W1 W2 agree, W1 W3 and W2 W3 do not), p2 (W1 W2 agree): 2 of 4
    assert (report.agreeing_pairs, report.labeler_pairs, report.agreement) == (2, 4, 0.5)
    assert (report.agreement_low, report.agreement_high) == pytest.approx(wilson_interval(2, 4))
    # resampling the 2 units: 2/6, 2/4 or 2/2
    assert 1 / 3 <= report.agreement_boot_low <= 0.5 <= report.agreement_boot_high <= 1.0
    # nominal alpha on {0, 0, 1} and {1, 1}: n = 5, counts 2 x "0", 3 x "1", D_e = (2*3 + 3*2) / (5*4)
    # = 0.6; D_o = (1/2 + 1/2 + 2/2 + 0 + 0) / 5 = 0.4; alpha = 1 - 0.4 / 0.6 = 1/3
    assert report.alpha_nominal == pytest.approx(1 / 3)
    # interval alpha on {2, 4, 8} and {7, 9}: 1 - (64/5) / 17 = 21/85 (tests/unit/test_stats.py)
    assert report.alpha_interval == pytest.approx(21 / 85)
    assert report.repeats == 1
    assert any("0.500" in line for line in report.lines())


def test_no_pair_judged_twice_is_undefined(tmp_path, tldr_row):
    path = tmp_path / "once.jsonl"
    path.write_text(json.dumps(tldr_row("p1", [(A, "x"), (B, "y")])) + "\n")
    report = label_agreement(load_tldr(path).records)
    assert (report.units, report.labeler_pairs) == (0, 0)
    assert report.agreement is None and report.alpha_nominal is None and report.alpha_interval is None
    assert "undefined" in report.lines()[1]
