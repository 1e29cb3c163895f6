"""``python -m rlhfkit.feedback SUBCOMMAND ...``: the same as ``rlhfkit annotate SUBCOMMAND ...``, without
loading the trainers (and torch) first, for a quick start of ``serve`` on a labelling machine."""

from __future__ import annotations

import argparse
import sys

from rlhfkit.feedback.cli import add_annotate_parser, run_annotate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhfkit.feedback")
    add_annotate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["annotate", *(sys.argv[1:] if argv is None else argv)])
    return run_annotate(args)


if __name__ == "__main__":
    sys.exit(main())
