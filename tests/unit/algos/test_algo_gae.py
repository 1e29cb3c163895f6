import pytest
import torch

from rlhfkit.algos import compute_gae


def test_three_token_row_gamma1_lam_half():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # t=2: V_3 = 0 (past the end)  delta = 1 + 0 - 0.4 = 0.6            A_2 = 0.6
    # t=1: delta = 0 + 1 * 0.4 - 0.2 = 0.2       A_1 = 0.2 + 1 * 0.5 * 0.6 = 0.5
    # t=0: delta = 0 + 1 * 0.2 - 0.5 = -0.3      A_0 = -0.3 + 0.5 * 0.5 = -0.05
    torch.testing.assert_close(adv, torch.tensor([[-0.05, 0.5, 0.6]]))
    # returns = A + V = [-0.05 + 0.5, 0.5 + 0.2, 0.6 + 0.4]
    torch.testing.assert_close(ret, torch.tensor([[0.45, 0.7, 1.0]]))


def test_padded_and_empty_rows():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.3, 1.0, 99.0], [5.0, 5.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.1, 0.5, 99.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]]).bool()
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0 as in the test above
    # row 1 ends at t=1, so V_2 = A_2 = 0 whatever sits in the padding:
    #   t=1: delta = 1 + 0 - 0.5 = 0.5                 A_1 = 0.5
    #   t=0: delta = 0.3 + 0.5 - 0.1 = 0.7             A_0 = 0.7 + 0.5 * 0.5 = 0.95
    #   returns = [0.95 + 0.1, 0.5 + 0.5, 0] = [1.05, 1.0, 0]
    # row 2 has no valid token: all zeros
    torch.testing.assert_close(adv, torch.tensor([[-0.05, 0.5, 0.6], [0.95, 0.5, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.45, 0.7, 1.0], [1.05, 1.0, 0.0], [0.0, 0.0, 0.0]]))


def test_lam_one_gives_discounted_returns():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=1.0)
    # Monte Carlo returns: G_2 = 2 ; G_1 = 0 + 0.9 * 2 = 1.8 ; G_0 = 1 + 0.9 * 1.8 = 2.62
    # A = G - V = [2.12, 1.3, 1.5]
    torch.testing.assert_close(ret, torch.tensor([[2.62, 1.8, 2.0]]))
    torch.testing.assert_close(adv, torch.tensor([[2.12, 1.3, 1.5]]))


def test_lam_zero_gives_td_errors():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.3, 0.4]])
    adv, _ = compute_gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.0)
    # A_t = delta_t: [1 + 0.9 * 0.3 - 0.5, 0 + 0.9 * 0.4 - 0.3, 2 + 0 - 0.4] = [0.77, 0.06, 1.6]
    torch.testing.assert_close(adv, torch.tensor([[0.77, 0.06, 1.6]]))


def test_no_gradient_flows():
    values = torch.tensor([[0.5, 0.2]], requires_grad=True)
    adv, ret = compute_gae(torch.ones(1, 2), values, torch.ones(1, 2))
    assert not adv.requires_grad and not ret.requires_grad


def test_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        compute_gae(x, torch.zeros(2, 2), x)
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(x, x, x, gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        compute_gae(x, x, x, lam=-0.1)
    with pytest.raises(ValueError, match="contiguous"):
        compute_gae(x, x, torch.tensor([[1, 0, 1], [1, 1, 1]]))
