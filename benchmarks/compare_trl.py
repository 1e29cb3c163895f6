"""rlhfkit against TRL, side by side on this machine: seconds per step, real tokens/s, peak memory (issue 8).

Every case trains the same model (SmolLM2-135M-Instruct or all-MiniLM-L6-v2, fp32, full fine-tuning) on the
same HH-RLHF rows, in the same order and batches, with the same lengths, beta, sampling settings,
optimizer (AdamW, TRL's default learning rate for the trainer, no weight decay, constant rate, no warmup)
and number of steps, once with rlhfkit's trainer and once with TRL's (1.16; PPO: 1.12's
``trl.experimental.ppo``, run from ``.venv-trl112``). TRL keeps its defaults otherwise, gradient
checkpointing on. Each run is its own process; the sides alternate (rlhfkit, TRL, rlhfkit, TRL, ... with
``--repeats``).

Usage::

    make bench                                        # installs the bench extra and .venv-trl112, runs all
    .venv/bin/python benchmarks/compare_trl.py [--cases sft,dpo] [--steps 5] [--offline-steps 8]
        [--repeats 1] [--out results.json] [--markdown] [--tiny] [--rlhfkit-gradient-checkpointing] [--bf16]

``--bf16`` runs both sides in bfloat16 mixed precision instead of fp32 (rlhfkit ``bf16=true``, TRL
``bf16=True``: float32 weights and AdamW, forward passes under bfloat16 autocast; the GFLOP/s column is
then against the bfloat16 matmul rate).
``--tiny`` runs every case end to end on tiny random models (a smoke test of the harness: a few minutes
for all cases); its numbers mean nothing.
Cases: sft, reward-minilm, reward-smollm2, dpo, dpo-precomputed, grpo, rloo, ppo, ppo-shared-head. The
last is not like for like: rlhfkit's PPO with ``shared_value_head`` (a value head on the policy's last hidden
state, one trunk for policy and value) against the same TRL 1.12 run as ``ppo`` (a separate value model,
which is all TRL 1.12 offers); ``ppo`` is the like-for-like row.

What is measured, the same way on both sides:
- **s/step**: one optimizer step (one rollout and its updates for GRPO/RLOO/PPO), from the end of one step
  to the end of the next, so it includes fetching the batch; the first step is a warm-up and is not timed
  (``--steps`` counts the timed steps). rlhfkit: consecutive ``time_s`` in its ``metrics.jsonl``; TRL: the
  clock at each ``on_step_end`` of a ``TrainerCallback``. Median, min and max over the timed steps of all
  repeats.
- **real tokens/s**: non-pad tokens per step / s per step (sums over the timed steps). Tokens are counted
  where the trained model reads them (``compare_worker.TokenCounter``: its input embedding, in every
  forward pass with gradients; the ``attention_mask`` sum of padded calls, every token of packed calls, and
  for packed rows in which sequences share a prefix computed once, that prefix once per sequence).
  That is the batch for SFT, reward (chosen + rejected) and DPO (chosen + rejected; reference passes run
  without gradients); for GRPO/RLOO/PPO it is prompt + sampled tokens up to EOS of every sequence of the
  rollout, counted once (PPO's count is divided by its epochs). TRL's PPO masks every token equal to the
  pad token, and SmolLM2's pad is its EOS ``<|im_end|>``, so its count misses those few tokens a row.
  The rows are the same on both sides, so for SFT, reward and DPO the counts must agree (the table warns
  if they do not).
- **peak RSS**: ``ru_maxrss`` of the worker process (model loading, data preparation, training and, for
  rlhfkit, the final save).
- **GFLOP/s** (SFT, reward, DPO): 6 N per real token of a forward + backward, plus 2 N for the reference
  forward of DPO with a separate reference (N = all parameters), against the fp32 matmul rate measured in
  this run (``benchmarks/limit.py``'s ``matmul_gflops``, before and after the cases; the higher is used).
  Where rlhfkit computes a shared prefix once (the prompt of a DPO or SmolLM2 reward pair) the tokens are
  still counted per sequence, so its figure is the rate of the work a padded batch would do.
- **sanity**: the loss at the first and last step (SFT NLL, reward Bradley-Terry, DPO), the mean reward
  (GRPO, RLOO) or mean reward-model score (PPO) of the first and last rollout, on both sides.

Where the sides cannot match (each is TRL's default unless said): TRL checkpoints activations and rlhfkit
does not (``--rlhfkit-gradient-checkpointing`` to change that; TRL 1.12's PPO loop never turns it on);
both use the fused ``torch.optim.AdamW``; TRL's schedule is set to constant, as rlhfkit has no other; TRL
reads the rows sequentially instead of shuffling (they are written in rlhfkit's order). GRPO/RLOO/PPO are
rewarded by SmolLM2 with a fresh, seeded one-label head (the same weights on both sides; TRL's PPO needs
the policy's tokenizer); rlhfkit's reward and value models read the HH-style dialogue text, TRL's the
policy's chat-template text, so rewards differ a little; samples differ (different generators). GRPO:
TRL's ``use_bias_correction_kl`` is off (rlhfkit's plain k3 term). PPO: TRL stops at EOS
(``stop_token="eos"``, as rlhfkit always does); rlhfkit's reward and value models read at most prompt
limit + response limit tokens (``reward_max_length``), as TRL's read the policy's tokens; TRL has one
optimizer for policy and value with loss pg + 0.1 vf and no gradient clipping, where rlhfkit steps two
AdamW at the same rate and clips at 1.0 (``ppo-shared-head``: one AdamW, loss pg + 0.1 vf, clipped);
neither side penalises a missing EOS (rlhfkit's ``missing_eos_penalty=0``).

Targets checked in the table (issue 8): speed-up (TRL s/step / rlhfkit s/step) >= 1.5 (GRPO, RLOO, PPO:
>= 2), rlhfkit's peak RSS <= TRL's, and for SFT, reward and DPO >= 50% of the matmul limit.
A benchmark, not a test: nothing asserts. TRL is never a dependency of rlhfkit (``pip install .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT_MARK = "COMPARE_TRL_RESULT "  # the worker's result line (libraries print to stdout too)
QUIET_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "TQDM_DISABLE": "1",
}
MAX_LENGTH, MAX_PROMPT_LENGTH, RL_PROMPT_LENGTH, MAX_NEW_TOKENS = 256, 192, 128, 64


@dataclass(frozen=True)
class Case:
    """One comparison: what is trained, and the settings both sides get."""

    label: str
    kind: str  # sft | reward | dpo | grpo | rloo | ppo
    settings: str  # for the table
    backbone: str  # policy (SmolLM2) | minilm
    batch_size: int  # rows / pairs / prompts per step
    lr: float  # TRL's default for this trainer
    flops_per_token: int = 0  # x N: 6 for forward + backward, + 2 for a reference forward; 0: not counted
    speedup_target: float = 1.5
    beta: float = 0.0
    reference: str = ""  # dpo: on_the_fly | precomputed
    group_size: int = 1
    temperature: float = 1.0
    epochs: int = 1  # PPO epochs over each rollout
    shared_value_head: bool = False  # rlhfkit's PPO: a value head on the policy (TRL: a value model)


# fmt: off
CASES = {
    "sft": Case("SFT, SmolLM2", "sft", "8 rows <= 256 tokens", "policy", 8, 2e-5, flops_per_token=6),
    "reward-minilm": Case("Reward, MiniLM", "reward", "8 pairs x 256", "minilm", 8, 1e-4, flops_per_token=6),
    "reward-smollm2": Case("Reward, SmolLM2", "reward", "8 pairs x 256", "policy", 8, 1e-4,
                           flops_per_token=6),
    "dpo": Case("DPO, separate reference", "dpo", "4 pairs <= 256, beta 0.1", "policy", 4, 1e-6,
                flops_per_token=8, beta=0.1, reference="on_the_fly"),
    "dpo-precomputed": Case("DPO, precomputed reference", "dpo", "4 pairs <= 256, beta 0.1", "policy", 4,
                            1e-6, flops_per_token=6, beta=0.1, reference="precomputed"),
    "grpo": Case("GRPO", "grpo", "8 prompts x 4 x 64 tokens, beta 0.04, T 1", "policy", 8, 1e-6,
                 speedup_target=2.0, beta=0.04, group_size=4),
    "rloo": Case("RLOO", "rloo", "8 prompts x 4 x 64 tokens, beta 0.05, T 1", "policy", 8, 1e-6,
                 speedup_target=2.0, beta=0.05, group_size=4),
    "ppo": Case("PPO (TRL 1.12)", "ppo", "8 prompts x 64 tokens, 4 epochs, beta 0.05, T 0.7", "policy", 8,
                3e-6, speedup_target=2.0, beta=0.05, temperature=0.7, epochs=4),
    "ppo-shared-head": Case("PPO, rlhfkit value head on the policy", "ppo",
                            "as PPO; TRL keeps its separate value model", "policy", 8, 3e-6,
                            speedup_target=2.0, beta=0.05, temperature=0.7, epochs=4, shared_value_head=True),
}
# fmt: on
# the sanity metric each side logs: (rlhfkit metrics.jsonl key, TRL log key)
METRICS = {
    "sft": ("loss", "loss"),
    "reward": ("loss", "loss"),
    "dpo": ("loss", "loss"),
    "grpo": ("reward", "reward"),
    "rloo": ("reward", "reward"),
    "ppo": ("score", "objective/scores"),
}


def case_spec(name: str, args, folders: dict[str, str], workdir: Path) -> dict:
    """Everything a worker of either side needs for ``name`` (written as JSON, read by both)."""
    case = CASES[name]
    rlhfkit_metric, trl_metric = METRICS[case.kind]
    offline = case.kind in ("sft", "reward", "dpo")
    return {
        **asdict(case),
        "name": name,
        "steps": ((args.offline_steps or args.steps) if offline else args.steps) + 1,  # + the warm-up step
        "seed": 0,
        "threads": args.threads,
        "model": folders[case.backbone],
        "reward_model": folders.get("reward"),
        "max_length": MAX_LENGTH,
        "max_prompt_length": MAX_PROMPT_LENGTH if offline else RL_PROMPT_LENGTH,
        "max_new_tokens": MAX_NEW_TOKENS,
        "metric": {"rlhfkit": rlhfkit_metric, "trl": trl_metric},
        "rlhfkit_gradient_checkpointing": args.rlhfkit_gradient_checkpointing,
        "bf16": args.bf16,
        "out_dir": str(workdir / "out"),
    }


def run_worker(name: str, side: str, spec_path: Path, args) -> dict:
    """Run one side of one case in a fresh process; its result, or ``{"error": ...}``."""
    python = args.trl112_python if side == "trl" and CASES[name].kind == "ppo" else sys.executable
    script = str(Path(__file__).resolve())
    command = [python, script, "--worker", name, "--side", side, "--spec", str(spec_path)]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    marked = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode or not marked:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        print(f"[compare_trl] {name} {side} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": f"exit {proc.returncode}", "wall_s": wall}
    result = json.loads(marked[-1][len(RESULT_MARK) :])
    print(f"[compare_trl] {name:<16} {side:<8} {wall:6.0f} s wall", flush=True)
    return {**result, "wall_s": wall}


def side_summary(runs: list[dict], case: Case, limit: float) -> dict:
    """Step times pooled over the repeats, tokens/s, peak RSS (max over repeats), GFLOP/s, the metric."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    step_s = [s for r in good for s in r["step_s"]]
    tokens = [t for r in good for t in r["step_tokens"]]
    tokens_per_s = sum(tokens) / sum(step_s)
    out = {
        "s_per_step": statistics.median(step_s),
        "s_min": min(step_s),
        "s_max": max(step_s),
        "timed_steps": len(step_s),
        "tokens_per_step": sum(tokens) / len(tokens),
        "tokens_per_s": tokens_per_s,
        "peak_rss_gib": max(r["peak_rss_gib"] for r in good),
        "startup_s": statistics.median(r["startup_s"] for r in good),
        "metric_first": good[0]["metric_first"],
        "metric_last": good[0]["metric_last"],
        "params": good[0]["params"],
        "gradient_checkpointing": good[0]["gradient_checkpointing"],
        "versions": good[0]["versions"],
        "runs": runs,
    }
    if case.flops_per_token:
        out["gflops"] = case.flops_per_token * out["params"] * tokens_per_s / 1e9
        out["share_of_limit"] = out["gflops"] / limit
    return out


