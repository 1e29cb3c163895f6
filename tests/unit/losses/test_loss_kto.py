"""KTO: the loss, its reference point and its metrics against numbers computed by hand."""

import math

import pytest
import torch

from rlhfkit.losses.kto import (
    KTOParams,
    UnpairedLogps,
    kl_reference_point,
    kto_loss,
    weight_ratio,
)

# Four examples, two desirable then two undesirable:
#   policy    [-1, -4, -3, -2]   reference [-2, -3, -2, -2]   r = policy - reference = [1, -1, -1, 0]
#   mismatched rows: kl_policy [-5, -6, -4, -5], kl_reference [-6, -6, -5, -4]
#   log-ratios [1, 0, 1, -1], mean 0.25 > 0, so z0 = 0.25
BATCH = UnpairedLogps(
    policy=torch.tensor([-1.0, -4.0, -3.0, -2.0]),
    reference=torch.tensor([-2.0, -3.0, -2.0, -2.0]),
    kl_policy=torch.tensor([-5.0, -6.0, -4.0, -5.0]),
    kl_reference=torch.tensor([-6.0, -6.0, -5.0, -4.0]),
    desirable=torch.tensor([True, True, False, False]),
)


def test_kto_loss_by_hand():
    loss, metrics = kto_loss(BATCH, KTOParams(beta=0.5, desirable_weight=1.0, undesirable_weight=2.0))
    # desirable:   1 - sigmoid(0.5 * (r - z0))
    #   b0: 0.5 * (1 - 0.25)  =  0.375: 1 - sigmoid(0.375)  = 1 / (1 + e^0.375)  = 1 / 2.454991 = 0.407333
    #   b1: 0.5 * (-1 - 0.25) = -0.625: 1 - sigmoid(-0.625) = 1 / (1 + e^-0.625) = 1 / 1.535261 = 0.651355
    # undesirable: 2 * (1 - sigmoid(0.5 * (z0 - r)))
    #   b2: 0.5 * (0.25 + 1)  = 0.625:  2 * (1 - sigmoid(0.625)) = 2 * 0.348645 = 0.697290
    #   b3: 0.5 * (0.25 - 0)  = 0.125:  2 * (1 - sigmoid(0.125)) = 2 / (1 + e^0.125) = 2 / 2.133148 = 0.937581
    # mean = (0.407333 + 0.651355 + 0.697290 + 0.937581) / 4 = 2.693559 / 4 = 0.673390
    assert loss.item() == pytest.approx(0.673390, abs=1e-6)
    assert metrics["kl"].item() == pytest.approx(0.25)
    assert metrics["desirable_reward"].item() == pytest.approx(0.0)  # 0.5 * (1 + -1) / 2
    assert metrics["undesirable_reward"].item() == pytest.approx(-0.25)  # 0.5 * (-1 + 0) / 2
    assert metrics["reward_margin"].item() == pytest.approx(0.25)  # 0 - -0.25
    assert metrics["desirable_logps"].item() == pytest.approx(-2.5)  # (-1 + -4) / 2
    assert metrics["undesirable_logps"].item() == pytest.approx(-2.5)  # (-3 + -2) / 2
    assert metrics["desirable_share"].item() == pytest.approx(0.5)
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_reference_point_is_clamped_at_zero():
    # log-ratios [-1, -1, -1, -1] have mean -1 < 0: z0 = max(0, -1) = 0
    z0 = kl_reference_point(torch.tensor([-3.0, -3.0, -3.0, -3.0]), torch.tensor([-2.0, -2.0, -2.0, -2.0]))
    assert z0.item() == 0.0
    batch = BATCH._replace(kl_reference=BATCH.kl_policy + 1.0)
    loss, metrics = kto_loss(batch, KTOParams(beta=1.0))
    # z0 = 0, beta = 1, weights 1: desirable 1 - sigmoid(r), undesirable 1 - sigmoid(-r), r = [1, -1, -1, 0]
    #   b0: 1 - sigmoid(1)  = 0.268941;  b1: 1 - sigmoid(-1) = 0.731059
    #   b2: 1 - sigmoid(1)  = 0.268941;  b3: 1 - sigmoid(0)  = 0.5
    # mean = (0.268941 + 0.731059 + 0.268941 + 0.5) / 4 = 1.768941 / 4 = 0.442235
    assert loss.item() == pytest.approx(0.442235, abs=1e-6)
    assert metrics["kl"].item() == 0.0


