import math

import pytest
import torch

from rlhfkit.losses import KL_ESTIMATORS, kl_estimate


def test_estimators_listed():
    assert KL_ESTIMATORS == ("k1", "k3")


def test_k1_and_k3_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-2.0, -1.0, -0.5]])
    # k1 = logp - ref = [1, -1, 0]
    torch.testing.assert_close(kl_estimate(logp, ref), torch.tensor([[1.0, -1.0, 0.0]]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([[1.0, -1.0, 0.0]]))
    # k3 with log r = ref - logp = [-1, 1, 0]:
    #   e^-1 - 1 - (-1) = e^-1    = 0.367879
    #   e^1  - 1 - 1    = e - 2   = 0.718282
    #   e^0  - 1 - 0    = 0
    expected = torch.tensor([[math.exp(-1.0), math.e - 2.0, 0.0]])
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), expected)


def test_both_are_unbiased_under_the_policy():
    # policy p = [1/2, 1/2], reference q = [1/4, 3/4]
    # KL(p || q) = 1/2 ln(2) + 1/2 ln(2/3) = 0.5 * (0.693147 - 0.405465) = 0.143841
    # E_p[k1] = sum p ln(p/q) = KL;  E_p[k3] = sum p (q/p - 1 - ln(q/p)) = (sum q - 1) + KL = KL
    p = torch.tensor([[0.5, 0.5]])
    q = torch.tensor([[0.25, 0.75]])
    kl = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert kl == pytest.approx(0.143841, abs=1e-6)
    for name in KL_ESTIMATORS:
        assert (p * kl_estimate(p.log(), q.log(), name)).sum().item() == pytest.approx(kl, abs=1e-6)


def test_unknown_estimator_raises_and_lists_valid_ones():
    with pytest.raises(ValueError, match="k1, k3"):
        kl_estimate(torch.zeros(1, 2), torch.zeros(1, 2), "k2")


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="must match"):
        kl_estimate(torch.zeros(1, 2), torch.zeros(1, 3))
