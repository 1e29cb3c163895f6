"""``rlhfkit`` command line: a thin layer over the Python API.

Every subcommand but ``annotate`` and ``report`` takes an optional YAML config and ``key=value`` overrides
(dotted for sections, e.g. ``data.max_train=200``); ``rlhfkit <command> --help`` lists every key with its
default and meaning.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from rlhfkit.config import ConfigError, describe_config, load_config
from rlhfkit.data import DataError
from rlhfkit.errors import ModelNotFoundError, NonFiniteError, RewardError
from rlhfkit.eval.human_cli import add_evaluate_parser
from rlhfkit.feedback.cli import add_annotate_parser, run_annotate


@dataclass(frozen=True)
class Command:
    """A subcommand: ``target`` is ``"module:ConfigClass:function"``, imported only when the command runs
    (so ``rlhfkit --help`` and ``rlhfkit annotate`` start without importing torch). A command on a run
    folder has no config class: ``"module:function"``, called as ``function(run_dir, output)``."""

    summary: str
    target: str

    def _attr(self, index: int):
        module, *names = self.target.split(":")
        return getattr(importlib.import_module(module), names[index])

    @property
    def has_config(self) -> bool:
        return self.target.count(":") == 2

    def config(self) -> type:
        return self._attr(0)

    def run(self) -> Callable:
        return self._attr(-1)


COMMANDS = {
    "sft": Command(
        "supervised fine-tuning on prompt -> response pairs", "rlhfkit.trainers.sft:SFTConfig:train_sft"
    ),
    "reward": Command(
        "train a reward model on preference pairs (Bradley-Terry)",
        "rlhfkit.trainers.reward:RewardConfig:train_reward",
    ),
    "ppo": Command(
        "PPO against a reward model with a KL penalty to the reference",
        "rlhfkit.trainers.ppo:PPOConfig:train_ppo",
    ),
    "grpo": Command(
        "GRPO: G samples per prompt, group-normalised advantages, no value model",
        "rlhfkit.trainers.grpo:GRPOConfig:train_grpo",
    ),
    "rloo": Command(
        "RLOO: k samples per prompt, leave-one-out baseline, REINFORCE",
        "rlhfkit.trainers.rloo:RLOOConfig:train_rloo",
    ),
    "dpo": Command(
        "DPO and its family (ipo, robust, hinge, simpo) on preference pairs: no reward model, no sampling",
        "rlhfkit.trainers.dpo:DPOConfig:train_dpo",
    ),
    "kto": Command(
        "KTO on unpaired desirable / undesirable examples ({prompt, completion, label}, or pairs taken "
        "apart): the log-ratio of desirable completions above a KL reference point, undesirable below",
        "rlhfkit.trainers.kto:KTOConfig:train_kto",
    ),
    "eval": Command(
        "win rate, score and KL of tuned policies against a baseline",
        "rlhfkit.eval.evaluate:EvalConfig:evaluate",
    ),
    "generate": Command(
        "sample K responses per prompt from a policy, as items for `rlhfkit annotate load`",
        "rlhfkit.rollout.items:GenerateConfig:generate",
    ),
    "pipeline": Command(
        "the whole loop: SFT -> reward -> PPO -> eval", "rlhfkit.pipeline:PipelineConfig:run_pipeline"
    ),
    "loop": Command(
        "iterative RLHF: sample, select pairs, label (simulated or people), reward model, RL, eval; R rounds",
        "rlhfkit.loop.run:LoopConfig:run_loop",
    ),
    "report": Command(
        "one self-contained HTML page of a run folder: curves, reward vs KL, win rates, samples, labels",
        "rlhfkit.eval.report:build_report",
    ),
}

EXAMPLES = """examples:
  rlhfkit pipeline configs/hh-demo.yaml                 # what `make demo` runs
  rlhfkit dpo configs/hh-dpo.yaml max_steps=5            # one recipe, with an override
  rlhfkit kto data.path=feedback.jsonl beta=0.1          # KTO on thumbs up / down (label true / false)
  rlhfkit reward model=minilm-l6 data.path=pairs.jsonl --skip-invalid
  rlhfkit sft checkpoint.every=50 --resume              # continue an interrupted run
  rlhfkit eval baseline=runs/hh-demo/sft 'policies=[runs/hh-demo/ppo]'
  rlhfkit grpo configs/hh-grpo.yaml steps=2              # GRPO on the demo's SFT policy
  rlhfkit ppo --help                                    # every key of a stage, with defaults
  rlhfkit report runs/hh-demo                           # writes runs/hh-demo/report.html
  rlhfkit generate policy=runs/hh-demo/sft prompts=prompts.jsonl output=runs/items.jsonl
