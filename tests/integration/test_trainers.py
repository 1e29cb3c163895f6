"""Every trainer runs real steps on tiny local models, and its metric moves the right way."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rlhfkit.data.split import DataConfig
from rlhfkit.eval.evaluate import EvalConfig, evaluate
from rlhfkit.eval.rouge import rouge_l
from rlhfkit.models.value import ValueModel
from rlhfkit.rewards import RewardSpec
from rlhfkit.rollout.config import SamplingConfig
from rlhfkit.trainers import ppo, reward, sft
from rlhfkit.trainers.ppo import PPOConfig, train_ppo
from rlhfkit.trainers.reward import RewardConfig, train_reward
from rlhfkit.trainers.sft import SFTConfig, train_sft


def _data(path, **kw) -> DataConfig:
    return DataConfig(path=str(path), eval_fraction=0.25, **kw)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_sft_lowers_the_held_out_response_loss(
    tiny_policy_dir, toy_preferences, tmp_path, autocast_spy, bf16
):
    autocast_spy.watch(sft, "next_token_logprobs")
    out = tmp_path / "sft"
    summary = train_sft(
        SFTConfig(
            model=str(tiny_policy_dir),
            output_dir=str(out),
            data=_data(toy_preferences),
            max_steps=30,
            batch_size=8,
            lr=2e-3,
            threads=2,
            bf16=bf16,
        )
    )
    assert summary["eval_nll"] < summary["eval_nll_before"] - 0.5
    if bf16:
        autocast_spy.check_bf16_run(["next_token_logprobs"], out)
    assert summary["train_loss_last"] < summary["train_loss_first"]
    # the saved policy is a plain transformers model
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30 and "loss" in json.loads(lines[0])


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_reward_training_raises_pair_accuracy(tiny_reward_dir, toy_hh_file, tmp_path, autocast_spy, bf16):
    autocast_spy.watch(reward, "reward_scores")
    autocast_spy.watch(reward, "score_texts")  # evaluation and normalisation
    out = tmp_path / "rm"
    summary = train_reward(
        RewardConfig(
            model=str(tiny_reward_dir),
            output_dir=str(out),
            data=_data(toy_hh_file),
            max_steps=40,
            batch_size=8,
            lr=2e-3,
            threads=2,
            bf16=bf16,
        )
    )
    assert summary["eval_accuracy"] >= 0.9
    assert summary["eval_accuracy"] > summary["eval_accuracy_before"]
    if bf16:
        autocast_spy.check_bf16_run(["reward_scores", "score_texts"], out)
    assert summary["normalized_from_std"] > 0  # the head was rescaled to unit std on training responses
    # the saved reward model loads in plain transformers; its single logit is the reward
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    good = "\n\nHuman: Is it nice?\n\nAssistant: Yes, it is good."
    bad = "\n\nHuman: Is it nice?\n\nAssistant: No, it is bad."
    with torch.no_grad():
        logits = model(**tokenizer([good, bad], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 1)
    assert logits[0, 0] > logits[1, 0]


def _count_a(prompts, completions):
    """Toy reward: how many times the letter 'a' appears in the completion."""
    return [float(c.count("a")) for c in completions]


def _toy_ppo(dirs, out, shared_value_head, batch: tuple[int, int, int], lr: float, **kw) -> PPOConfig:
    """PPO of the tiny policy on the toy prompts (``dirs``: policy, value model, data), rewarded by
    :func:`_count_a`, with a value model or the value head on the policy; ``batch``: prompts per
    rollout, minibatch size, PPO epochs; ``lr`` for the policy and the value function."""
    policy_dir, value_dir, preferences = dirs
    batch_size, mini_batch_size, ppo_epochs = batch
    return PPOConfig(
        policy=str(policy_dir),
        reward_model=None,
        value_model=None if shared_value_head else str(value_dir),
        shared_value_head=shared_value_head,
        output_dir=str(out),
        data=_data(preferences),
        sampling=SamplingConfig(max_new_tokens=12, temperature=1.0),
        batch_size=batch_size,
        mini_batch_size=mini_batch_size,
        ppo_epochs=ppo_epochs,
        lr=lr,
        missing_eos_penalty=0.0,
        **{"value_lr": lr, **kw},
    )


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shared_value_head", [False, True])
def test_ppo_raises_a_toy_reward_with_finite_kl(
    tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path, autocast_spy, shared_value_head, bf16
):
    autocast_spy.watch(ppo, "response_logprobs")
    autocast_spy.watch(ppo, "rollout")
    autocast_spy.watch(ValueModel, "forward")
    autocast_spy.watch(sys.modules[__name__], "_count_a")  # the reward, called by the trainer
    dirs = (tiny_policy_dir, tiny_reward_dir, toy_preferences)
    cfg = _toy_ppo(
        dirs, tmp_path / "ppo", shared_value_head, (8, 4, 2), 3e-3, steps=30, kl_coef=0.02, bf16=bf16
    )
    summary = train_ppo(cfg, reward_fn=_count_a)
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["score"] for r in rows[:5]) / 5
    last = sum(r["score"] for r in rows[-5:]) / 5
    assert last > first + 1.0
    assert all(torch.isfinite(torch.tensor(r["kl"])) for r in rows)
    assert summary["kl_last"] > 0  # the policy moved away from the reference
    for key in ("score", "kl", "entropy", "policy_loss", "value_loss", "clip_frac", "response_length"):
        assert key in rows[0]
    if shared_value_head:  # the head starts at zero and learns to predict the returns (~ the score)
        assert abs(rows[0]["value_mean"]) < 0.25
        late = rows[-5:]
        assert sum(r["value_mean"] for r in late) > 0.7 * sum(r["score"] for r in late)
    AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")
    if bf16:
        forwards = ["response_logprobs", "rollout", "_count_a"] + ([] if shared_value_head else ["forward"])
        autocast_spy.check_bf16_run(forwards, tmp_path / "ppo")


@pytest.mark.parametrize("shared_value_head", [False, True])
def test_ppo_old_outputs_from_the_first_update_equal_a_separate_pass(
    tiny_policy_dir, tiny_reward_dir, toy_preferences, tmp_path, monkeypatch, shared_value_head
):
    """One minibatch per epoch: the old logprobs and values taken from the first update's forward give
    the same run (metrics and trained weights, to 1e-5) as a separate no-grad pass."""

    def run(name):
        dirs = (tiny_policy_dir, tiny_reward_dir, toy_preferences)
        cfg = _toy_ppo(dirs, tmp_path / name, shared_value_head, (4, 4, 2), 1e-2, steps=2)
        train_ppo(cfg, reward_fn=_count_a)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return rows, load_file(tmp_path / name / "model.safetensors")

    fused_rows, fused_weights = run("fused")
    monkeypatch.setattr(ppo, "_fused_first_update", lambda cfg: False)
    plain_rows, plain_weights = run("plain")
    for fused, plain in zip(fused_rows, plain_rows, strict=True):
        for key in ("score", "kl", "policy_loss", "value_loss", "clip_frac", "entropy"):
            assert fused[key] == pytest.approx(plain[key], abs=1e-5), key
    assert fused_rows[-1]["policy_loss"] != 0.0
    # the weights: Adam turns float noise in a near-zero gradient into a step of up to lr (1e-2), so a few
    # entries may differ by more than rounding; any real difference would move every entry
    initial = load_file(tiny_policy_dir / "model.safetensors")
    for name, weight in plain_weights.items():
        gap = (fused_weights[name] - weight).abs()
        moved = (weight - initial[name]).abs().mean()
        assert moved > 1e-3 and gap.mean() < 1e-3 * moved and gap.max() < 1e-3, name


@pytest.fixture(scope="module")
def ppo_with_bert_reward(tiny_policy_dir, tiny_bert_reward_dir, toy_preferences, tmp_path_factory):
    """A short PPO run whose reward and value models use a different tokenizer than the policy."""
    out = tmp_path_factory.mktemp("ppo_bert") / "ppo"
    cfg = PPOConfig(
        policy=str(tiny_policy_dir),
        reward_model=str(tiny_bert_reward_dir),
        output_dir=str(out),
        data=_data(toy_preferences),
        steps=2,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=1,
        sampling=SamplingConfig(max_new_tokens=8),
        adaptive_kl=True,
        kl_estimator="k3",
        threads=2,
    )
    return out, train_ppo(cfg)


def test_ppo_with_a_reward_model_of_another_tokenizer(ppo_with_bert_reward):
    out, summary = ppo_with_bert_reward
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert all(torch.isfinite(torch.tensor([r["score"], r["kl"], r["value_loss"]])).all() for r in rows)
    assert rows[1]["beta"] != rows[0]["beta"]  # the adaptive controller moved beta


def test_eval_reports_a_win_rate(
    ppo_with_bert_reward, tiny_policy_dir, tiny_bert_reward_dir, toy_preferences, tmp_path
):
    ppo_dir, _ = ppo_with_bert_reward
    summary = evaluate(
        EvalConfig(
            baseline=str(tiny_policy_dir),
            policies=[str(ppo_dir)],
            judges=[RewardSpec(kind="model", path=str(tiny_bert_reward_dir))],
            output_dir=str(tmp_path / "eval"),
            data=_data(toy_preferences),
            num_prompts=8,
            sampling=SamplingConfig(max_new_tokens=8),
            batch_size=4,
            n_boot=200,
            threads=2,
        )
    )
    assert summary["prompts"] == 8
    row = summary["policies"]["ppo"]
    assert 0.0 <= row["win_low"] <= row["win_rate"] <= row["win_high"] <= 1.0
    assert summary["policies"][tiny_policy_dir.name]["kl"] == pytest.approx(0.0, abs=1e-4)  # reference itself
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and set(samples[0]) == {"prompt", tiny_policy_dir.name, "ppo"}


def _nice_prompt(prompts, completions):
    """Toy reward that the prompt alone decides: 1 for the "nice" question, 0 for the other."""
    return [float("nice" in str(p)) for p in prompts]


def test_ppo_value_warmup_and_explained_variance_rises(tiny_policy_dir, tmp_path):
    """A value head on the policy's detached features, warmed up with the policy frozen: the policy does
    not move during the warm-up, and the explained variance of the values (measured on each new rollout,
    before its update) rises from 0 (a zero head) to well above 0 within the first rollouts. The reward is
    decided by which of two prompts was asked, which the policy's features show."""
    prompts = tmp_path / "prompts.jsonl"
    questions = ["Is it nice?", "Where is the station?"]
    prompts.write_text("".join(json.dumps({"prompt": questions[i % 2]}) + "\n" for i in range(32)))
    cfg = _toy_ppo(
        (tiny_policy_dir, None, prompts),
        tmp_path / "ppo",
        True,
        (8, 8, 2),
        1e-4,
        steps=6,
        kl_coef=0.0,
        value_trunk_grad=False,
        value_warmup_steps=4,
        value_lr=1e-2,
    )
    summary = train_ppo(cfg, reward_fn=_nice_prompt)
    rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["value_warmup"] for r in rows] == [1.0] * 4 + [0.0] * 2
    assert all(r["kl"] == pytest.approx(0.0, abs=1e-5) for r in rows[:5])  # the policy is still the reference
    assert rows[0]["explained_variance"] == pytest.approx(0.0, abs=1e-6)  # a zero head: V = 0, EV = 0
    assert rows[3]["explained_variance"] > 0.5
    assert (
        summary["windows"]["explained_variance_last"] > summary["windows"]["explained_variance_first"] + 0.5
    )


