"""The shared ``sampling`` section (``rlhfkit.rollout.config.SamplingConfig``) of every config that samples:
its validation, each config's own defaults, and the old flat keys failing with the new key's name."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.eval.evaluate import EvalConfig
from rlhfkit.loop.config import CandidatesConfig, LoopConfig
from rlhfkit.pipeline import PipelineConfig
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.trainers.grpo import GRPOConfig
from rlhfkit.trainers.ppo import PPOConfig
from rlhfkit.trainers.rloo import RLOOConfig

SAMPLING_KEYS = [f.name for f in dataclasses.fields(SamplingConfig)]
SAMPLERS = [PPOConfig, GRPOConfig, RLOOConfig, EvalConfig, CandidatesConfig]
# each config's defaults, as they were when the keys were flat
DEFAULTS = {
    PPOConfig: (128, 48, 0.7, 0, 1.0),
    GRPOConfig: (128, 48, 0.7, 0, 1.0),
    RLOOConfig: (128, 48, 0.7, 0, 1.0),
    EvalConfig: (128, 48, 0.7, 0, 1.0),
    CandidatesConfig: (128, 48, 0.9, 0, 1.0),
}


def _values(sampling: SamplingConfig) -> tuple:
    return tuple(getattr(sampling, name) for name in SAMPLING_KEYS)


def test_the_section_module_imports_no_torch():
    code = "import sys, rlhfkit.rollout.config; sys.exit(bool({'torch', 'transformers'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_greedy_and_the_defaults_are_valid():
    assert _values(SamplingConfig()) == (128, 48, 0.7, 0, 1.0)
    SamplingConfig(temperature=0.0, top_k=1, top_p=1e-3, max_new_tokens=1, max_prompt_length=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_prompt_length": 0}, "max_prompt_length must be >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ],
)
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingConfig(**kwargs)


def test_a_bad_value_names_its_section():
    with pytest.raises(ConfigError, match=r"section 'ppo\.sampling'.*top_p must be in"):
        load_config(LoopConfig, None, ["ppo.sampling.top_p=0"])


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
def test_each_config_keeps_its_defaults_even_under_a_partial_override(cls):
    assert _values(cls().sampling) == DEFAULTS[cls]
    cfg = load_config(cls, None, ["sampling.max_new_tokens=64"])
    assert _values(cfg.sampling) == (DEFAULTS[cls][0], 64, *DEFAULTS[cls][2:])
    assert cls().sampling is not cls().sampling  # each config its own section


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
def test_the_flat_keys_are_gone_and_renamed(cls):
    names = {f.name for f in dataclasses.fields(cls)}
    assert not names & set(SAMPLING_KEYS)
    assert "use_chat_template" in names  # a prompt-rendering choice: stays flat
    assert cls.renamed_keys == SAMPLING_RENAMED_KEYS
    assert SAMPLING_RENAMED_KEYS == {name: f"sampling.{name}" for name in SAMPLING_KEYS}


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("key", SAMPLING_KEYS)
def test_an_old_flat_key_names_the_new_one(cls, key):
    with pytest.raises(ConfigError, match=rf"'{key}' was renamed: use 'sampling\.{key}'"):
        load_config(cls, None, [f"{key}=1"])


def test_ppo_max_new_tokens_override():
    with pytest.raises(ConfigError, match=r"sampling\.max_new_tokens") as err:
        load_config(PPOConfig, None, ["max_new_tokens=64"])
    assert "override 'max_new_tokens=64'" in str(err.value)
    assert load_config(PPOConfig, None, ["sampling.max_new_tokens=64"]).sampling.max_new_tokens == 64


def test_old_keys_in_a_nested_section_or_a_file_name_the_new_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'candidates\.temperature' was renamed: use 'candidates\.sam"):
        load_config(LoopConfig, None, ["candidates.temperature=1.0"])
    path = tmp_path / "demo.yaml"
    path.write_text("eval:\n  max_new_tokens: 64\n")
    with pytest.raises(ConfigError, match=r"'eval\.max_new_tokens' was renamed: use 'eval\.sampling\."):
        load_config(PipelineConfig, path)
    path.write_text("ppo:\n  sampling:\n    max_new_tokens: 64\n    temperature: 1.0\n")
    cfg = load_config(PipelineConfig, path)
    assert (cfg.ppo.sampling.max_new_tokens, cfg.ppo.sampling.temperature) == (64, 1.0)


def test_dpo_and_sft_keep_their_own_max_prompt_length():
    cfg = load_config(PipelineConfig, None, ["sft.max_prompt_length=100"])
    assert cfg.sft.max_prompt_length == 100
    assert load_config(LoopConfig, None, ["dpo.max_prompt_length=100"]).dpo.max_prompt_length == 100


@pytest.mark.parametrize("cls", SAMPLERS, ids=lambda c: c.__name__)
def test_training_and_eval_still_refuse_greedy_sampling(cls):
    with pytest.raises(ConfigError, match=r"sampling\.temperature must be > 0"):
        load_config(cls, None, ["sampling.temperature=0"])
