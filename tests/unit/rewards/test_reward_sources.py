"""Reward sources: checked outputs with named errors, rule rewards, and the weighted sum by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.data import join_prompt_response
from rlhfkit.models.loading import load_reward_model
from rlhfkit.models.reward import load_reward_tokenizer, score_texts
from rlhfkit.rewards import (
    CombinedReward,
    FormatReward,
    FunctionReward,
    LengthReward,
    ModelReward,
    RewardError,
    RewardSpec,
    build_reward,
    check_reward_specs,
    load_function,
)

PROMPTS = ["Q0", "Q1", "Why is the sky blue?", "Q3"]
COMPLETIONS = ["fine", "ok", "boom", "sure"]


def explode(prompts, completions):
    return [1.0 / (c != "boom") for c in completions]  # ZeroDivisionError on "boom"


def too_short(prompts, completions):
    return [1.0] * (len(completions) - 1)


def has_nan(prompts, completions):
    return [math.nan if c == "ok" else 0.0 for c in completions]


def not_a_number(prompts, completions):
    return [0.0, 0.0, 0.0, "high"]


def test_a_raising_function_names_itself_and_the_prompt_index():
    with pytest.raises(RewardError) as err:
        FunctionReward(explode)(PROMPTS, COMPLETIONS)
    msg = str(err.value)
    assert "reward function 'explode' raised ZeroDivisionError" in msg
    assert "prompt index 2" in msg and "Why is the sky blue?" in msg


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (too_short, r"'function too_short' returned 3 scores for 4 completions; prompt index 3 has no score"),
        (has_nan, r"'function has_nan' returned nan for prompt index 1 \('Q1'\): not finite"),
        (not_a_number, r"'function not_a_number' returned 'high' \(str\) for prompt index 3"),
    ],
)
def test_bad_scores_name_the_function_and_the_prompt_index(fn, expected):
    with pytest.raises(RewardError, match=expected):
        FunctionReward(fn)(PROMPTS, COMPLETIONS)


def test_function_kwargs_and_array_outputs():
    def contains(prompts, completions, word):
        return torch.tensor([float(word in c) for c in completions])

    scores = FunctionReward(contains, kwargs={"word": "o"})(PROMPTS, COMPLETIONS)
    torch.testing.assert_close(scores, torch.tensor([0.0, 1.0, 1.0, 0.0]))


def test_load_function_from_a_file_or_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def short(prompts, completions):\n    return [0.0] * len(prompts)\n"
    )
    assert load_function(f"{tmp_path / 'my_rewards.py'}:short")(["p"], ["c"]) == [0.0]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_function("my_rewards:short")(["p"], ["c"]) == [0.0]
    with pytest.raises(RewardError, match="has no callable 'long'"):
        load_function("my_rewards:long")
    with pytest.raises(RewardError, match="cannot import 'no_such_module_xyz'"):
        load_function("no_such_module_xyz:f")


def test_rule_rewards():
    completions = ["Yes.", "no way", ""]
    # length, target 4 chars: -|4 - 4| / 4 = 0 ; -|6 - 4| / 4 = -0.5 ; -|0 - 4| / 4 = -1
    torch.testing.assert_close(LengthReward(4)(["p"] * 3, completions), torch.tensor([0.0, -0.5, -1.0]))
    # words, target 2: -|1 - 2| / 2 = -0.5 ; 0 ; -1
    torch.testing.assert_close(
        LengthReward(2, "words")(["p"] * 3, completions), torch.tensor([-0.5, 0.0, -1.0])
    )
    torch.testing.assert_close(FormatReward(r"[.!?]$")(["p"] * 3, completions), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(
        FormatReward(r"[a-z ]+", fullmatch=True)(["p"] * 3, completions), torch.tensor([0.0, 1.0, 0.0])
    )


def test_mixed_rewards_per_source_and_weighted_sum_by_hand(tmp_path):
    (tmp_path / "r.py").write_text(
        "def words(prompts, completions):\n    return [len(c.split()) for c in completions]\n"
    )
    specs = [
        RewardSpec(kind="function", path=f"{tmp_path / 'r.py'}:words", weight=0.5),
        RewardSpec(kind="length", weight=2.0, options={"target": 4}),
        RewardSpec(kind="format", weight=1.0, options={"pattern": r"[.!?]$"}),
    ]
    reward = build_reward(specs)
    assert reward.names == ["words", "length", "format"]
    batch = reward(["Q1", "Q2"], ["Yes.", "no way"])
    # words:  "Yes." -> 1 ; "no way" -> 2
    # length (target 4 chars): "Yes." 4 -> 0 ; "no way" 6 -> -|6 - 4| / 4 = -0.5
    # format (ends with . ! ?): 1 ; 0
    # total: 0.5 * 1 + 2 * 0 + 1 * 1 = 1.5 ; 0.5 * 2 + 2 * (-0.5) + 1 * 0 = 0
    torch.testing.assert_close(batch.per_source["words"], torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(batch.per_source["length"], torch.tensor([0.0, -0.5]))
    torch.testing.assert_close(batch.per_source["format"], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(batch.total, torch.tensor([1.5, 0.0]))
    metrics = batch.metrics()
    # means: total (1.5 + 0) / 2 = 0.75 ; words 1.5 ; length -0.25 ; format 0.5
    # unbiased std of two values a, b: |a - b| / sqrt(2): 1.5 / 1.41421 = 1.06066 ; 1 / 1.41421 = 0.70711 ;
    #   0.5 / 1.41421 = 0.35355
    expected = {
        "reward": 0.75,
        "reward_std": 1.06066,
        "reward/words": 1.5,
        "reward_std/words": 0.70711,
        "reward/length": -0.25,
        "reward_std/length": 0.35355,
        "reward/format": 0.5,
        "reward_std/format": 0.70711,
    }
    assert metrics == pytest.approx(expected, abs=1e-5)


def test_the_combined_reward_checks_every_source():
    class Broken:
        name = "broken"

        def __call__(self, prompts, completions):
            return torch.tensor([0.0, math.inf])

    with pytest.raises(RewardError, match=r"'broken' returned inf for prompt index 1"):
        CombinedReward([(LengthReward(4), 1.0), (Broken(), 1.0)])(["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="share the name"):
        CombinedReward([(LengthReward(4), 1.0), (LengthReward(8), 1.0)])


def test_reward_specs_are_validated():
    with pytest.raises(ValueError, match="needs path"):
        RewardSpec(kind="model")
    with pytest.raises(ValueError, match="'module:function'"):
        RewardSpec(kind="function", path="my_rewards")
    with pytest.raises(ValueError, match="unknown option.*targte; valid: target, unit"):
        RewardSpec(kind="length", options={"targte": 10})
    with pytest.raises(ValueError, match="options.pattern"):
        RewardSpec(kind="format")
    with pytest.raises(ValueError, match="bad pattern"):
        RewardSpec(kind="format", options={"pattern": "("})
    with pytest.raises(ValueError, match="share the name"):
        check_reward_specs([RewardSpec(kind="length"), RewardSpec(kind="length", options={"target": 9})])
    with pytest.raises(ValueError, match="rewards is empty"):
        check_reward_specs([])
    assert RewardSpec(kind="function", path="pkg.mod:score").label == "score"
    assert RewardSpec(kind="length", name="short").label == "short"


def test_model_reward_scores_like_ppo_did(tiny_bert_reward_dir):
    prompts = ["\n\nHuman: Is it good?\n\nAssistant:", [{"role": "user", "content": "Hi"}]]
    completions = ["Yes, it is good.", "Hello there."]
    scores = ModelReward(str(tiny_bert_reward_dir), max_length=64)(prompts, completions)
    model, tok = (
        load_reward_model(str(tiny_bert_reward_dir)),
        load_reward_tokenizer(str(tiny_bert_reward_dir)),
    )
    texts = [join_prompt_response(p, c) for p, c in zip(prompts, completions, strict=True)]
    torch.testing.assert_close(scores, score_texts(model, tok, texts, 64))


def test_reward_lists_load_from_yaml_with_named_errors(tmp_path):
    from rlhfkit.config import ConfigError, load_config
    from rlhfkit.trainers.grpo import GRPOConfig

    path = tmp_path / "grpo.yaml"
    path.write_text(
        "rewards:\n"
        "  - {kind: model, path: runs/rm}\n"
        "  - {kind: format, name: full_stop, weight: 0.2, options: {pattern: '[.!?]$'}}\n"
    )
    cfg = load_config(GRPOConfig, path)
    assert [(r.label, r.weight) for r in cfg.rewards] == [("model", 1.0), ("full_stop", 0.2)]
    with pytest.raises(ConfigError, match=r"rewards\[1\].*options.pattern"):
        load_config(GRPOConfig, path, ["rewards=[{kind: length}, {kind: format}]"])
    with pytest.raises(ConfigError, match=r"did you mean 'rewards\[0\].weight'"):
        load_config(GRPOConfig, path, ["rewards=[{kind: length, wieght: 2}]"])
