import math

import pytest
import torch

from rlhfkit.losses import sft_loss

# V = 3. logits[:, 0] = [0, 0, 0]     -> uniform: p = 1/3 for every token
#        logits[:, 1] = [0, ln 3, 0]  -> p = [1/5, 3/5, 1/5]
#        logits[:, 2] = anything      -> the last position predicts nothing
LOGITS = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(3.0), 0.0], [5.0, -5.0, 7.0]]])  # (1, 3, 3)
# target at t=1 is id 0 (predicted by logits[:, 0]); target at t=2 is id 1 (predicted by logits[:, 1])
IDS = torch.tensor([[2, 0, 1]])
NLL_T1 = math.log(3.0)  # -log(1/3) = 1.098612
NLL_T2 = math.log(5.0 / 3.0)  # -log(3/5) = 0.510826


def test_two_response_tokens():
    loss, metrics = sft_loss(LOGITS, IDS, torch.tensor([[0, 1, 1]]))
    # (ln 3 + ln 5/3) / 2 = ln(5) / 2 = 0.804719
    assert loss.item() == pytest.approx(math.log(5.0) / 2)
    assert metrics["nll"].item() == pytest.approx(0.804719, abs=1e-6)
    assert metrics["tokens"].item() == 2
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_first_position_is_never_a_target_and_mask_is_in_input_coordinates():
    # loss_mask[:, 0] = 1 is ignored (no logit predicts token 0); only t=2 counts
    loss, metrics = sft_loss(LOGITS, IDS, torch.tensor([[1.0, 0.0, 1.0]]))
    assert loss.item() == pytest.approx(NLL_T2)
    assert metrics["tokens"].item() == 1


def test_token_level_average_across_rows():
    logits = LOGITS.repeat(2, 1, 1).requires_grad_(True)
    ids = IDS.repeat(2, 1)
    mask = torch.tensor([[0, 1, 1], [0, 1, 0]]).bool()
    loss, metrics = sft_loss(logits, ids, mask)
    # three counted tokens: row 0 -> ln 3 and ln 5/3; row 1 -> ln 3
    # token mean = (2 ln 3 + ln 5/3) / 3 = (2 * 1.098612 + 0.510826) / 3 = 0.902683
    # (a mean of per-row means would give (0.804719 + 1.098612) / 2 = 0.951666 instead)
    assert loss.item() == pytest.approx((2 * NLL_T1 + NLL_T2) / 3)
    assert metrics["tokens"].item() == 3
    loss.backward()
    assert torch.all(logits.grad[:, 2] == 0)  # the last position gets no gradient


def test_no_counted_token_raises():
    with pytest.raises(ValueError, match="no target token"):
        sft_loss(LOGITS, IDS, torch.tensor([[1, 0, 0]]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        sft_loss(LOGITS, IDS[:, :2], torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        sft_loss(LOGITS, IDS, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        sft_loss(LOGITS[0], IDS, torch.tensor([[0, 1, 1]]))
