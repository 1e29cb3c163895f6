import math

import pytest
import torch

from rlhfkit.losses import grpo_loss, rloo_loss

EPS = 0.2
LN2 = math.log(2.0)
# Two sequences; row 1 has one padded token (whose ratio 7.0 must not count anywhere).
RATIOS = [[1.0, 1.5, 0.5], [1.0, 1.1, 7.0]]
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
OLD = torch.zeros(2, 3)


def _logprobs(requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor([[math.log(r) for r in row] for row in RATIOS], requires_grad=requires_grad)


def _ref(logprobs: torch.Tensor) -> torch.Tensor:
    # ref - logp = ln 2 at token (0, 1), 0 elsewhere: k3 = e^{ln 2} - ln 2 - 1 = 1 - ln 2 = 0.306853 there
    return logprobs.detach() + torch.tensor([[0.0, LN2, 0.0], [0.0, 0.0, 0.0]])


# Per-token clipped surrogate max(-A r, -A clip(r, 0.8, 1.2)) with A = [+1, -2]:
#   row 0 (A = +1): r = 1   -> -1
#                   r = 1.5 -> max(-1.5, -1.2) = -1.2   (clipped)
#                   r = 0.5 -> max(-0.5, -0.8) = -0.5
#   row 1 (A = -2): r = 1   -> 2 ; r = 1.1 -> max(2.2, 2.2) = 2.2 ; padding ignored
ADV = torch.tensor([1.0, -2.0])


@pytest.mark.parametrize(
    ("aggregation", "beta", "expected"),
    [
        # token: (-1 - 1.2 - 0.5 + 2 + 2.2) / 5 tokens = 1.5 / 5 = 0.3
        ("token", 0.0, 0.3),
        # sequence: row 0 mean -2.7 / 3 = -0.9 ; row 1 mean 4.2 / 2 = 2.1 ; (-0.9 + 2.1) / 2 = 0.6
        ("sequence", 0.0, 0.6),
        # + beta * k3: 0.1 * 0.306853 = 0.0306853 at one token
        #   token: 0.3 + 0.0306853 / 5 = 0.3061371
        ("token", 0.1, 0.3061371),
        #   sequence: row 0 (-2.7 + 0.0306853) / 3 = -0.8897716 ; (-0.8897716 + 2.1) / 2 = 0.6051142
        ("sequence", 0.1, 0.6051142),
    ],
)
def test_grpo_loss_by_hand(aggregation, beta, expected):
    logp = _logprobs()
    loss, metrics = grpo_loss(logp, OLD, ADV, MASK, _ref(logp), beta, EPS, aggregation)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["policy_loss"].item() == pytest.approx(0.3 if aggregation == "token" else 0.6, abs=1e-6)
    assert metrics["kl"].item() == pytest.approx((1 - LN2) / 5, abs=1e-6)  # k3 mean over 5 tokens
    assert metrics["clip_frac"].item() == pytest.approx(1 / 5)  # token (0, 1)
    assert metrics["ratio"].item() == pytest.approx((1 + 1.5 + 0.5 + 1 + 1.1) / 5)  # 1.02
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())


def test_grpo_loss_gradient_token_mode():
    logp = _logprobs(requires_grad=True)
    loss, _ = grpo_loss(logp, OLD, ADV, MASK, _ref(logp), 0.1, EPS, "token")
    loss.backward()
    # surrogate: d(-A r)/d logp = -A r, divided by 5 tokens; clipped token (0, 1) has none
    #   (0,0): -1 * 1 / 5 = -0.2 ; (0,2): -1 * 0.5 / 5 = -0.1 ; (1,0): 2 * 1 / 5 = 0.4 ; (1,1): 2.2 / 5 = 0.44
    # k3: d(e^{ref - logp} - (ref - logp) - 1)/d logp = 1 - e^{ref - logp} = 1 - 2 = -1 at (0, 1)
    #   times beta / 5 = -0.02
    expected = torch.tensor([[-0.2, -0.02, -0.1], [0.4, 0.44, 0.0]])
    torch.testing.assert_close(logp.grad, expected)


def test_grpo_loss_without_reference():
    loss, metrics = grpo_loss(_logprobs(), OLD, ADV, MASK, None, 0.0, EPS, "token")
    assert loss.item() == pytest.approx(0.3, abs=1e-6)
    assert metrics["kl"].item() == 0.0
    with pytest.raises(ValueError, match="beta > 0 needs ref_logprobs"):
        grpo_loss(_logprobs(), OLD, ADV, MASK, None, 0.1)


def test_grpo_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown aggregation 'seq'"):
        grpo_loss(_logprobs(), OLD, ADV, MASK, aggregation="seq")
    with pytest.raises(ValueError, match=r"advantages must be \(B,\)"):
        grpo_loss(_logprobs(), OLD, ADV[:, None].expand(2, 3), MASK)
    with pytest.raises(ValueError, match="old_logprobs"):
        grpo_loss(_logprobs(), OLD[:, :2], ADV, MASK)


# RLOO with A = [-1, -2]
A_RLOO = torch.tensor([-1.0, -2.0])


@pytest.mark.parametrize(
    ("aggregation", "clip_eps", "expected", "clip_frac"),
    [
        # sequence ratios: row 0 exp(ln 1 + ln 1.5 + ln 0.5) = 0.75 ; row 1 exp(ln 1 + ln 1.1) = 1.1 (pad out)
        #   row 0: max(0.75, 0.8) = 0.8 (clipped) ; row 1: max(2.2, 2.2) = 2.2 ; (0.8 + 2.2) / 2 = 1.5
        ("sequence", EPS, 1.5, 1 / 2),
        #   no clipping: (0.75 + 2.2) / 2 = 1.475
        ("sequence", None, 1.475, 0.0),
        # token ratios, A broadcast: row 0: 1, max(1.5, 1.2) = 1.5, max(0.5, 0.8) = 0.8 (clipped)
        #   row 1: 2, 2.2 ; (1 + 1.5 + 0.8 + 2 + 2.2) / 5 = 7.5 / 5 = 1.5
        ("token", EPS, 1.5, 1 / 5),
        #   no clipping: (1 + 1.5 + 0.5 + 2 + 2.2) / 5 = 7.2 / 5 = 1.44
        ("token", None, 1.44, 0.0),
    ],
)
def test_rloo_loss_by_hand(aggregation, clip_eps, expected, clip_frac):
    loss, metrics = rloo_loss(_logprobs(), OLD, A_RLOO, MASK, clip_eps, aggregation)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["clip_frac"].item() == pytest.approx(clip_frac)


def test_rloo_on_policy_gradient_is_reinforce():
    # ratio = 1 everywhere: the gradient is -A_b / B on every valid token of sequence b,
    # i.e. -mean_b A_b * grad sum_t log pi(y_t) (Ahmadian et al. 2024)
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    loss, metrics = rloo_loss(logp, logp.detach(), A_RLOO, MASK, EPS, "sequence")
    loss.backward()
    # row 0: -(-1) / 2 = 0.5 ; row 1: -(-2) / 2 = 1.0 ; padding 0
    torch.testing.assert_close(logp.grad, torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]]))
    assert metrics["ratio"].item() == 1.0


def test_rloo_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="clip_eps must be > 0"):
        rloo_loss(_logprobs(), OLD, A_RLOO, MASK, 0.0)
    with pytest.raises(ValueError, match="unknown aggregation"):
        rloo_loss(_logprobs(), OLD, A_RLOO, MASK, aggregation="mean")
