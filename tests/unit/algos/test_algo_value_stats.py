"""Explained variance of value predictions, against numbers worked out by hand."""

import math

import pytest
import torch

from rlhfkit.algos import explained_variance


def test_hand_computed_explained_variance():
    # masked tokens: returns r = [1, 2, 3, 4] (the 9s are masked out), values v = [1, 2, 2, 5]
    # Var[r] (population) = mean((r - 2.5)^2) = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    # r - v = [0, 0, 1, -1]: mean 0, Var = (0 + 0 + 1 + 1) / 4 = 0.5
    # EV = 1 - 0.5 / 1.25 = 0.6
    returns = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]])
    values = torch.tensor([[1.0, 2.0, 0.0], [2.0, 5.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    assert explained_variance(values, returns, mask).item() == pytest.approx(0.6)


def test_perfect_constant_and_worse_than_constant():
    returns = torch.tensor([[1.0, 3.0]])
    mask = torch.ones(1, 2)
    assert explained_variance(returns.clone(), returns, mask).item() == pytest.approx(1.0)
    # predicting the mean (2) everywhere explains nothing
    assert explained_variance(torch.full((1, 2), 2.0), returns, mask).item() == pytest.approx(0.0)
    # predictions anti-correlated with the returns: r - v = [-2, 2], Var 4, Var[r] = 1 -> 1 - 4 = -3
    assert explained_variance(torch.tensor([[3.0, 1.0]]), returns, mask).item() == pytest.approx(-3.0)


def test_constant_returns_give_nan_and_bad_input_raises():
    assert math.isnan(explained_variance(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2)).item())
    with pytest.raises(ValueError, match="no token"):
        explained_variance(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shapes"):
        explained_variance(torch.zeros(1, 2), torch.ones(1, 3), torch.ones(1, 2))
