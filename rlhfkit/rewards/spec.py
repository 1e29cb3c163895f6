"""The config side of rewards: one :class:`RewardSpec` per source, as a trainer config lists them.

In YAML::

    rewards:
      - {kind: model, path: runs/hh-demo/reward}                  # a reward model folder
      - {kind: function, path: my_rewards.py:politeness, weight: 0.5}
      - {kind: length, weight: 0.1, options: {target: 200}}
      - {kind: format, weight: 0.2, options: {pattern: '[.!?]$'}}

This module imports neither torch nor transformers: configs are validated before any model loads.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from rlhfkit.config import option

RewardKind = Literal["model", "function", "length", "format"]

# The options each kind accepts (function options are passed to the function as keyword arguments).
OPTIONS: dict[str, tuple[str, ...]] = {
    "model": ("max_length", "batch_size"),
    "length": ("target", "unit"),
    "format": ("pattern", "fullmatch"),
}
LENGTH_UNITS = ("chars", "words")


@dataclass
class RewardSpec:
    """One reward source and its weight in the summed reward."""

    kind: RewardKind = option("model", "model (a reward model folder), function, length or format")
    path: str | None = option(
        None, "model: reward model folder or name; function: 'module:function' or 'file.py:function'"
    )
    name: str | None = option(
        None, "label in the logs (default: 'model', the function's name, 'length' or 'format')"
    )
    weight: float = option(1.0, "weight of this source in the summed reward")
    options: dict[str, Any] = option(
        {},
        "model: max_length, batch_size; length: target (default 200), unit (chars|words); "
        "format: pattern (regex, required), fullmatch (default false); "
        "function: passed to the function as keyword arguments",
    )

    def __post_init__(self):
        if not math.isfinite(self.weight):
            raise ValueError(f"reward {self.label!r}: weight must be a finite number, got {self.weight}")
        if self.kind in ("model", "function") and not self.path:
            what = "a reward model folder" if self.kind == "model" else "'module:function'"
            raise ValueError(f"a {self.kind} reward needs path: {what}")
        if self.kind == "function" and ":" not in self.path:
            raise ValueError(
                f"function reward path {self.path!r} must be 'module:function' or 'file.py:function'"
            )
        if self.kind in ("length", "format") and self.path is not None:
            raise ValueError(f"a {self.kind} reward takes no path (set its options instead)")
        if self.kind in OPTIONS:
            unknown = sorted(set(self.options) - set(OPTIONS[self.kind]))
            if unknown:
                valid = ", ".join(OPTIONS[self.kind])
                raise ValueError(
                    f"reward {self.label!r}: unknown option(s) {', '.join(unknown)}; valid: {valid}"
                )
        if self.kind == "length":
            target = self.options.get("target", 200)
            if isinstance(target, bool) or not isinstance(target, int) or target <= 0:
                raise ValueError(f"length reward: target must be a positive integer, got {target!r}")
            if self.options.get("unit", "chars") not in LENGTH_UNITS:
                raise ValueError(f"length reward: unit must be one of {', '.join(LENGTH_UNITS)}")
        if self.kind == "format":
            pattern = self.options.get("pattern")
            if not isinstance(pattern, str) or not pattern:
                raise ValueError("format reward needs options.pattern, a regular expression")
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"format reward: bad pattern {pattern!r}: {err}") from err

    @property
    def label(self) -> str:
        """The name this source is logged under."""
        if self.name:
            return self.name
        if self.kind == "function" and self.path:
            return self.path.rsplit(":", 1)[-1]
        return self.kind


def check_reward_specs(specs: list[RewardSpec]) -> None:
    """Raise ValueError when there is no reward source or two sources share a label."""
    if not specs:
        raise ValueError("rewards is empty: list at least one reward source")
    labels = [s.label for s in specs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ValueError(f"reward sources share the name(s) {', '.join(twice)}; set a distinct name for each")
