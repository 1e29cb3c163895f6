"""DPO family: each loss against numbers computed by hand (arithmetic in the comments)."""

import math

import pytest
import torch

from rlhfkit.losses.dpo import (
    DPO_LOSSES,
    REFERENCE_FREE,
    DPOParams,
    PairLogps,
    get_dpo_loss,
    hinge_loss,
    ipo_loss,
    robust_loss,
    sigmoid_loss,
    simpo_loss,
)


def softplus(z: float) -> float:
    """-log sigmoid(-z) = log(1 + e^z)."""
    return math.log1p(math.exp(z))


# Two pairs, shared by the reference-based losses:
#   policy    chosen [-1, -4]  rejected [-3, -2]
#   reference chosen [-2, -3]  rejected [-2, -2]
#   chosen log-ratio   = [-1 - -2, -4 - -3] = [ 1, -1]
#   rejected log-ratio = [-3 - -2, -2 - -2] = [-1,  0]
#   h = chosen - rejected = [2, -1]
# With beta = 0.5: beta h = [1, -0.5]; implicit rewards chosen [0.5, -0.5], rejected [-0.5, 0].
PAIRS = PairLogps(
    chosen=torch.tensor([-1.0, -4.0]),
    rejected=torch.tensor([-3.0, -2.0]),
    ref_chosen=torch.tensor([-2.0, -3.0]),
    ref_rejected=torch.tensor([-2.0, -2.0]),
)
BETA = DPOParams(beta=0.5)


def _check_reference_metrics(metrics):
    assert metrics["chosen_reward"].item() == pytest.approx(0.0)  # (0.5 + -0.5) / 2
    assert metrics["rejected_reward"].item() == pytest.approx(-0.25)  # (-0.5 + 0) / 2
    assert metrics["accuracy"].item() == 0.5  # 0.5 > -0.5 yes; -0.5 > 0 no
    assert metrics["margin"].item() == pytest.approx(0.25)  # (1 + -0.5) / 2
    assert metrics["chosen_logps"].item() == pytest.approx(-2.5)  # (-1 + -4) / 2
    assert metrics["rejected_logps"].item() == pytest.approx(-2.5)  # (-3 + -2) / 2
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_sigmoid_is_dpo():
    loss, metrics = sigmoid_loss(PAIRS, BETA)
    # -log sigmoid(1)    = log(1 + e^-1)  = log(1.367879) = 0.313262
    # -log sigmoid(-0.5) = log(1 + e^0.5) = log(2.648721) = 0.974077
    # mean = (0.313262 + 0.974077) / 2 = 0.643670
    assert loss.item() == pytest.approx(0.643670, abs=1e-6)
    assert loss.item() == pytest.approx((softplus(-1) + softplus(0.5)) / 2)
    _check_reference_metrics(metrics)


def test_sigmoid_gradient():
    chosen = PAIRS.chosen.clone().requires_grad_(True)
    loss, _ = sigmoid_loss(PAIRS._replace(chosen=chosen), BETA)
    loss.backward()
    # d/d logp_c of -log sigmoid(beta h) / B = -beta * sigmoid(-beta h) / B
    #   pair 1: -0.5 * sigmoid(-1)  / 2 = -0.25 * 0.268941 = -0.067235
    #   pair 2: -0.5 * sigmoid(0.5) / 2 = -0.25 * 0.622459 = -0.155615
    torch.testing.assert_close(chosen.grad, torch.tensor([-0.067235, -0.155615]), atol=1e-6, rtol=0)


def test_policy_equal_to_reference_costs_log2():
    same = PairLogps(*(torch.tensor([-3.0]),) * 4)
    loss, metrics = sigmoid_loss(same, BETA)
    assert loss.item() == pytest.approx(math.log(2.0))  # h = 0: -log sigmoid(0) = log 2
    assert metrics["accuracy"].item() == 0.0  # a tie is not a win


def test_ipo():
    loss, metrics = ipo_loss(PAIRS, BETA)
    # target 1 / (2 beta) = 1 / (2 * 0.5) = 1
    # (h - 1)^2 = [(2 - 1)^2, (-1 - 1)^2] = [1, 4]; mean = 2.5
    assert loss.item() == pytest.approx(2.5)
    _check_reference_metrics(metrics)


