"""Repetition measures of responses, against counts made by hand."""

import pytest

from rlhfkit.eval.repetition import distinct_n, repeated_ngram_frac


def test_distinct_2_by_hand():
    # "a b a b": bigrams (a b), (b a), (a b) -> 2 distinct of 3; "c d": (c d) -> together 3 of 4
    assert distinct_n(["a b a b", "C d"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["one", ""], 2) == 1.0  # no bigrams at all


def test_repeated_4gram_share():
    looping = "I'd never meet any of those. I'd never meet any of those."
    assert repeated_ngram_frac([looping, "a b c d e f", "x"], 4) == pytest.approx(1 / 3)
    assert repeated_ngram_frac([], 4) == 0.0
