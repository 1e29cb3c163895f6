"""Renamed keys: a section's ``renamed_keys`` turns an old key into an error that names the new one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from rlhfkit.config import ConfigError, describe_config, load_config, option


@dataclass
class Sampling:
    max_new_tokens: int = option(32, "cap on sampled tokens")
    temperature: float = option(1.0, "sampling temperature")


@dataclass
class Stage:
    renamed_keys: ClassVar[dict[str, str]] = {
        "max_new_tokens": "sampling.max_new_tokens",
        "temperature": "sampling.temperature",
        "old_lr": "lr",
    }

    lr: float = option(1e-5, "learning rate")
    sampling: Sampling = option(Sampling, "how to sample")


@dataclass
class Recipe:
    seed: int = option(0, "random seed")
    ppo: Stage = option(Stage, "the RL stage")


def test_renamed_key_in_override_names_the_new_key_and_the_override():
    with pytest.raises(ConfigError) as err:
        load_config(Recipe, overrides=["ppo.max_new_tokens=64"])
    msg = str(err.value)
    assert "override 'ppo.max_new_tokens=64'" in msg
    assert "'ppo.max_new_tokens' was renamed: use 'ppo.sampling.max_new_tokens'" in msg


def test_renamed_key_at_the_top_level():
    with pytest.raises(ConfigError, match=r"'temperature' was renamed: use 'sampling\.temperature'"):
        load_config(Stage, overrides=["temperature=0.7"])
    with pytest.raises(ConfigError, match=r"'old_lr' was renamed: use 'lr'"):
        load_config(Stage, overrides=["old_lr=1e-4"])


def test_renamed_key_in_file_names_the_file(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("ppo:\n  temperature: 0.7\n")
    with pytest.raises(ConfigError) as err:
        load_config(Recipe, path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ")
    assert "'ppo.temperature' was renamed: use 'ppo.sampling.temperature'" in msg


def test_renamed_key_in_base_is_rejected_too():
    with pytest.raises(ConfigError, match="'ppo.max_new_tokens' was renamed"):
        load_config(Recipe, base={"ppo": {"max_new_tokens": 8}})


def test_new_keys_load_and_renamed_keys_are_not_fields():
    cfg = load_config(Recipe, overrides=["ppo.sampling.max_new_tokens=64", "ppo.sampling.temperature=0.5"])
    assert cfg.ppo.sampling == Sampling(max_new_tokens=64, temperature=0.5)
    with pytest.raises(TypeError):
        Stage(renamed_keys={})  # a ClassVar, not an init field


def test_renamed_keys_do_not_appear_in_help():
    text = describe_config(Recipe)
    assert "renamed" not in text and "old_lr" not in text
    assert "  ppo.max_new_tokens" not in text and "  ppo.sampling.max_new_tokens (int, default 32)" in text


def test_unknown_key_still_suggests_when_not_renamed():
    with pytest.raises(ConfigError, match=r"did you mean 'ppo\.sampling\.temperature'"):
        load_config(Recipe, overrides=["ppo.sampling.temprature=0.5"])
