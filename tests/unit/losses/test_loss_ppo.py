import math

import pytest
import torch

from rlhfkit.losses import ppo_policy_loss, ppo_value_loss

EPS = 0.2


def _one_token_policy_loss(ratio: float, adv: float) -> tuple[float, float]:
    logp = torch.tensor([[math.log(ratio)]])
    loss, metrics = ppo_policy_loss(logp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1), EPS)
    return loss.item(), metrics["clip_frac"].item()


@pytest.mark.parametrize(
    ("ratio", "adv", "expected_loss", "clipped"),
    [
        # ratio 1.5 > 1 + eps, A = +1: max(-1.5, -1.2) = -1.2 -> the clipped term is used
        (1.5, 1.0, -1.2, 1.0),
        # ratio 1.5 > 1 + eps, A = -1: max(1.5, 1.2) = 1.5 -> unclipped (no cap on a worsening move)
        (1.5, -1.0, 1.5, 0.0),
        # ratio 0.5 < 1 - eps, A = -1: max(0.5, 0.8) = 0.8 -> clipped
        (0.5, -1.0, 0.8, 1.0),
        # ratio 0.5 < 1 - eps, A = +1: max(-0.5, -0.8) = -0.5 -> unclipped
        (0.5, 1.0, -0.5, 0.0),
        # ratio 1.1 inside [0.8, 1.2], A = 2: both -2.2 -> not counted as clipped
        (1.1, 2.0, -2.2, 0.0),
    ],
)
def test_policy_loss_single_token_cases(ratio, adv, expected_loss, clipped):
    loss, clip_frac = _one_token_policy_loss(ratio, adv)
    assert loss == pytest.approx(expected_loss, abs=1e-6)
    assert clip_frac == clipped


def test_policy_loss_batch_metrics_and_gradient():
    ratios = [1.5, 1.5, 0.5, 1.0, 7.0]  # the last token is padding
    logp = torch.tensor([[math.log(r) for r in ratios]], requires_grad=True)
    old = torch.zeros(1, 5)
    adv = torch.tensor([[1.0, -1.0, -1.0, 2.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    loss, metrics = ppo_policy_loss(logp, old, adv, mask, EPS)
    # per-token losses: -1.2 (clipped), 1.5, 0.8 (clipped), -2.0 ; mean = -0.9 / 4 = -0.225
    assert loss.item() == pytest.approx(-0.225, abs=1e-6)
    assert metrics["clip_frac"].item() == pytest.approx(0.5)  # 2 of 4
    assert metrics["ratio"].item() == pytest.approx(1.125)  # (1.5 + 1.5 + 0.5 + 1) / 4
    # 0.5 * (ln 1.5)^2 = 0.5 * 0.164402 = 0.082201 (twice); 0.5 * (ln 0.5)^2 = 0.240227; 0
    # (2 * 0.082201 + 0.240227) / 4 = 0.101157
    assert metrics["approx_kl"].item() == pytest.approx(0.101157, abs=1e-6)
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())
    loss.backward()
    # clipped tokens have no gradient; unclipped: d(-A * exp(logp)) / d logp / 4 = -A * ratio / 4
    #   token 1: 1 * 1.5 / 4 = 0.375 ; token 3: -2 * 1 / 4 = -0.5
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.375, 0.0, -0.5, 0.0]]))


def test_value_loss():
    values = torch.tensor([[1.0, 1.0, 1.1, 50.0]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    returns = torch.tensor([[0.5, 2.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, metrics = ppo_value_loss(values, old, returns, mask, EPS)
    # token 0: v_clip = 0 + clamp(1, -0.2, 0.2) = 0.2; (1 - 0.5)^2 = 0.25 vs (0.2 - 0.5)^2 = 0.09 -> 0.25
    # token 1: v_clip = 0.2; (1 - 2)^2 = 1.00 vs (0.2 - 2)^2 = 3.24 -> 3.24 (clipped error is larger)
    # token 2: 1.1 - 1 = 0.1 is inside eps, v_clip = 1.1; both (0.1)^2 = 0.01 -> 0.01
    # loss = 0.5 * (0.25 + 3.24 + 0.01) / 3 = 0.5 * 3.5 / 3 = 0.583333
    assert loss.item() == pytest.approx(0.583333, abs=1e-6)
    assert metrics["value_clip_frac"].item() == pytest.approx(1 / 3)
    assert metrics["value_mean"].item() == pytest.approx((1.0 + 1.0 + 1.1) / 3)
    loss.backward()
    # token 0: 0.5 * 2 * (1 - 0.5) / 3 = 0.166667 ; token 1: clipped path, clamp saturated -> 0
    # token 2: 0.5 * 2 * (1.1 - 1) / 3 = 0.033333 ; padding -> 0
    torch.testing.assert_close(values.grad, torch.tensor([[0.5 / 3, 0.0, 0.1 / 3, 0.0]]))


def test_bad_inputs_raise():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="advantages"):
        ppo_policy_loss(x, x, torch.zeros(2, 2), x)
    with pytest.raises(ValueError, match="returns"):
        ppo_value_loss(x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_policy_loss(x, x, x, x, clip_eps=0.0)
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_value_loss(x, x, x, x, clip_eps=-0.1)