def test_eval_tables_under_two_judges_match_a_hand_count(
    tiny_policy_dir, tiny_gpt2_policy_dir, toy_preferences, tmp_path
):
    """Two rule judges (response length in characters, and a regex), two policies, 2 samples per prompt:
    every number of the summary is recomputed here from samples.jsonl by plain loops."""
    judges = [
        RewardSpec(kind="length", name="length", options={"target": 20}),
        RewardSpec(kind="format", name="has_e", options={"pattern": "e"}),
    ]
    summary = evaluate(
        EvalConfig(
            baseline=str(tiny_policy_dir),
            policies=[str(tiny_gpt2_policy_dir)],
            judges=judges,
            output_dir=str(tmp_path / "eval"),
            data=_data(toy_preferences),
            samples_per_prompt=2,
            sampling=SamplingConfig(max_new_tokens=8, temperature=1.0),
            batch_size=8,
            n_boot=200,
            threads=2,
        )
    )
    base, tuned = tiny_policy_dir.name, tiny_gpt2_policy_dir.name
    rows = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert summary["prompts"] == 16 and len(rows) == 32  # every held-out prompt, 2 samples each
    assert list(summary["judges"]) == ["length", "has_e"]
    rules = {
        "length": lambda text: -abs(len(text) - 20) / 20,
        "has_e": lambda text: float("e" in text),
    }
    for judge, rule in rules.items():
        per_policy = {}
        for name in (base, tuned):
            scores = [rule(r[name]["response"]) for r in rows]
            assert [r[name]["scores"][judge] for r in rows] == pytest.approx(scores, abs=1e-4)
            per_policy[name] = scores
            assert summary["policies"][name]["judges"][judge]["score"] == pytest.approx(sum(scores) / 32)
        outcomes, diffs = [], []
        for i in range(16):  # per prompt: the mean over its 2 samples
            pairs = [(per_policy[tuned][2 * i + j], per_policy[base][2 * i + j]) for j in range(2)]
            outcomes.append(sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / 2)
            diffs.append(sum(a - b for a, b in pairs) / 2)
        entry = summary["policies"][tuned]["judges"][judge]
        assert entry["win_rate"] == pytest.approx(sum(outcomes) / 16)
        assert entry["diff"] == pytest.approx(sum(diffs) / 16, abs=1e-6)
        assert entry["win_low"] <= entry["win_rate"] <= entry["win_high"]
        assert entry["diff_low"] <= entry["diff"] <= entry["diff_high"]
    # the flat fields are the first judge's; the baseline has no comparison
    assert (
        summary["policies"][tuned]["win_rate"] == summary["policies"][tuned]["judges"]["length"]["win_rate"]
    )
    assert "win_rate" not in summary["policies"][base]["judges"]["length"]


