import pytest
import torch

from rlhfkit.algos import masked_whiten
from rlhfkit.losses import masked_mean, masked_var

VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, float("inf")]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # valid: 1, 2, 3, 4
# mean = 2.5 ; deviations -1.5, -0.5, 0.5, 1.5 ; squares sum 2.25 + 0.25 + 0.25 + 2.25 = 5
# unbiased var = 5 / 3 = 1.666667 ; std = 1.290994
STD = (5 / 3) ** 0.5


def test_whiten_by_hand():
    out = masked_whiten(VALUES, MASK, eps=0.0)
    # [-1.5, -0.5, 0.5, 1.5] / 1.290994 = [-1.161895, -0.387298, 0.387298, 1.161895]
    expected = torch.tensor([[-1.5 / STD, -0.5 / STD, 0.5 / STD], [1.5 / STD, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    assert out[0, 0].item() == pytest.approx(-1.161895, abs=1e-6)


def test_whiten_mean_zero_var_one_zero_outside_mask():
    out = masked_whiten(VALUES, MASK.bool())
    assert masked_mean(out, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(out, MASK).item() == pytest.approx(1.0, abs=1e-6)
    assert out[1, 1].item() == 0.0 and out[1, 2].item() == 0.0  # padding, even the inf, becomes 0


def test_whiten_keep_mean():
    out = masked_whiten(VALUES, MASK, shift_mean=False, eps=0.0)
    # scaled deviations + 2.5 ; padding still 0
    expected = torch.tensor(
        [[2.5 - 1.5 / STD, 2.5 - 0.5 / STD, 2.5 + 0.5 / STD], [2.5 + 1.5 / STD, 0.0, 0.0]]
    )
    torch.testing.assert_close(out, expected)


def test_whiten_errors():
    with pytest.raises(ValueError, match="at least 2"):
        masked_whiten(VALUES, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="same shape"):
        masked_whiten(VALUES, MASK[:, :2])
