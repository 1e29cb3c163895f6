"""Evaluation: do the tuned policies beat the baseline, under judges they may never have trained against,
and at what KL?

Every policy samples ``samples_per_prompt`` responses to every held-out prompt (same settings, same seed
for each policy). Each judge (a reward model folder, or any reward spec) scores prompt + response. Per
policy:

- per judge: the mean score; against the baseline, the win rate (ties half) and the paired mean score
  difference, each with a 95% bootstrap interval over prompts
  (:func:`rlhfkit.eval.winrate.paired_comparison`), and the paired difference at equal length (the
  judge's length preference, fitted on the baseline's responses, taken out:
  :func:`rlhfkit.eval.winrate.length_adjusted_difference`), so that a gain that is only a change of
  length shows as such;
- KL(policy || reference) in nats per response, estimated on the policy's own samples with the k1
  estimator: mean over responses of sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)], both
  at the sampling temperature;
- the mean response length in tokens (``length``) and in words (``mean_words``, whitespace-separated; RLHF
  summaries are known to grow longer, and summaries are compared by length in words in the literature),
  the share of responses cut off without EOS, and two repetition measures (distinct-2 and the share of
  responses with a repeated word 4-gram, :mod:`rlhfkit.eval.repetition`);
- on summarize-from-feedback data (prompts that are posts, with a post id), ROUGE-L F1 (Lin 2004) against
  the post's human reference summary, over the held-out prompts that have one, with a 95% bootstrap
  interval over prompts, and against the baseline the paired ROUGE-L difference with its interval
  (:mod:`rlhfkit.eval.rouge`); the summary's ``references`` says how many prompts have a reference and
  how long the references are in words. Other data gives no ROUGE-L keys.

The first judge is the primary one: its numbers are also the policy row's flat ``score``, ``win_rate``,
``win_low`` and ``win_high`` (what the loop and the report read).

Python use::

    from rlhfkit.eval.evaluate import EvalConfig, evaluate
    from rlhfkit.rewards import RewardSpec
    report = evaluate(EvalConfig(baseline="runs/sft", policies=["runs/ppo"],
                                 judges=[RewardSpec("model", "runs/reward", name="proxy"),
                                         RewardSpec("model", "runs/judge", name="judge")]))

CLI: ``rlhfkit eval [config.yaml] [key=value ...]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from rlhfkit.config import option
from rlhfkit.data import load_prompts
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.eval.repetition import distinct_n, repeated_ngram_frac
from rlhfkit.eval.rouge import human_references, mean_words, rouge_l_table
from rlhfkit.models.loading import load_policy, load_tokenizer
from rlhfkit.models.logprobs import response_logprobs
from rlhfkit.rewards import RewardSpec, build_source, check_reward_specs
from rlhfkit.rollout.config import SAMPLING_RENAMED_KEYS, SamplingConfig
from rlhfkit.rollout.sampling import rollout
from rlhfkit.stats import length_adjusted_difference, paired_comparison
from rlhfkit.trainers.runtime import setup_torch
from rlhfkit.trainers.saving import write_summary


@dataclass
class EvalConfig:
    """Compare policies on held-out prompts under one or more judges."""

    renamed_keys: ClassVar[dict[str, str]] = SAMPLING_RENAMED_KEYS

    baseline: str = option("runs/sft", "the policy to beat (usually the SFT model)")
    policies: list[str] = option(["runs/ppo"], "tuned policies, each compared with the baseline")
    reference: str | None = option(None, "reference policy for KL (default: the baseline)")
    judges: list[RewardSpec] = option(
        [RewardSpec(kind="model", path="runs/reward", name="reward")],
        "judges that score the responses, each reported on its own (reward specs: "
        "{kind: model, path: DIR, name: NAME}, or a function/length/format source); the first is primary",
    )
    output_dir: str = option("runs/eval", "where summary.json and samples.jsonl are written")
    data: DataConfig = option(DataConfig, "prompts; the held-out split is used")
    num_prompts: int | None = option(None, "held-out prompts to evaluate on (null: every one)")
    samples_per_prompt: int = option(
        1, "responses sampled per prompt and policy (intervals are over prompts)"
    )
    use_chat_template: bool = option(True, "render prompts with the policy tokenizer's chat template")
    sampling: SamplingConfig = option(
        SamplingConfig, "how responses are sampled (temperature > 0: KL is estimated on samples)"
    )
    batch_size: int = option(16, "prompts per generation batch")
    reward_max_length: int = option(256, "reward model tokens per dialogue (cut from the left)")
    n_boot: int = option(2000, "bootstrap resamples for the intervals")
    seed: int = option(0, "sampling seed")
    dtype: str = option("float32", "float32, bfloat16 or float16")
    threads: int | None = option(None, "CPU threads (default: all cores)")

    def __post_init__(self):
        if self.sampling.temperature <= 0:
            raise ValueError("sampling.temperature must be > 0: KL to the reference is estimated on samples")
        if self.samples_per_prompt < 1:
            raise ValueError("samples_per_prompt must be >= 1")
        if self.num_prompts is not None and self.num_prompts < 1:
            raise ValueError("num_prompts must be >= 1 (or null for every held-out prompt)")
        if not self.judges:
            raise ValueError("eval needs at least one judge")
        check_reward_specs(self.judges)


def _name(path: str) -> str:
    return Path(path).name or path


def _sample(cfg: EvalConfig, path: str, prompts: list, reference) -> dict:
    """Responses, lengths (N,), per-response KL (N,) and EOS flags (N,) of one policy; N = prompts x k,
    prompt-major."""
    tokenizer = load_tokenizer(path, system_prompt=cfg.data.system_prompt)
    policy = load_policy(path, cfg.dtype, trainable=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    repeated = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    texts, lengths, kls, eos, reward_prompts = [], [], [], [], []
    for start in tqdm(range(0, len(repeated), cfg.batch_size), desc=f"eval {_name(path)}", unit="batch"):
        batch = repeated[start : start + cfg.batch_size]
        # the policy's logprobs come from the sampler itself: only the reference needs a forward
        ro = rollout(
            policy,
            tokenizer,
            batch,
            cfg.sampling,
            use_chat_template=cfg.use_chat_template,
            generator=generator,
            with_logprobs=True,
        )
        seqs = (ro.query_ids, ro.query_mask, ro.response_ids, ro.response_mask)
        with torch.no_grad():
            ref_logp = response_logprobs(reference, *seqs, temperature=cfg.sampling.temperature).logprobs
        kls.append(((ro.logprobs - ref_logp) * ro.response_mask).sum(1))
        texts += ro.response_texts
        reward_prompts += ro.prompts
        lengths.append(ro.lengths)
        eos.append(ro.has_eos)
    return {
        "texts": texts,
        "prompts": reward_prompts,
        "lengths": torch.cat(lengths).float(),
        "kl": torch.cat(kls),
        "has_eos": torch.cat(eos),
    }


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.baseline`` and ``cfg.policies``; writes ``summary.json`` and ``samples.jsonl``.

    Returns:
        ``{"prompts": n, "samples_per_prompt": k, "baseline": name, "judges": {judge: {"kind", "path"}},
        "policies": {name: {"kl", "length", "mean_words", "no_eos_frac", "distinct_2", "repeat_4_frac",
        "judges": {judge: {"score", ["win_rate", "win_low", "win_high", "diff", "diff_low",
        "diff_high", "length_slope", "diff_at_equal_length", "diff_at_equal_length_low",
        "diff_at_equal_length_high"]}}, "score", ["win_rate", "win_low", "win_high"],
        ["rouge_l", "rouge_l_low", "rouge_l_high", "n_rouge_prompts", ["rouge_l_diff", "rouge_l_diff_low",
        "rouge_l_diff_high"]]}}, ["references": {"prompts", "mean_words"}]}``; the baseline has no
        comparison entries; the flat ``score`` / ``win_*`` are the first judge's. ``length`` is in tokens,
        ``kl`` in nats per response, ROUGE-L in [0, 1]; the ROUGE-L keys and ``references`` are there for
        summarize-from-feedback prompts only (None values when no held-out post has a reference summary).

    Raises:
        rlhfkit.data.DataError: bad prompt data (unless ``data.skip_invalid``).
        ValueError: the held-out split is empty.
    """
    setup_torch(cfg.seed, cfg.threads)
    _, held_out = load_split(cfg.data, load_prompts)
    prompts = [p.prompt for p in held_out[: cfg.num_prompts]]
    if not prompts:
        raise ValueError("no held-out prompts: set data.eval_fraction > 0")
    groups = [getattr(p, "group", None) for p in held_out[: cfg.num_prompts]]  # post ids (tldr), else None
    references = human_references(cfg.data, groups)
    reference = load_policy(cfg.reference or cfg.baseline, cfg.dtype, trainable=False)
    results = {path: _sample(cfg, path, prompts, reference) for path in [cfg.baseline, *cfg.policies]}
    del reference
    scores: dict[str, dict[str, torch.Tensor]] = {path: {} for path in results}  # policy -> judge -> (N,)
    for spec in cfg.judges:
        judge = build_source(spec, cfg.dtype, cfg.reward_max_length)
        for path, res in results.items():
            scores[path][spec.label] = judge(res["prompts"], res["texts"])
        del judge

    base = scores[cfg.baseline]
    table = {}
    for path, res in results.items():
        row = {
            "kl": res["kl"].mean().item(),
            "length": res["lengths"].mean().item(),
            "mean_words": mean_words(res["texts"]),
            "no_eos_frac": (~res["has_eos"]).float().mean().item(),
            "distinct_2": distinct_n(res["texts"], 2),
            "repeat_4_frac": repeated_ngram_frac(res["texts"], 4),
            "judges": {},
        }
        for judge, judged in scores[path].items():
            entry = {"score": judged.mean().item()}
            if path != cfg.baseline:
                k = cfg.samples_per_prompt
                cmp = paired_comparison(judged.numpy(), base[judge].numpy(), k, cfg.n_boot, cfg.seed)
                lengths = (res["lengths"].numpy(), results[cfg.baseline]["lengths"].numpy())
                slope, adj, adj_low, adj_high = length_adjusted_difference(
                    judged.numpy(), lengths[0], base[judge].numpy(), lengths[1], k, cfg.n_boot, cfg.seed
                )
                entry.update(
                    win_rate=cmp.win_rate,
                    win_low=cmp.win_low,
                    win_high=cmp.win_high,
                    diff=cmp.diff,
                    diff_low=cmp.diff_low,
                    diff_high=cmp.diff_high,
                    length_slope=slope,
                    diff_at_equal_length=adj,
                    diff_at_equal_length_low=adj_low,
                    diff_at_equal_length_high=adj_high,
                )
            row["judges"][judge] = entry
        primary = row["judges"][cfg.judges[0].label]
        row.update({k: primary[k] for k in ("score", "win_rate", "win_low", "win_high") if k in primary})
        table[_name(path)] = row
    summary = {
        "stage": "eval",
        "prompts": len(prompts),
        "samples_per_prompt": cfg.samples_per_prompt,
        "baseline": _name(cfg.baseline),
        "judges": {spec.label: {"kind": spec.kind, "path": spec.path} for spec in cfg.judges},
        "policies": table,
    }
    if references is not None:
        texts = {_name(path): res["texts"] for path, res in results.items()}
        rouge = rouge_l_table(
            groups, texts, references, _name(cfg.baseline), cfg.samples_per_prompt, cfg.n_boot, cfg.seed
        )
        for name, entry in rouge.items():
            table[name].update(entry)
        refs = [references[g] for g in groups if g in references]
        summary["references"] = {"prompts": len(refs), "mean_words": mean_words(refs) if refs else None}
    write_summary(cfg.output_dir, cfg, summary)
    _write_samples(cfg, prompts, results, scores)
    print(format_table(summary))
    return summary


