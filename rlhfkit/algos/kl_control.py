"""Controllers for the KL-penalty coefficient beta.

Notation:
    beta: coefficient of the per-token KL penalty in ``kl_shaped_rewards``.

Both controllers expose ``.beta`` and ``.update(current_kl, n_steps)``; trainers call ``update``
once per rollout batch with the measured KL (per sequence, summed over tokens) and the number
of samples (or steps) it covers.
"""

from __future__ import annotations


class FixedKLController:
    """Constant beta; ``update`` does nothing.

    Args:
        beta: KL coefficient, ``>= 0``.

    Raises:
        ValueError: if ``beta < 0``.
    """

    def __init__(self, beta: float) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op: the coefficient stays fixed."""


class AdaptiveKLController:
    """Proportional controller steering the measured KL towards a target (Ziegler et al. 2019, Sec. 2.2).

    The paper's rule is ``e = clip(KL / KL_target - 1, -0.2, 0.2)``, ``beta <- beta * (1 + K_beta * e)``.
    Following the released lm-human-preferences code, ``K_beta = n_steps / horizon``, so beta
    can change by a factor ``exp(+-0.2)`` roughly every ``horizon`` steps::

        beta <- beta * (1 + clip(current_kl / target - 1, -0.2, 0.2) * n_steps / horizon)

    Args:
        init_beta: starting coefficient, ``> 0``.
        target: KL the controller aims for, ``> 0``.
        horizon: number of steps over which beta adapts, ``> 0``.

    Raises:
        ValueError: if any argument is not positive.
    """

    def __init__(self, init_beta: float, target: float, horizon: int) -> None:
        for name, val in (("init_beta", init_beta), ("target", target), ("horizon", horizon)):
            if not val > 0:
                raise ValueError(f"{name} must be > 0, got {val}")
        self.beta = float(init_beta)
        self.target = float(target)
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Multiply beta by ``1 + clip(current_kl / target - 1, -0.2, 0.2) * n_steps / horizon``.

        Args:
            current_kl: measured KL(policy || reference) of the latest batch.
            n_steps: number of steps (samples) the measurement covers, ``>= 0``.

        Raises:
            ValueError: if ``n_steps < 0``.
        """
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_steps / self.horizon
