import math

import pytest
import torch

from rlhfkit.losses import bradley_terry_loss


def test_single_pair():
    loss, metrics = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]))
    # -log sigmoid(2) = log(1 + e^-2) = log(1.135335) = 0.126928
    assert loss.item() == pytest.approx(0.126928, abs=1e-6)
    assert metrics["accuracy"].item() == 1.0
    assert metrics["margin"].item() == 2.0


def test_batch_and_metrics():
    chosen = torch.tensor([2.0, 0.0], requires_grad=True)
    rejected = torch.tensor([0.0, 1.0])
    loss, metrics = bradley_terry_loss(chosen, rejected)
    # diffs = [2, -1]
    # -log sigmoid(2)  = log(1 + e^-2) = 0.126928
    # -log sigmoid(-1) = log(1 + e^1)  = log(3.718282) = 1.313262
    # mean = (0.126928 + 1.313262) / 2 = 0.720095
    assert loss.item() == pytest.approx(0.720095, abs=1e-6)
    assert metrics["accuracy"].item() == 0.5  # only the first pair has r_c > r_r
    assert metrics["margin"].item() == pytest.approx(0.5)  # (2 + -1) / 2
    assert metrics["chosen_reward"].item() == pytest.approx(1.0)  # (2 + 0) / 2
    assert metrics["rejected_reward"].item() == pytest.approx(0.5)  # (0 + 1) / 2
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())
    loss.backward()
    # d/dr_c of -log sigmoid(d) / 2 = -(1 - sigmoid(d)) / 2 = -sigmoid(-d) / 2
    expected = torch.tensor([-1 / (1 + math.exp(2)) / 2, -1 / (1 + math.exp(-1)) / 2])
    torch.testing.assert_close(chosen.grad, expected)


def test_tie_counts_as_wrong_and_costs_log2():
    loss, metrics = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(math.log(2.0))  # -log sigmoid(0) = log 2
    assert metrics["accuracy"].item() == 0.0


def test_margin():
    loss, metrics = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]), margin=torch.tensor([1.0]))
    # -log sigmoid(2 - 0 - 1) = log(1 + e^-1) = log(1.367879) = 0.313262
    assert loss.item() == pytest.approx(0.313262, abs=1e-6)
    assert metrics["margin"].item() == 2.0  # reported without the margin


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="must match"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        bradley_terry_loss(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="margin"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(2), margin=torch.zeros(1))