def test_eval_on_tldr_posts_reports_rouge_l_against_the_references(
    tiny_policy_dir, tiny_gpt2_policy_dir, tldr_row, tmp_path
):
    """The whole eval path on summarize-from-feedback rows: ROUGE-L and words recomputed from samples."""

    posts = [f"p{i}" for i in range(16)]
    refs = {p: f" the reference of post {p}" for p in posts[::2]}  # odd posts have no reference
    rows = [
        tldr_row(
            p, [(" a model summary", "sup1"), (refs.get(p, " another one"), "ref" if p in refs else "x")]
        )
        for p in posts
    ]
    path = tmp_path / "tldr.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base, tuned = tiny_policy_dir.name, tiny_gpt2_policy_dir.name
    summary = evaluate(
        EvalConfig(
            baseline=str(tiny_policy_dir),
            policies=[str(tiny_gpt2_policy_dir)],
            judges=[RewardSpec(kind="length", name="length", options={"target": 20})],
            output_dir=str(tmp_path / "eval"),
            data=DataConfig(path=str(path), format="tldr", eval_fraction=0.5, max_query_chars=200),
            sampling=SamplingConfig(max_new_tokens=8, temperature=1.0),
            batch_size=8,
            n_boot=200,
            threads=2,
        )
    )
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    post_of = [r["prompt"].split("POST: The post ")[1].split(".")[0] for r in samples]
    with_ref = [i for i, p in enumerate(post_of) if p in refs]
    assert 0 < len(with_ref) < len(samples)  # the split holds posts with and without a reference
    assert summary["references"] == {
        "prompts": len(with_ref),
        "mean_words": pytest.approx(sum(len(refs[post_of[i]].split()) for i in with_ref) / len(with_ref)),
    }
    scores = {}
    for name in (base, tuned):
        row = summary["policies"][name]
        texts = [r[name]["response"] for r in samples]
        assert row["mean_words"] == pytest.approx(sum(len(t.split()) for t in texts) / len(texts))
        scores[name] = [rouge_l(refs[post_of[i]], texts[i]) for i in with_ref]
        assert row["n_rouge_prompts"] == len(with_ref)
        assert row["rouge_l"] == pytest.approx(sum(scores[name]) / len(with_ref))
        assert row["rouge_l_low"] <= row["rouge_l"] <= row["rouge_l_high"]
    diffs = [a - b for a, b in zip(scores[tuned], scores[base], strict=True)]
    assert summary["policies"][tuned]["rouge_l_diff"] == pytest.approx(sum(diffs) / len(diffs))
    assert "rouge_l_diff" not in summary["policies"][base]
