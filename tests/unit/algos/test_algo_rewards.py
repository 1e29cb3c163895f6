import pytest
import torch

from rlhfkit.algos import kl_shaped_rewards


def test_rewards_by_hand():
    scores = torch.tensor([2.0, -1.0, 0.5])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.4, 9.0], [1.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    out = kl_shaped_rewards(scores, kl, mask, beta=0.1)
    # row 0: -0.1 * [0.1, 0.2, 0.3] = [-0.01, -0.02, -0.03]; + 2 at t=2 -> [-0.01, -0.02, 1.97]
    # row 1: -0.1 * [0.5, -0.4]    = [-0.05, 0.04]; -1 at t=1 -> [-0.05, -0.96, 0]
    # row 2: -0.1 * 1.0 = -0.1; + 0.5 at t=0 -> [0.4, 0, 0]
    expected = torch.tensor([[-0.01, -0.02, 1.97], [-0.05, -0.96, 0.0], [0.4, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_bool_mask_and_zero_beta():
    out = kl_shaped_rewards(
        torch.tensor([3.0]), torch.tensor([[7.0, 7.0]]), torch.tensor([[True, False]]), 0.0
    )
    torch.testing.assert_close(out, torch.tensor([[3.0, 0.0]]))


def test_errors():
    kl = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="no valid token"):
        kl_shaped_rewards(torch.zeros(2), kl, torch.tensor([[1, 1, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="contiguous"):
        kl_shaped_rewards(torch.zeros(2), kl, torch.tensor([[1, 0, 1], [1, 1, 1]]), 0.1)
    with pytest.raises(ValueError, match=r"scores \(B,\)"):
        kl_shaped_rewards(torch.zeros(3), kl, torch.ones(2, 3), 0.1)
    with pytest.raises(ValueError, match=r"scores \(B,\)"):
        kl_shaped_rewards(torch.zeros(2), kl, torch.ones(2, 2), 0.1)
