"""Labels in display letters -> canonical rankings in positions -> pairwise outcomes."""

from __future__ import annotations

import pytest

from rlhfkit.feedback.judgements import (
    InvalidJudgement,
    Judgement,
    left_won,
    letters_of,
    normalise,
    pair_outcomes,
    ranking_positions,
)


def test_pair_labels_become_rankings_of_letters():
    assert normalise(Judgement("a_better", "slight"), 2) == Judgement("a_better", "slight", ("A", "B"))
    assert normalise(Judgement("b_better", "strong", note="  why \n"), 2) == Judgement(
        "b_better", "strong", ("B", "A"), "why"
    )
    assert normalise(Judgement("tie"), 2) == Judgement("tie")
    assert normalise(Judgement("both_bad"), 5) == Judgement("both_bad")
    assert normalise(Judgement("ranking", "clear", ("B", "A")), 2).ranking == ("B", "A")


@pytest.mark.parametrize(
    ("judgement", "k", "message"),
    [
        (Judgement("better"), 2, "unknown label"),
        (Judgement("a_better"), 2, "needs a strength"),
        (Judgement("a_better", "huge"), 2, "needs a strength"),
        (Judgement("a_better", "clear"), 3, "send a ranking"),
        (Judgement("a_better", "clear", ("B", "A")), 2, "contradicts"),
        (Judgement("tie", "clear"), 2, "takes no strength"),
        (Judgement("ranking", "clear", ("A", "B")), 3, "every response once"),
        (Judgement("ranking", "clear", ("A", "B", "B")), 3, "every response once"),
        (Judgement("ranking", "clear", ("A", "B", "D")), 3, "every response once"),
        (Judgement("ranking", "clear"), 3, "every response once"),
        (Judgement("tie", note="x" * 5001), 2, "limit"),
    ],
)
def test_judgements_that_do_not_fit_are_refused(judgement, k, message):
    with pytest.raises(InvalidJudgement, match=message):
        normalise(judgement, k)


def test_letters_map_to_positions_through_the_display_order():
    # Shown left to right: position 2 as A, position 0 as B, position 1 as C.
    order = [2, 0, 1]
    judgement = normalise(Judgement("ranking", "clear", ("C", "A", "B")), 3)
    assert ranking_positions(judgement, order) == [1, 2, 0]
    assert letters_of([1, 2, 0], order) == ("C", "A", "B")
    assert ranking_positions(Judgement("tie"), order) is None


def test_pair_outcomes_expand_rankings_into_every_pair():
    # ranking 1 > 2 > 0: pair (0,1) -> 1 wins "<"; (0,2) -> 2 wins "<"; (1,2) -> 1 wins ">"
    assert pair_outcomes("ranking", [1, 2, 0], 3) == {(0, 1): "<", (0, 2): "<", (1, 2): ">"}
    assert pair_outcomes("a_better", [0, 1], 2) == {(0, 1): ">"}
    assert pair_outcomes("tie", None, 3) == {(0, 1): "tie", (0, 2): "tie", (1, 2): "tie"}


def test_left_won_reads_the_display_order():
    # shown [1, 0]: position 1 on the left. Ranking [1, 0]: the left one won.
    assert left_won([1, 0], [1, 0]) == [True]
    assert left_won([0, 1], [1, 0]) == [False]
    # shown [2, 0, 1], ranking 0 > 2 > 1: pairs (0,1): 0 is left of 1 and won -> True;
    # (0,2): 2 is left and lost -> False; (1,2): 2 is left and won -> True
    assert left_won([0, 2, 1], [2, 0, 1]) == [True, False, True]
