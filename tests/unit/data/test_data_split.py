"""train_eval_split: deterministic, disjoint, sized by eval_fraction."""

import pytest

from rlhfkit.data import train_eval_split


def test_split_is_deterministic_disjoint_and_sized():
    records = list(range(100))
    train, eval_ = train_eval_split(records, 0.1, seed=0)
    assert len(eval_) == 10 and len(train) == 90
    assert sorted(train + eval_) == records
    assert not set(train) & set(eval_)
    assert train_eval_split(records, 0.1, seed=0) == (train, eval_)
    assert train_eval_split(records, 0.1, seed=1) != (train, eval_)
    assert records == list(range(100))  # input untouched
    assert train != sorted(train)  # order follows the shuffle


def test_split_edge_sizes():
    assert train_eval_split(list(range(10)), 0.0, seed=0)[1] == []
    assert len(train_eval_split(list(range(10)), 0.01, seed=0)[1]) == 1  # at least one
    assert len(train_eval_split([1, 2], 0.9, seed=0)[0]) == 1  # rounding never empties train
    assert train_eval_split([7], 0.5, seed=0) == ([7], [])
    assert train_eval_split([], 0.5, seed=0) == ([], [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="eval_fraction"):
        train_eval_split([1, 2, 3], fraction, seed=0)