def case_summary(name: str, sides: dict[str, list[dict]], limit: float) -> dict:
    case = CASES[name]
    ours, trl = (side_summary(sides[s], case, limit) for s in ("rlhfkit", "trl"))
    row = {"case": name, "label": case.label, "settings": case.settings, "rlhfkit": ours, "trl": trl}
    if "error" in ours or "error" in trl:
        return row
    speedup = trl["s_per_step"] / ours["s_per_step"]
    targets = {
        f"speed-up >= {case.speedup_target:g}": speedup >= case.speedup_target,
        "RSS <= TRL": ours["peak_rss_gib"] <= trl["peak_rss_gib"],
    }
    if case.flops_per_token:
        targets[">= 50% of limit"] = ours["share_of_limit"] >= 0.5
    return {
        **row,
        "speedup": speedup,
        "rss_ratio": ours["peak_rss_gib"] / trl["peak_rss_gib"],
        "targets": targets,
    }


def _metric(side: dict, kind: str) -> str:
    return f"{METRICS[kind][0]} {side['metric_first']:.3f} -> {side['metric_last']:.3f}"


def print_table(rows: list[dict], limits: list[float], precision: str) -> None:
    measured = ", ".join(f"{x:.0f}" for x in limits)
    print(
        f"\n{precision} matmul limit: {max(limits):.0f} GFLOP/s (measured {measured}); "
        "start s: to the end of step 1"
    )
    print(
        f"{'case':<40}{'side':<9}{'s/step (min-max)':>22}{'tok/s':>8}{'RSS GiB':>9}{'GFLOP/s':>14}"
        f"{'start s':>9}{'ckpt':>6}  sanity"
    )
    for row in rows:
        kind = CASES[row["case"]].kind
        for side in ("rlhfkit", "trl"):
            s = row[side]
            label = row["label"] if side == "rlhfkit" else ""
            if "error" in s:
                print(f"{label:<40}{side:<9}  failed: {s['error']}")
                continue
            steps = f"{s['s_per_step']:.2f} ({s['s_min']:.2f}-{s['s_max']:.2f})"
            flops = f"{s['gflops']:.0f} ({s['share_of_limit']:.0%})" if "gflops" in s else "-"
            ckpt = "on" if s["gradient_checkpointing"] else "off"
            print(
                f"{label:<40}{side:<9}{steps:>22}{s['tokens_per_s']:>8.0f}{s['peak_rss_gib']:>9.2f}"
                f"{flops:>14}{s['startup_s']:>9.0f}{ckpt:>6}  {_metric(s, kind)}"
            )
        if "speedup" in row:
            checks = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in row["targets"].items())
            print(f"{'':<40}speed-up {row['speedup']:.2f}x, RSS ratio {row['rss_ratio']:.2f}; {checks}")
        ours, trl = row["rlhfkit"], row["trl"]
        same_rows = kind in ("sft", "reward", "dpo") and "speedup" in row
        if same_rows and abs(ours["tokens_per_step"] - trl["tokens_per_step"]) > 0.5:
            counts = f"{ours['tokens_per_step']:.0f} vs {trl['tokens_per_step']:.0f}"
            print(f"{'':<40}WARNING: the sides saw different tokens per step: {counts}")


