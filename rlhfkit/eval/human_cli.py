"""``rlhfkit annotate evaluate``: the subcommand's parser and runner.

The parser is built at start-up with the rest of ``rlhfkit annotate``, so this module imports only the
standard library (and the stdlib-only `rlhfkit.feedback.cli`) at load time; the sampling code
(`rlhfkit.eval.human_items`, which needs torch) is imported when the command runs. It lives outside
`rlhfkit.feedback`, which never imports model code, and `rlhfkit.cli` adds it to ``annotate``.
"""

from __future__ import annotations

import argparse

from rlhfkit.feedback.cli import DEFAULT_DB

SUMMARY = (
    "blind evaluation: sample the baseline's and each policy's response to the same prompts, score them "
    "with reward-model judges, and load one baseline-vs-policy item per prompt and policy"
)
EPILOG = """example (the demo's SFT and PPO policies on 20 of its held-out prompts):
  rlhfkit annotate create-project hh-eval --guidelines guidelines.md --overlap 2
  rlhfkit annotate evaluate --project hh-eval --baseline runs/hh-demo/sft --policies runs/hh-demo/ppo \\
      --prompts configs/hh-demo.yaml --limit 20 --judges runs/hh-demo/reward,runs/hh-demo/judge \\
      sampling.max_new_tokens=64 sampling.temperature=0.7
  rlhfkit annotate serve                       # annotators label; nothing on the page names a policy
  rlhfkit annotate stats --project hh-eval     # human win rate per policy, next to each judge's

--prompts takes a prompts file as `rlhfkit generate` reads it ({prompt} records, preference pairs, an HH
file) or a YAML config (its data section's held-out split, as `rlhfkit eval` uses). Every policy samples
with the same settings and seed; key=value overrides set them (sampling.*, seed, batch_size,
use_chat_template, system_prompt, reward_max_length). Running the same command again adds nothing."""


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the subcommands of ``rlhfkit annotate`` (what `add_annotate_parser` returns)."""
    p = commands.add_parser(
        "evaluate",
        help=SUMMARY,
        description=SUMMARY,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", default=DEFAULT_DB, help=f"database URL (default {DEFAULT_DB})")
    p.add_argument("--project", required=True, help="the project the items go to (it must exist)")
    p.add_argument("--baseline", required=True, help="the policy to compare against, e.g. runs/hh-demo/sft")
    p.add_argument("--policies", required=True, help="comma-separated policies, e.g. runs/x/ppo,runs/x/dpo")
    p.add_argument("--prompts", required=True, help="prompts file, or a YAML config (its held-out split)")
    p.add_argument("--limit", type=int, help="use only the first N prompts")
    p.add_argument("--judges", help="comma-separated reward model folders that score every response")
    p.add_argument(
        "--skip-invalid", action="store_true", help="count and report bad prompt records instead of stopping"
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. sampling.max_new_tokens=64 seed=1")
    p.set_defaults(annotate_run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Sample, score and load the evaluation items (`rlhfkit.eval.human_items`); returns 0."""
    from rlhfkit.config import load_config
    from rlhfkit.eval.human_items import EvaluationItemsConfig, evaluation_items
    from rlhfkit.feedback.store import Store

    base = {
        "baseline": args.baseline,
        "policies": _list(args.policies),
        "prompts": args.prompts,
        "limit": args.limit,
        "judges": _list(args.judges),
        "skip_invalid": args.skip_invalid,
    }
    cfg = load_config(EvaluationItemsConfig, overrides=args.overrides, base=base)
    store = Store.open(args.db)
    store.project(args.project)  # fail before sampling
    items = evaluation_items(cfg)
    added, existing = store.load_items(args.project, items)
    n = len(items) // len(cfg.policies)
    print(
        f"{len(items)} evaluation items ({n} prompts x {len(cfg.policies)} "
        f"polic{'y' if len(cfg.policies) == 1 else 'ies'} against {cfg.baseline}): {added} added to "
        f"{args.project!r}, {existing} already there"
    )
    print(f"label them (rlhfkit annotate serve), then: rlhfkit annotate stats --project {args.project}")
    return 0
