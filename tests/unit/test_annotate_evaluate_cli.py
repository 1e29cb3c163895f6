"""``rlhfkit annotate evaluate``'s parser: built with the rest of the CLI without importing torch (the
sampling code is imported when the command runs), its flags and key=value overrides, and a bad
override or setting refused before any model or database is touched."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rlhfkit.cli import build_parser, main

ARGS = [
    "annotate",
    "evaluate",
    "--project",
    "p",
    "--baseline",
    "runs/x/sft",
    "--policies",
    "runs/x/ppo, runs/x/dpo",
    "--prompts",
    "configs/hh-demo.yaml",
]


def test_the_parser_imports_no_torch():
    code = (
        "import sys; from rlhfkit.cli import build_parser; "
        f"args = build_parser().parse_args({ARGS + ['sampling.max_new_tokens=64']!r}); "
        "assert args.annotate_run.__module__ == 'rlhfkit.eval.human_cli', args; "
        "sys.exit(bool({'torch', 'transformers'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_flags_and_overrides_are_parsed():
    args = build_parser().parse_args([*ARGS, "--limit", "20", "--judges", "runs/x/reward", "seed=3"])
    assert (args.project, args.baseline, args.limit, args.judges) == ("p", "runs/x/sft", 20, "runs/x/reward")
    assert args.policies == "runs/x/ppo, runs/x/dpo" and args.overrides == ["seed=3"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["sampling.temprature=0.7"], "temprature"),
        (["--limit", "0"], "limit must be at least 1"),
        (["--judges", "runs/a/judge,runs/b/judge"], "would all be called 'judge'"),
    ],
)
def test_bad_settings_are_refused_before_anything_loads(tmp_path, capsys, extra, message):
    db = f"sqlite:///{tmp_path / 'absent.db'}"  # never opened: the settings fail first
    assert main([*ARGS, "--db", db, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()