def print_markdown(rows: list[dict], limit: float) -> None:
    print(
        "\n| case | settings | rlhfkit s/step (min-max) | TRL s/step (min-max) | speed-up "
        "| real tokens/s rlhfkit / TRL | peak RSS GiB rlhfkit / TRL "
        f"| rlhfkit GFLOP/s (of {limit:.0f}) | sanity rlhfkit / TRL |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ours, trl = row["rlhfkit"], row["trl"]
        if "speedup" not in row:
            print(f"| {row['label']} | {row['settings']} | failed | | | | | | |")
            continue
        kind = CASES[row["case"]].kind
        flops = f"{ours['gflops']:.0f} ({ours['share_of_limit']:.0%})" if "gflops" in ours else "-"
        print(
            f"| {row['label']} | {row['settings']} "
            f"| {ours['s_per_step']:.2f} ({ours['s_min']:.2f}-{ours['s_max']:.2f}) "
            f"| {trl['s_per_step']:.2f} ({trl['s_min']:.2f}-{trl['s_max']:.2f}) | {row['speedup']:.2f}x "
            f"| {ours['tokens_per_s']:.0f} / {trl['tokens_per_s']:.0f} "
            f"| {ours['peak_rss_gib']:.2f} / {trl['peak_rss_gib']:.2f} | {flops} "
            f"| {_metric(ours, kind)} / {trl['metric_first']:.3f} -> {trl['metric_last']:.3f} |"
        )


def compare(args) -> int:
    os.environ.update({**QUIET_OFFLINE, "OMP_NUM_THREADS": str(args.threads)})  # before tqdm is imported
    import torch
    from compare_inputs import load_pairs, model_folders, write_case_data
    from limit import matmul_gflops

    from rlhfkit.data.split import HH_DATA

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    limits = [matmul_gflops(dtype=dtype)]
    names = args.cases.split(",")
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="compare_trl-") as tmp:
        workdir = Path(tmp)
        rl = any(CASES[name].kind in ("grpo", "rloo", "ppo") for name in names)
        folders = model_folders(args.tiny, workdir, with_reward=rl)
        pairs = load_pairs(args.data or HH_DATA)
        for name in names:
            spec = case_spec(name, args, folders, workdir / name)
            spec.update(write_case_data(spec, pairs, workdir / name))
            spec_path = workdir / name / "spec.json"
            spec_path.write_text(json.dumps(spec, indent=2))
            results[name] = {"rlhfkit": [], "trl": []}
            for _ in range(args.repeats):
                for side in ("rlhfkit", "trl"):
                    results[name][side].append(run_worker(name, side, spec_path, args))
    limits.append(matmul_gflops(dtype=dtype))
    rows = [case_summary(name, results[name], max(limits)) for name in names]
    print_table(rows, limits, "bf16" if args.bf16 else "fp32")
    if args.markdown:
        print_markdown(rows, max(limits))
    if args.out:
        report = {
            "matmul_gflops": limits,
            "steps": args.steps,
            "offline_steps": args.offline_steps or args.steps,
            "repeats": args.repeats,
            "tiny": args.tiny,
            "precision": "bf16 mixed" if args.bf16 else "fp32",
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**report, "cases": rows}, indent=2) + "\n")
    return int(any("speedup" not in row for row in rows))


