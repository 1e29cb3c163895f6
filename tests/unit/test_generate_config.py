"""`rlhfkit generate`'s config: its own sampling defaults survive a partial override; bad values fail."""

from __future__ import annotations

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.rollout.items import GenerateConfig


def test_a_partial_sampling_override_keeps_the_commands_defaults():
    cfg = load_config(GenerateConfig, None, ["sampling.max_new_tokens=6"])
    assert cfg.sampling.max_new_tokens == 6
    # generate's own defaults, not SamplingConfig's (128 new tokens, 0.8, 512 prompt tokens)
    assert (cfg.sampling.temperature, cfg.sampling.max_prompt_length) == (0.8, 512)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("k=0", "at least 1 response"),
        ("sampling.temperature=0", "K identical responses"),
        ("batch_size=0", "batch_size"),
        ("limit=0", "limit"),
        ("max_new_tokens=8", "sampling.max_new_tokens"),
    ],
)
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(GenerateConfig, None, [override])


def test_one_response_per_prompt_is_a_rating_batch_and_may_be_greedy():
    cfg = load_config(GenerateConfig, None, ["k=1", "sampling.temperature=0"])
    assert (cfg.k, cfg.sampling.temperature) == (1, 0)
