import pytest

from rlhfkit.algos import AdaptiveKLController, FixedKLController


def test_fixed_controller_never_moves():
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=1000)
    assert ctl.beta == 0.05


def test_adaptive_one_update_above_target_is_clipped():
    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=256)
    # error = clip(9 / 6 - 1, -0.2, 0.2) = clip(0.5) = 0.2
    # beta  = 0.1 * (1 + 0.2 * 256 / 10000) = 0.1 * 1.00512 = 0.100512
    assert ctl.beta == pytest.approx(0.100512)


def test_adaptive_one_update_below_target():
    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=5.4, n_steps=1000)
    # error = 5.4 / 6 - 1 = -0.1 (inside the clip range)
    # beta  = 0.1 * (1 - 0.1 * 1000 / 10000) = 0.1 * 0.99 = 0.099
    assert ctl.beta == pytest.approx(0.099)


def test_adaptive_at_target_and_zero_kl():
    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=100)
    ctl.update(current_kl=6.0, n_steps=50)  # error 0 -> unchanged
    assert ctl.beta == pytest.approx(0.1)
    ctl.update(current_kl=0.0, n_steps=50)  # error clip(-1) = -0.2 -> 0.1 * (1 - 0.2 * 0.5) = 0.09
    assert ctl.beta == pytest.approx(0.09)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"init_beta": 0.0, "target": 6.0, "horizon": 10}, "init_beta"),
        ({"init_beta": 0.1, "target": -1.0, "horizon": 10}, "target"),
        ({"init_beta": 0.1, "target": 6.0, "horizon": 0}, "horizon"),
    ],
)
def test_adaptive_rejects_non_positive(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AdaptiveKLController(**kwargs)


def test_other_errors():
    with pytest.raises(ValueError, match="beta"):
        FixedKLController(-0.1)
    with pytest.raises(ValueError, match="n_steps"):
        AdaptiveKLController(0.1, 6.0, 10).update(1.0, -1)