def worker(args) -> int:
    """One side of one case, in this process; prints its result as one marked JSON line."""
    started = time.perf_counter()
    spec = json.loads(Path(args.spec).read_text())
    if args.side == "rlhfkit":
        from rlhfkit_cases import run
    else:
        from trl_cases import run
    shutil.rmtree(spec["out_dir"], ignore_errors=True)
    try:
        result = run(spec, started)
    finally:
        shutil.rmtree(spec["out_dir"], ignore_errors=True)  # the trained model is not kept
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run, after one warm-up step")
    parser.add_argument(
        "--offline-steps", type=int, help="timed steps of the SFT, reward and DPO cases (default: --steps)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per side and case, alternating sides")
    parser.add_argument("--out", help="also write every number as JSON here")
    parser.add_argument("--markdown", action="store_true", help="also print the table for RESULTS.md")
    parser.add_argument("--tiny", action="store_true", help="tiny random models: a smoke test of the harness")
    parser.add_argument("--data", help="HH-RLHF file the rows come from (default: the demo's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads, both sides")
    parser.add_argument(
        "--rlhfkit-gradient-checkpointing",
        action="store_true",
        help="also checkpoint activations on the rlhfkit side (on in TRL by default)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="both sides in bfloat16 mixed precision (default: fp32)"
    )
    parser.add_argument(
        "--trl112-python",
        default=str(ROOT / ".venv-trl112/bin/python"),
        help="python of TRL 1.12's env (PPO)",
    )
    parser.add_argument("--worker", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["rlhfkit", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.steps < 1 or args.repeats < 1 or (args.offline_steps is not None and args.offline_steps < 1):
        parser.error("--steps, --offline-steps and --repeats must be >= 1")
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