def test_robust_is_label_smoothed_dpo():
    loss, metrics = robust_loss(PAIRS, DPOParams(beta=0.5, label_smoothing=0.25))
    # pair 1, beta h = 1:
    #   0.75 * -log sigmoid(1) + 0.25 * -log sigmoid(-1)
    #   = 0.75 * 0.313262 + 0.25 * 1.313262 = 0.234947 + 0.328316 = 0.563262
    # pair 2, beta h = -0.5:
    #   0.75 * -log sigmoid(-0.5) + 0.25 * -log sigmoid(0.5)
    #   = 0.75 * 0.974077 + 0.25 * 0.474077 = 0.730558 + 0.118519 = 0.849077
    # mean = (0.563262 + 0.849077) / 2 = 0.706170
    assert loss.item() == pytest.approx(0.706170, abs=1e-6)
    _check_reference_metrics(metrics)


def test_robust_without_smoothing_is_dpo():
    plain, _ = sigmoid_loss(PAIRS, BETA)
    smoothed, _ = robust_loss(PAIRS, DPOParams(beta=0.5, label_smoothing=0.0))
    assert smoothed.item() == pytest.approx(plain.item())


def test_hinge():
    loss, metrics = hinge_loss(PAIRS, BETA)
    # max(0, 1 - beta h) = [max(0, 1 - 1), max(0, 1 + 0.5)] = [0, 1.5]; mean = 0.75
    assert loss.item() == pytest.approx(0.75)
    _check_reference_metrics(metrics)


def test_simpo_is_reference_free_and_length_normalised():
    x = PairLogps(
        chosen=torch.tensor([-4.0, -6.0]),
        rejected=torch.tensor([-9.0, -2.0]),
        chosen_tokens=torch.tensor([2, 3]),
        rejected_tokens=torch.tensor([3, 4]),
    )
    loss, metrics = simpo_loss(x, DPOParams(beta=2.0, gamma=0.5))
    # average logp:  chosen [-4/2, -6/3] = [-2, -2];  rejected [-9/3, -2/4] = [-3, -0.5]
    # rewards (beta = 2): chosen [-4, -4]; rejected [-6, -1]; difference [2, -3]
    # minus gamma = 0.5: [1.5, -3.5]
    # -log sigmoid(1.5)  = log(1 + e^-1.5) = log(1.223130) = 0.201413
    # -log sigmoid(-3.5) = log(1 + e^3.5)  = log(34.115452) = 3.529750
    # mean = (0.201413 + 3.529750) / 2 = 1.865581
    assert loss.item() == pytest.approx(1.865581, abs=1e-6)
    assert metrics["chosen_reward"].item() == pytest.approx(-4.0)  # (-4 + -4) / 2
    assert metrics["rejected_reward"].item() == pytest.approx(-3.5)  # (-6 + -1) / 2
    assert metrics["accuracy"].item() == 0.5  # -4 > -6 yes; -4 > -1 no
    assert metrics["margin"].item() == pytest.approx(-0.5)  # (2 + -3) / 2
    assert metrics["chosen_logps"].item() == pytest.approx(-5.0)  # (-4 + -6) / 2


def test_registry():
    assert set(DPO_LOSSES) == {"sigmoid", "ipo", "robust", "hinge", "simpo"}
    assert REFERENCE_FREE == {"simpo"}
    assert get_dpo_loss("ipo") is ipo_loss
    with pytest.raises(ValueError, match="unknown DPO loss type 'kto'.*sigmoid"):
        get_dpo_loss("kto")


@pytest.mark.parametrize("name", sorted(set(DPO_LOSSES) - REFERENCE_FREE))
def test_bad_shapes_raise(name):
    fn = DPO_LOSSES[name]
    with pytest.raises(ValueError, match="must match"):
        fn(PAIRS._replace(rejected=torch.zeros(3)), BETA)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        fn(PairLogps(*(torch.zeros(2, 1),) * 4), BETA)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        fn(PairLogps(*(torch.zeros(0),) * 4), BETA)
    with pytest.raises(ValueError, match="needs ref_chosen"):
        fn(PairLogps(PAIRS.chosen, PAIRS.rejected), BETA)


def test_simpo_needs_token_counts():
    with pytest.raises(ValueError, match="needs chosen_tokens"):
        simpo_loss(PairLogps(PAIRS.chosen, PAIRS.rejected), BETA)
    with pytest.raises(ValueError, match="rejected_tokens"):
        simpo_loss(
            PairLogps(
                PAIRS.chosen, PAIRS.rejected, chosen_tokens=torch.ones(2), rejected_tokens=torch.ones(1)
            ),
            BETA,
        )


def test_bad_params_raise():
    with pytest.raises(ValueError, match="beta"):
        sigmoid_loss(PAIRS, DPOParams(beta=0.0))
    with pytest.raises(ValueError, match="label_smoothing"):
        robust_loss(PAIRS, DPOParams(label_smoothing=0.5))