def _write_samples(cfg: EvalConfig, prompts: list, results: dict, scores: dict) -> None:
    """``samples.jsonl``: one row per prompt and sample, each policy's response and its judges' scores."""
    k = cfg.samples_per_prompt
    with (Path(cfg.output_dir) / "samples.jsonl").open("w") as f:
        for i, prompt in enumerate(prompts):
            for j in range(k):
                n = i * k + j
                row = {"prompt": prompt, **({"sample": j} if k > 1 else {})}
                for path, res in results.items():
                    judged = {judge: round(s[n].item(), 4) for judge, s in scores[path].items()}
                    first = next(iter(judged.values()))
                    row[_name(path)] = {"response": res["texts"][n], "score": first, "scores": judged}
                f.write(json.dumps(row) + "\n")


def _interval(value: float, low: float, high: float, digits: int = 3) -> str:
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def format_table(summary: dict) -> str:
    """A plain-text table of an evaluation summary: per judge, each policy's score, win rate and paired
    score difference against the baseline; then per policy KL, length (tokens and words), no-EOS share and
    repetition; then, for summarize-from-feedback prompts, ROUGE-L against the human references."""
    base = summary["baseline"]
    lines = []
    for judge, spec in summary.get("judges", {"reward": {}}).items():
        where = f" ({spec['path']})" if spec.get("path") else ""
        lines.append(f"judge: {judge}{where}")
        lines.append(
            f"  {'policy':<14}{'score':>8}{'win rate vs ' + base:>30}{'score diff vs ' + base:>32}"
            f"{'diff at equal length':>32}"
        )
        for name, row in summary["policies"].items():
            entry = row.get("judges", {}).get(judge, row)
            win = diff = adjusted = "-"
            if "win_rate" in entry:
                win = f"{entry['win_rate']:.3f} [{entry['win_low']:.3f}, {entry['win_high']:.3f}]"
            if "diff" in entry:
                diff = _interval(entry["diff"], entry["diff_low"], entry["diff_high"])
            if "diff_at_equal_length" in entry:
                adjusted = _interval(
                    entry["diff_at_equal_length"],
                    entry["diff_at_equal_length_low"],
                    entry["diff_at_equal_length_high"],
                )
            lines.append(f"  {name:<14}{entry['score']:>8.3f}{win:>30}{diff:>32}{adjusted:>32}")
    header = f"{'KL':>8}{'tokens':>8}{'words':>8}{'no EOS':>8}{'distinct-2':>12}{'rep. 4-gram':>13}"
    lines.append(f"  {'policy':<14}{header}")
    for name, row in summary["policies"].items():
        words = f"{row['mean_words']:.1f}" if "mean_words" in row else "-"
        lines.append(
            f"  {name:<14}{row['kl']:>8.2f}{row['length']:>8.1f}{words:>8}{row.get('no_eos_frac', 0.0):>8.2f}"
            f"{row.get('distinct_2', 1.0):>12.3f}{row.get('repeat_4_frac', 0.0):>13.2f}"
        )
    lines += _rouge_lines(summary)
    k = summary.get("samples_per_prompt", 1)
    lines.append(
        f"({summary['prompts']} held-out prompts x {k} sample{'s' if k > 1 else ''}; 95% bootstrap intervals "
        "over prompts; 'at equal length': the judge's score-on-length slope among the baseline's responses "
        "taken out; KL in nats per response, to the reference)"
    )
    return "\n".join(lines)


def _rouge_lines(summary: dict) -> list[str]:
    """The ROUGE-L rows of `format_table` (none for data without human references)."""
    refs = summary.get("references")
    if refs is None:
        return []
    if not refs["prompts"]:
        return ["  ROUGE-L: none (no held-out prompt has a human reference summary)"]
    base = summary["baseline"]
    lines = [
        f"ROUGE-L F1 against the human reference summary ({refs['prompts']} of {summary['prompts']} held-out "
        f"prompts have one; the references average {refs['mean_words']:.1f} words)",
        f"  {'policy':<14}{'ROUGE-L':>24}{'diff vs ' + base:>32}",
    ]
    for name, row in summary["policies"].items():
        if row.get("rouge_l") is None:
            continue
        rouge = f"{row['rouge_l']:.3f} [{row['rouge_l_low']:.3f}, {row['rouge_l_high']:.3f}]"
        diff = "-"
        if row.get("rouge_l_diff") is not None:
            diff = _interval(row["rouge_l_diff"], row["rouge_l_diff_low"], row["rouge_l_diff_high"])
        lines.append(f"  {name:<14}{rouge:>24}{diff:>32}")
    return lines
