import math

import pytest
import torch

from rlhfkit.losses import sft_loss

# Log-probabilities of the tokens of one row x = (x_0, x_1, x_2):
#   column 0: x_0 has no prediction (any value is ignored)
#   column 1: log p(x_1 | x_0) = ln(1/3)      (a uniform prediction over V = 3)
#   column 2: log p(x_2 | x_0, x_1) = ln(3/5) (softmax [0, ln 3, 0] = [1/5, 3/5, 1/5] at the right token)
LOGPROBS = torch.tensor([[-7.0, math.log(1.0 / 3.0), math.log(3.0 / 5.0)]])  # (1, 3)
NLL_T1 = math.log(3.0)  # -log(1/3) = 1.098612
NLL_T2 = math.log(5.0 / 3.0)  # -log(3/5) = 0.510826


def test_two_response_tokens():
    loss, metrics = sft_loss(LOGPROBS, torch.tensor([[0, 1, 1]]))
    # (ln 3 + ln 5/3) / 2 = ln(5) / 2 = 0.804719
    assert loss.item() == pytest.approx(math.log(5.0) / 2)
    assert metrics["nll"].item() == pytest.approx(0.804719, abs=1e-6)
    assert metrics["tokens"].item() == 2
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_first_position_is_never_a_target():
    # loss_mask[:, 0] = 1 is ignored (nothing predicts token 0); only t=2 counts
    loss, metrics = sft_loss(LOGPROBS, torch.tensor([[1.0, 0.0, 1.0]]))
    assert loss.item() == pytest.approx(NLL_T2)
    assert metrics["tokens"].item() == 1


def test_token_level_average_across_rows():
    logprobs = LOGPROBS.repeat(2, 1).requires_grad_(True)
    mask = torch.tensor([[0, 1, 1], [0, 1, 0]]).bool()
    loss, metrics = sft_loss(logprobs, mask)
    # three counted tokens: row 0 -> ln 3 and ln 5/3; row 1 -> ln 3
    # token mean = (2 ln 3 + ln 5/3) / 3 = (2 * 1.098612 + 0.510826) / 3 = 0.902683
    # (a mean of per-row means would give (0.804719 + 1.098612) / 2 = 0.951666 instead)
    assert loss.item() == pytest.approx((2 * NLL_T1 + NLL_T2) / 3)
    assert metrics["tokens"].item() == 3
    loss.backward()
    # d loss / d logprobs = -mask / 3 on counted tokens, 0 elsewhere (column 0, row 1's last token)
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -1 / 3, -1 / 3], [0.0, -1 / 3, 0.0]]))


def test_no_counted_token_raises():
    with pytest.raises(ValueError, match="no target token"):
        sft_loss(LOGPROBS, torch.tensor([[1, 0, 0]]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        sft_loss(LOGPROBS, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        sft_loss(LOGPROBS[0], torch.tensor([0, 1, 1]))