def test_reference_point_may_come_from_a_whole_multi_process_batch():
    # this process's mismatched log-ratios [1, 0, 1, -1] and another's [3, 0, 0, 0]: z0 = 4 / 8 = 0.5
    kl_policy = torch.cat([BATCH.kl_policy, torch.tensor([-1.0, -2.0, -2.0, -2.0])])
    kl_reference = torch.cat([BATCH.kl_reference, torch.tensor([-4.0, -2.0, -2.0, -2.0])])
    loss, metrics = kto_loss(
        BATCH._replace(kl_policy=kl_policy, kl_reference=kl_reference), KTOParams(beta=1.0)
    )
    assert metrics["kl"].item() == pytest.approx(0.5)
    # r = [1, -1, -1, 0]: b0 1 - sigmoid(0.5) = 0.377541, b1 1 - sigmoid(-1.5) = 0.817574,
    # b2 1 - sigmoid(1.5) = 0.182426, b3 1 - sigmoid(0.5) = 0.377541; mean 1.755081 / 4 = 0.438770
    assert loss.item() == pytest.approx(0.438770, abs=1e-6)


def test_gradients_push_desirable_up_undesirable_down_and_skip_the_reference_point():
    policy = BATCH.policy.clone().requires_grad_(True)
    kl_policy = BATCH.kl_policy.clone().requires_grad_(True)
    loss, _ = kto_loss(BATCH._replace(policy=policy, kl_policy=kl_policy), KTOParams(beta=0.5))
    loss.backward()
    # d/dr of 1 - sigmoid(beta (r - z0)) is -beta s (1 - s) < 0: a gradient step raises a desirable r;
    # d/dr of 1 - sigmoid(beta (z0 - r)) is +beta s (1 - s) > 0: it lowers an undesirable r.
    # b0: s = sigmoid(0.375) = 0.592667, so d loss / d policy[0] = -0.5 * 0.592667 * 0.407333 / 4 = -0.030178
    assert policy.grad[0].item() == pytest.approx(-0.5 * 0.592667 * 0.407333 / 4, abs=1e-6)
    assert (policy.grad[:2] < 0).all() and (policy.grad[2:] > 0).all()
    assert kl_policy.grad is None or torch.count_nonzero(kl_policy.grad) == 0  # z0 is detached


def test_a_batch_of_one_kind_gives_nan_for_the_other_kinds_metrics():
    batch = BATCH._replace(desirable=torch.tensor([True, True, True, True]))
    loss, metrics = kto_loss(batch, KTOParams(beta=0.5))
    assert math.isfinite(loss.item())
    assert metrics["desirable_reward"].item() == pytest.approx(-0.125)  # 0.5 * (1 - 1 - 1 + 0) / 4
    assert math.isnan(metrics["undesirable_reward"].item()) and math.isnan(metrics["reward_margin"].item())


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="beta"):
        kto_loss(BATCH, KTOParams(beta=0.0))
    with pytest.raises(ValueError, match="undesirable_weight"):
        kto_loss(BATCH, KTOParams(undesirable_weight=-1.0))
    with pytest.raises(ValueError, match="kl_reference"):
        kto_loss(BATCH._replace(kl_reference=torch.zeros(3)), KTOParams())
    with pytest.raises(ValueError, match="desirable"):
        kto_loss(BATCH._replace(desirable=torch.tensor([True])), KTOParams())
    with pytest.raises(ValueError, match="non-empty"):
        empty = torch.zeros(0)
        kto_loss(UnpairedLogps(empty, empty, empty, empty, empty.bool()), KTOParams())


def test_weight_ratio():
    # lambda_D n_D / (lambda_U n_U) = 1.0 * 300 / (1.5 * 200) = 300 / 300 = 1
    assert weight_ratio(KTOParams(desirable_weight=1.0, undesirable_weight=1.5), 300, 200) == 1.0
    assert weight_ratio(KTOParams(), 10, 0) == math.inf
