import pytest
import torch

from rlhfkit.algos import group_advantages, leave_one_out_advantages, zero_advantage_fraction

# Two prompts, G = 4 samples each.
REWARDS = torch.tensor([[2.0, 4.0, 4.0, 6.0], [0.0, 0.0, 0.0, 8.0]])


def test_grpo_advantages_divide_by_the_group_std():
    adv = group_advantages(REWARDS, scale=True, eps=0.0)
    # row 0: mean (2 + 4 + 4 + 6) / 4 = 4; deviations -2, 0, 0, 2
    #   unbiased var (4 + 0 + 0 + 4) / 3 = 8/3; std = sqrt(8/3) = 1.632993
    #   A = -2 / 1.632993 = -1.224745, 0, 0, +1.224745
    # row 1: mean 8 / 4 = 2; deviations -2, -2, -2, 6
    #   unbiased var (4 + 4 + 4 + 36) / 3 = 16; std = 4
    #   A = -0.5, -0.5, -0.5, 1.5
    expected = torch.tensor([[-1.224745, 0.0, 0.0, 1.224745], [-0.5, -0.5, -0.5, 1.5]])
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


def test_grpo_default_eps_is_added_to_the_std():
    adv = group_advantages(REWARDS)
    # row 1: -2 / (4 + 1e-4) = -0.4999875
    assert adv[1, 0].item() == pytest.approx(-2 / 4.0001, abs=1e-7)


def test_dr_grpo_advantages_only_subtract_the_mean():
    adv = group_advantages(REWARDS, scale=False)
    # reward minus group mean (4 and 2), no division
    torch.testing.assert_close(adv, torch.tensor([[-2.0, 0.0, 0.0, 2.0], [-2.0, -2.0, -2.0, 6.0]]))


def test_rloo_leave_one_out_baseline():
    adv = leave_one_out_advantages(REWARDS)
    # row 0: sum 16; baseline_i = (16 - r_i) / 3 = 14/3, 12/3, 12/3, 10/3
    #   A = 2 - 14/3 = -8/3, 4 - 4 = 0, 0, 6 - 10/3 = 8/3
    # row 1: sum 8; baselines (8 - 0) / 3 = 8/3 (x3) and (8 - 8) / 3 = 0
    #   A = -8/3, -8/3, -8/3, 8 - 0 = 8
    expected = torch.tensor([[-8 / 3, 0.0, 0.0, 8 / 3], [-8 / 3, -8 / 3, -8 / 3, 8.0]])
    torch.testing.assert_close(adv, expected)
    # the same as G / (G - 1) * (r - mean) = 4/3 * deviations
    torch.testing.assert_close(adv, 4 / 3 * group_advantages(REWARDS, scale=False))


def test_a_group_with_equal_rewards_has_zero_advantage_and_is_counted():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 4.0, 4.0, 6.0]])
    assert group_advantages(rewards)[0].abs().max().item() == 0.0  # 0 / (0 + eps), never NaN
    assert leave_one_out_advantages(rewards)[0].abs().max().item() == 0.0
    assert zero_advantage_fraction(rewards).item() == 0.5  # 1 of 2 groups
    assert zero_advantage_fraction(REWARDS).item() == 0.0


@pytest.mark.parametrize("fn", [group_advantages, leave_one_out_advantages, zero_advantage_fraction])
def test_bad_shapes_are_rejected(fn):
    with pytest.raises(ValueError, match=r"\(B, G\)"):
        fn(torch.ones(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        fn(torch.ones(3, 1))