"""


OOM_ADVICE = (
    "Lower batch_size (or mini_batch_size), max_length / max_prompt_length / sampling.max_new_tokens, or "
    "eval_batch_size; use LoRA (lora.r=8) or gradient_checkpointing=true; for DPO reference=precomputed; "
    "on a GPU try bf16=true."
)


def _add_command(sub, name: str, command: Command) -> None:
    wants_help = name in sys.argv[1:2] and any(a in ("-h", "--help") for a in sys.argv[2:])
    keys = describe_config(command.config()) if wants_help and command.has_config else ""
    parser = sub.add_parser(
        name,
        help=command.summary,
        description=command.summary,
        epilog=f"config keys (YAML or key=value):\n{keys}" if keys else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if not command.has_config:  # a command on a run folder
        parser.add_argument("run_dir", help="a run folder, e.g. runs/hh-demo")
        parser.add_argument("--output", help="the file to write (default: report.html in the run folder)")
        if name == "report":
            parser.add_argument(
                "--feedback-project",
                help="also show this feedback project's blind evaluation (rlhfkit annotate evaluate): human "
                "win rates in one table with the model judges'",
            )
            parser.add_argument(
                "--feedback-db", help="its database URL (default: as rlhfkit annotate's --db)"
            )
        return
    parser.add_argument("config", nargs="?", help="YAML config file (optional)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. lr=1e-5 data.max_train=100")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="count and report bad data records instead of stopping at the first one",
    )
    if name == "pipeline":
        parser.add_argument("--force", action="store_true", help="re-run stages that already finished")
    elif name not in ("eval", "loop", "generate"):  # the loop always resumes at its last finished stage
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue from the newest complete checkpoint (checkpoint.every)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhfkit",
        description="rlhfkit: RLHF from a base model to an aligned one (SFT, reward model, PPO, eval).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        _add_command(sub, name, command)
    # `annotate` has subcommands of its own, not a config dataclass; `evaluate` samples, so not in feedback/
    add_evaluate_parser(add_annotate_parser(sub))
    return parser


def _load(command: Command, args: argparse.Namespace):
    """A command's config from its YAML file, ``key=value`` overrides and flags."""
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config:  # no YAML file: the first argument is an override
        overrides.insert(0, config)
        config = None
    if args.skip_invalid:  # `generate` reads a prompts file, not a data section
        overrides.append("skip_invalid=true" if args.command == "generate" else "data.skip_invalid=true")
    if getattr(args, "force", False):
        overrides.append("force=true")
    if getattr(args, "resume", False):
        overrides.append("checkpoint.resume=true")
    return load_config(command.config(), config, overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides after a flag (`rlhfkit grpo run.yaml --resume lr=1e-6`) are overrides too;
    # anything else no command takes gets argparse's usual error
    if extra and (not hasattr(args, "overrides") or any(a.startswith("-") or "=" not in a for a in extra)):
        parser.parse_args(argv)
    if extra:
        args.overrides = [*args.overrides, *extra]
    if args.command == "annotate":
        return run_annotate(args)
    command = COMMANDS[args.command]
    try:
        if command.has_config:
            command.run()(_load(command, args))
        else:
            options = {key: value for key, value in vars(args).items() if key.startswith("feedback_")}
            command.run()(args.run_dir, args.output, **options)
    except (
        ConfigError,
        DataError,
        ModelNotFoundError,
        RewardError,
        NonFiniteError,
        NotADirectoryError,  # `report` on a path that is no run folder
        TimeoutError,  # `loop` waited longer than human.timeout_seconds for labels
    ) as err:
        print(f"rlhfkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "out of memory" not in str(err):
            raise
        print(f"rlhfkit {args.command}: error: out of memory ({err}). {OOM_ADVICE}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
