"""Evaluation: do the tuned policies beat the baseline under the reward model, and at what KL?

For each held-out prompt, every policy samples one response (same settings, same seed). The reward model
scores prompt + response. Reported per policy: mean score, mean response length (tokens), win rate
against the baseline with a 95% bootstrap interval, and KL(policy || reference) in nats per sequence,
estimated on the policy's own samples with the k1 estimator: mean over prompts of
sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)], both at the sampling temperature.

Python use::

    from rlhfkit.eval.evaluate import EvalConfig, evaluate
    report = evaluate(EvalConfig(baseline="runs/sft", policies=["runs/ppo"], reward_model="runs/reward"))

CLI: ``rlhfkit eval [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlhfkit.config import option
from rlhfkit.data import load_prompts
from rlhfkit.eval.winrate import win_rate
from rlhfkit.models.loading import load_policy, load_reward_model, load_tokenizer
from rlhfkit.models.logprobs import response_logprobs
from rlhfkit.models.reward import load_reward_tokenizer, score_texts
from rlhfkit.rollout.sampling import Sampling, rollout
from rlhfkit.trainers.common import DataConfig, load_split, setup_torch, write_summary


@dataclass
class EvalConfig:
    """Compare policies on held-out prompts under a reward model."""

    baseline: str = option("runs/sft", "the policy to beat (usually the SFT model)")
    policies: list[str] = option(["runs/ppo"], "tuned policies, each compared with the baseline")
    reference: str | None = option(None, "reference policy for KL (default: the baseline)")
    reward_model: str = option("runs/reward", "reward model folder that judges the responses")
    output_dir: str = option("runs/eval", "where summary.json and samples.jsonl are written")
    data: DataConfig = option(DataConfig, "prompts; the held-out split is used")
    num_prompts: int = option(64, "held-out prompts to evaluate on")
    use_chat_template: bool = option(True, "render prompts with the policy tokenizer's chat template")
    max_prompt_length: int = option(128, "prompt tokens kept (from the end)")
    max_new_tokens: int = option(48, "response tokens sampled at most")
    temperature: float = option(0.7, "sampling temperature (> 0: KL is estimated on samples)")
    top_k: int = option(0, "sample among the k most likely tokens (0: all)")
    top_p: float = option(1.0, "nucleus sampling mass")
    batch_size: int = option(16, "prompts per generation batch")
    reward_max_length: int = option(256, "reward model tokens per dialogue (cut from the left)")
    n_boot: int = option(2000, "bootstrap resamples for the win-rate interval")
    seed: int = option(0, "sampling seed")
    dtype: str = option("float32", "float32, bfloat16 or float16")
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0: KL to the reference is estimated on samples")


def _name(path: str) -> str:
    return Path(path).name or path


def _sample_and_score(cfg: EvalConfig, path: str, prompts: list, reward, reference) -> dict:
    """Responses, scores (N,), lengths (N,) and per-sequence KL (N,) of one policy."""
    tokenizer = load_tokenizer(path)
    policy = load_policy(path, cfg.dtype, trainable=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    texts, lengths, kls, reward_texts = [], [], [], []
    for start in tqdm(range(0, len(prompts), cfg.batch_size), desc=f"eval {_name(path)}", unit="batch"):
        ro = rollout(policy, tokenizer, prompts[start : start + cfg.batch_size], Sampling.of(cfg), generator)
        seqs = (ro.query_ids, ro.query_mask, ro.response_ids, ro.response_mask)
        with torch.no_grad():
            logp = response_logprobs(policy, *seqs, temperature=cfg.temperature).logprobs
            ref_logp = response_logprobs(reference, *seqs, temperature=cfg.temperature).logprobs
        kls.append(((logp - ref_logp) * ro.response_mask).sum(1))
        texts += ro.response_texts
        reward_texts += ro.reward_texts()
        lengths.append(ro.lengths)
    model, tok = reward
    scores = score_texts(model, tok, reward_texts, cfg.reward_max_length)
    return {"texts": texts, "scores": scores, "lengths": torch.cat(lengths).float(), "kl": torch.cat(kls)}


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.baseline`` and ``cfg.policies``; writes ``summary.json`` and ``samples.jsonl``.

    Returns:
        ``{"prompts": N, "policies": {name: {"score", "length", "kl", "win_rate", "win_low",
        "win_high"}}}``; the baseline has no win-rate entries.

    Raises:
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        ValueError: the held-out split is empty.
    """
    setup_torch(cfg.seed, cfg.threads)
    _, held_out = load_split(cfg.data, load_prompts)
    prompts = [p.prompt for p in held_out[: cfg.num_prompts]]
    if not prompts:
        raise ValueError("no held-out prompts: set data.eval_fraction > 0")
    reward = (load_reward_model(cfg.reward_model, cfg.dtype), load_reward_tokenizer(cfg.reward_model))
    reference = load_policy(cfg.reference or cfg.baseline, cfg.dtype, trainable=False)
    results = {
        path: _sample_and_score(cfg, path, prompts, reward, reference)
        for path in [cfg.baseline, *cfg.policies]
    }

    base = results[cfg.baseline]
    table = {}
    for path, res in results.items():
        row = {
            "score": res["scores"].mean().item(),
            "length": res["lengths"].mean().item(),
            "kl": res["kl"].mean().item(),
        }
        if path != cfg.baseline:
            wr = win_rate(res["scores"].numpy(), base["scores"].numpy(), n_boot=cfg.n_boot, seed=cfg.seed)
            row.update(win_rate=wr.rate, win_low=wr.low, win_high=wr.high)
        table[_name(path)] = row
    summary = {"stage": "eval", "prompts": len(prompts), "baseline": _name(cfg.baseline), "policies": table}
    write_summary(cfg.output_dir, cfg, summary)
    with (Path(cfg.output_dir) / "samples.jsonl").open("w") as f:
        for i, prompt in enumerate(prompts):
            row = {"prompt": prompt}
            for path, res in results.items():
                row[_name(path)] = {"response": res["texts"][i], "score": round(res["scores"][i].item(), 4)}
            f.write(json.dumps(row) + "\n")
    print(format_table(summary))
    return summary


def format_table(summary: dict) -> str:
    """A plain-text table of an evaluation summary."""
    lines = [f"{'policy':<16}{'score':>8}{'win rate vs ' + summary['baseline']:>34}{'KL':>8}{'length':>8}"]
    for name, row in summary["policies"].items():
        if "win_rate" in row:
            win = f"{row['win_rate']:.3f} [{row['win_low']:.3f}, {row['win_high']:.3f}]"
        else:
            win = "-"
        lines.append(f"{name:<16}{row['score']:>8.3f}{win:>34}{row['kl']:>8.2f}{row['length']:>8.1f}")
    lines.append(f"({summary['prompts']} held-out prompts; KL in nats per response, to the reference)")
    return "\n".join(lines)
