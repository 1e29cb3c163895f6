"""``rlhfkit annotate``: the human-feedback app's subcommands.

This module imports only the standard library at load time (the CLI builds every parser at start-up);
each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_DB = os.environ.get("RLHFKIT_FEEDBACK_DB", "sqlite:///runs/feedback.db")

SUMMARY = "the human-feedback app: projects, annotators, items, the labelling page, export"
EPILOG = """the loop:
  rlhfkit annotate init                                  # schema + admin token
  rlhfkit annotate create-project demo --guidelines guidelines.md --overlap 2
  rlhfkit annotate add-annotator --project demo alice bob
  rlhfkit generate policy=runs/hh-demo/sft prompts=prompts.jsonl k=2 output=runs/items.jsonl
  rlhfkit annotate load --project demo runs/items.jsonl   # the sampled items (or your own JSONL)
  rlhfkit annotate import --project demo comparisons.jsonl.gz --as control   # labelled pairs, known answers
  rlhfkit annotate serve --port 8000                     # annotators open the links printed above
  rlhfkit annotate rotate-token --project demo alice     # a new token; the old one stops working
  rlhfkit annotate deactivate --project demo bob         # bob's token is refused, his held items released
  rlhfkit annotate create-project demo --update --control-rate 0.1 --min-control-accuracy 0.7
  rlhfkit annotate controls --project demo --from gold   # gold's labels become known answers (controls)
  rlhfkit annotate stats --project demo
  rlhfkit annotate evaluate --project eval --baseline runs/x/sft --policies runs/x/ppo --prompts p.jsonl
  rlhfkit annotate export --project demo --format trl --output runs/labels.jsonl
  rlhfkit reward data.path=runs/labels.jsonl output_dir=runs/my-rm

--db takes any SQLAlchemy URL: sqlite:///path.db (default sqlite:///runs/feedback.db, or
$RLHFKIT_FEEDBACK_DB) or postgresql://user:password@host/dbname."""


IMPORT_DESCRIPTION = """import labelled comparisons into a project, all or nothing (a bad row stops the
import before anything is written, naming its file, line and field)

Formats:
  tldr  summarize-from-feedback rows (Stiennon et al. 2020), one JSON object a line:
          {"info": {"id", "title", "post" | "article", "subreddit"}, "summaries": [{"text", "policy"},
           {"text", "policy"}], "choice": 0 | 1, "worker": "...", "extra": {"confidence": 1-9}}
        the page shows the title and the whole post as a document, the two summaries side by side;
        the item's prompt (what exports write) is the paper's query "SUBREDDIT: ... TL;DR:"
  trl   preference pairs {"prompt", "chosen", "rejected"}

Each distinct pair (the same post or prompt and the same two responses, in either order) is one item;
every row that judged it is one of its original labels. Annotators never see the original labels or
the item's kind, and the order of the responses does not follow the file's (chosen is not always
first). Importing the same file again adds nothing: an item already in the project is left as it is."""

IMPORT_EPILOG = """examples:
  rlhfkit annotate import --project tldr ../shared/data/tldr-comparisons/tldr-comparisons.jsonl.gz
  rlhfkit annotate import --project tldr gold.jsonl --as control --format trl
  rlhfkit annotate stats --project tldr      # agreement with the original labels, control accuracy

stats: relabel items give the share of our strict judgements that prefer the response the original
labeller preferred (with a 95% Wilson interval); control items the same per annotator (accuracy). A tie
or both-bad answer is counted apart and left out of the rate (the original labels are all strict)."""


def add_annotate_parser(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``annotate`` and its subcommands to the top-level CLI's subparsers; returns its subcommands
    (`rlhfkit.cli` adds ``evaluate``, which samples from models, there)."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", default=DEFAULT_DB, help=f"database URL (default {DEFAULT_DB})")
    project = argparse.ArgumentParser(add_help=False)
    project.add_argument("--project", required=True, help="project name")

    parser = sub.add_parser(
        "annotate",
        help=SUMMARY,
        description=SUMMARY,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="annotate_command", required=True, metavar="SUBCOMMAND")

    def add(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[db, *parents])

    p = add("init", "create or migrate the database schema; make the admin token")
    p.add_argument("--new-admin-token", action="store_true", help="replace the admin's token with a new one")

    p = add("create-project", "create a project (or change one, with --update)")
    p.add_argument("name")
    p.add_argument("--guidelines", type=Path, help="file with the guidelines shown to annotators")
    p.add_argument("--guidelines-text", help="the guidelines as a string")
    p.add_argument("--overlap", type=int, help="annotators per item (default 1)")
    p.add_argument(
        "--update",
        action="store_true",
        help="change an existing project's guidelines, overlap or control settings",
    )
    p.add_argument(
        "--control-rate",
        type=float,
        metavar="RATE",
        help="share of each annotator's queue that is control items, mixed in and given to every annotator "
        "(default 0: controls are ordinary items)",
    )
    p.add_argument(
        "--min-control-accuracy",
        type=_share_or_none,
        metavar="ACCURACY",
        default=argparse.SUPPRESS,
        help="flag annotators below this control accuracy (0-1; 'none' clears it; default: flag nobody)",
    )

    p = add("add-annotator", "add annotators to a project; prints each one's token and sign-in link", project)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="where the app will be served, for the links"
    )

    p = add("rotate-token", "give annotators new tokens; their old ones stop working at once", project)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="where the app is served, for the sign-in links"
    )
    for name, what in (
        ("deactivate", "refuse annotators' tokens and release the items they hold (their labels stay)"),
        ("reactivate", "let deactivated annotators sign in again with their tokens"),
    ):
        p = add(name, what, project)
        p.add_argument("names", nargs="+", metavar="NAME")

    p = add("load", "load items (prompt + K responses) from a JSONL file; all or nothing", project)
    p.add_argument("path", type=Path)
    p.add_argument(
        "--question",
        choices=("compare", "thumbs", "likert"),
        default="compare",
        help='what annotators are asked of each item without its own "question": compare its responses '
        "(default), or rate its one response: thumbs up/down, or a likert score on --axes",
    )
    p.add_argument("--axes", help="likert: comma-separated axis names (overall,accuracy,coverage,coherence)")
    p.add_argument("--scale", type=int, help="likert: scores 1..SCALE (default 7)")

    p = add("import", "import labelled comparisons (TL;DR or TRL) to relabel, or as controls", project)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = IMPORT_DESCRIPTION
    p.epilog = IMPORT_EPILOG
    p.add_argument("path", type=Path, help="JSONL, JSONL.gz, JSON or Parquet file of comparisons")
    p.add_argument(
        "--as",
        dest="kind",
        choices=("relabel", "control"),
        default="relabel",
        help="relabel (default): items to label again, compared with the original labels in `stats`; "
        "control: items with a known answer, giving each annotator's accuracy in `stats`",
    )
    p.add_argument(
        "--format",
        choices=("auto", "tldr", "trl"),
        default="auto",
        help="tldr: summarize-from-feedback rows; trl: {prompt, chosen, rejected}; "
        "auto (default): from the first row",
    )

    p = add(
        "controls",
        "turn an annotator's labels into the known answers of those items (they become control items)",
        project,
    )
    p.add_argument("--from", dest="source", required=True, metavar="NAME", help="the annotator (e.g. yours)")

    p = add("serve", "serve the labelling page and the API")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1; 0.0.0.0 for the LAN)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--root-path",
        default="",
        help="path prefix when served behind a reverse proxy (e.g. /annotate); the page and API use it",
    )
    p.add_argument(
        "--max-body-mb", type=float, default=4.0, help="refuse larger request bodies with 413 (default 4)"
    )
    p.add_argument(
        "--lease-minutes",
        type=float,
        default=60.0,
        help="a claimed item not labelled or skipped in this time goes back to the queue (0: never)",
    )

    p = add(
        "export",
        "write the labels: trainable pairs (trl), unpaired desirable/undesirable examples (kto) or every "
        "annotation (raw)",
        project,
    )
    p.add_argument("--format", choices=("trl", "raw", "kto"), default="trl")
    p.add_argument("--output", required=True, type=Path, help="JSONL file to write (atomically)")
    p.add_argument("--include-ties", action="store_true", help="write ties as both orders with margin 0")
    p.add_argument("--include-both-bad", action="store_true", help="write both-bad as both orders, margin 0")
    p.add_argument("--min-votes", type=int, default=1, help="leave out pairs with fewer votes")
    p.add_argument(
        "--exclude-flagged",
        action="store_true",
        help="leave out the labels of flagged annotators (below the project's min control accuracy)",
    )
    p.add_argument("--kto-axis", help="kto: the likert axis that decides (default: each question's first)")
    p.add_argument(
        "--kto-desirable",
        type=float,
        help="kto: a likert mean at least this is desirable (default: the scale's middle + 0.5, 5 on 1-7)",
    )
    p.add_argument(
        "--kto-undesirable",
        type=float,
        help="kto: a likert mean at most this is undesirable (default: the middle - 0.5, 3 on 1-7); "
        "in between is left out and counted",
    )

    p = add(
        "stats",
        "counts, agreement, Krippendorff's alpha, position bias; for imported items, agreement with "
        "their original labels (relabel) and each annotator's accuracy (control)",
        project,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return commands


def run_annotate(args: argparse.Namespace) -> int:
    """Run an ``annotate`` subcommand; returns the exit code (2 on a reported error)."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from rlhfkit.data import DataError
    from rlhfkit.feedback.db import SchemaError
    from rlhfkit.feedback.views import FeedbackError

    name = args.annotate_command
    try:
        return (getattr(args, "annotate_run", None) or _COMMANDS[name])(args)  # evaluate: its own
    except (
        FeedbackError,
        SchemaError,
        DataError,
        ValueError,
        ArgumentError,
        OperationalError,
        OSError,
    ) as err:
        message = str(err).splitlines()[0] if isinstance(err, OperationalError) else str(err)
        print(f"rlhfkit annotate {name}: error: {message}", file=sys.stderr)
        return 2


def _open(args: argparse.Namespace):
    from rlhfkit.feedback.store import Store

    return Store.open(args.db)


def _init(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.db import current_revision
    from rlhfkit.feedback.store import Store

    store = Store.init(args.db)
    where = store.engine.url.render_as_string(hide_password=True)
    print(f"database {where} at schema {current_revision(store.engine)}")
    if store.has_admin() and not args.new_admin_token:
        print("an admin exists already (--new-admin-token replaces its token)")
        return 0
    token = store.create_admin(replace=True)
    print(f"admin token (shown once, keep it secret): {token}")
    return 0


def _create_project(args: argparse.Namespace) -> int:
    if args.guidelines is not None and args.guidelines_text is not None:
        raise ValueError("give --guidelines FILE or --guidelines-text, not both")
    guidelines = args.guidelines.read_text(encoding="utf-8") if args.guidelines else args.guidelines_text
    from rlhfkit.feedback.controls import KEEP

    store = _open(args)
    if args.update:
        project = store.update_project(
            args.name,
            guidelines,
            args.overlap,
            args.control_rate,
            getattr(args, "min_control_accuracy", KEEP),
        )
        print(f"updated project {project.name!r}: {_settings(project)}")
    else:
        project = store.create_project(
            args.name,
            guidelines or "",
            1 if args.overlap is None else args.overlap,
            args.control_rate or 0.0,
            getattr(args, "min_control_accuracy", None),
        )
        print(f"created project {project.name!r}: {_settings(project)}")
    return 0


def _settings(project) -> str:
    accuracy = project.min_control_accuracy
    return (
        f"overlap {project.overlap}, control rate {project.control_rate:g}, "
        f"min control accuracy {'none' if accuracy is None else f'{accuracy:g}'}"
    )


def _share_or_none(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number from 0 to 1, or 'none'; got {text!r}") from None


def _controls(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.controls import make_controls

    report = make_controls(_open(args), args.project, args.source)
    print(f"{args.project}: {args.source}'s labels -> {report.summary()}")
    return 0


def _add_annotator(args: argparse.Namespace) -> int:
    store = _open(args)
    print("annotator\ttoken\tsign-in link (shown once)")
    for name in args.names:
        token = store.add_annotator(args.project, name)
        print(f"{name}\t{token}\t{args.url.rstrip('/')}/#token={token}")
    return 0


def _rotate_token(args: argparse.Namespace) -> int:
    store = _open(args)
    print("annotator\tnew token\tsign-in link (shown once; the old token no longer works)")
    for name in args.names:
        token = store.rotate_token(args.project, name)
        print(f"{name}\t{token}\t{args.url.rstrip('/')}/#token={token}")
    return 0


def _set_active(active: bool):
    def run(args: argparse.Namespace) -> int:
        store = _open(args)
        for name in args.names:
            released = store.set_active(args.project, name, active)
            if active:
                print(f"{name}: active again; their token works")
            else:
                print(f"{name}: deactivated; token refused, {released} held item(s) back in the queue")
        return 0

    return run


def _load(args: argparse.Namespace) -> int:
    from rlhfkit.data.items import read_items
    from rlhfkit.feedback.ratings import question_of

    question = question_of(args.question, args.axes, args.scale)
    store = _open(args)
    store.project(args.project)  # fail before reading the file
    added, existing = store.load_items(args.project, read_items(args.path, question))
    print(f"{args.path}: {added} items added to {args.project!r}, {existing} already there")
    return 0


def _import(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.imports import read_comparisons

    store = _open(args)
    store.project(args.project)  # fail before reading the file
    read = read_comparisons(args.path, args.kind, args.format)
    added, existing = store.import_items(args.project, read.items)
    print(
        f"{args.path}: {read.rows} {read.format} comparisons -> {len(read.items)} {args.kind} items: "
        f"{added} added to {args.project!r}, {existing} already there"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from rlhfkit.feedback.server import serve
    from rlhfkit.feedback.store import Store

    if args.max_body_mb <= 0 or args.lease_minutes < 0:
        raise ValueError("--max-body-mb must be > 0 and --lease-minutes >= 0")
    lease = timedelta(minutes=args.lease_minutes) if args.lease_minutes else None
    store = Store.open(args.db, lease=lease)
    if not store.has_admin():
        print("note: no admin yet; `rlhfkit annotate init` makes one", file=sys.stderr)
    where = f"http://{args.host}:{args.port}{args.root_path}/"
    print(f"serving {store.engine.url.render_as_string(hide_password=True)} on {where}")
    serve(store, args.host, args.port, args.root_path, int(args.max_body_mb * 1024 * 1024))
    return 0


def _export(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.export import majority_pairs, raw_records, write_jsonl
    from rlhfkit.feedback.quality import export_annotations

    store = _open(args)
    items, annotations = store.items(args.project), store.annotations(args.project)
    annotations, flagged = export_annotations(store, args.project, items, annotations, args.exclude_flagged)
    if flagged.message():
        print(f"{args.output}: {flagged.message()}")
    if args.format == "trl":
        pairs, report = majority_pairs(
            items, annotations, args.include_ties, args.include_both_bad, args.min_votes
        )
        write_jsonl(args.output, (p.to_dict() for p in pairs))
        print(f"{args.output}: {report.summary()}")
    elif args.format == "kto":
        from rlhfkit.feedback.export_kto import kto_records

        records, kto = kto_records(
            items, annotations, args.kto_axis, args.kto_desirable, args.kto_undesirable
        )
        write_jsonl(args.output, records)
        print(f"{args.output}: {kto.summary()}")
    else:
        n = write_jsonl(args.output, raw_records(items, annotations, store.skips(args.project)))
        print(f"{args.output}: {n} records (annotations and skips)")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.quality import project_report

    store = _open(args)
    project = store.project(args.project)
    stats = project_report(store, args.project)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(format_stats(project.name, stats))
    return 0


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_stats(name: str, stats: dict) -> str:
    """A plain-text table of `project_stats` output."""
    bias = stats["position_bias"]
    ci = "{:.3f}-{:.3f}".format(*bias["ci95"]) if bias["ci95"] else "-"
    lines = [
        f"project {name}: {stats['items']} items, {stats['items_labelled']} labelled, "
        f"{stats['items_complete']} complete (overlap {stats['overlap']})",
        f"annotations {stats['annotations']}, skips {stats['skips']}, by label {stats['by_label']}",
        f"pairwise agreement {_num(stats['pairwise_agreement'])}, "
        f"Krippendorff's alpha (nominal) {_num(stats['krippendorff_alpha'])}",
        f"position bias: left won {bias['left_wins']} of {bias['judgements']} "
        f"({_num(bias['rate'])}, 95% CI {ci}; 0.5 = none)",
        "",
        f"{'annotator':<20}{'labels':>8}{'skips':>7}{'agreement':>11}{'alpha':>8}{'left wins':>11}",
    ]
    for who, row in stats["annotators"].items():
        lines.append(
            f"{who[:19]:<20}{row['labels']:>8}{row['skips']:>7}{_num(row['agreement']):>11}"
            f"{_num(row['alpha']):>8}{_num(row['left_win_rate']):>11}"
        )
    lines += _original_lines(stats.get("original_labels") or {})
    from rlhfkit.feedback.quality import quality_lines

    lines += quality_lines(stats.get("quality"))
    from rlhfkit.feedback.evaluation import evaluation_lines
    from rlhfkit.feedback.ratings import rating_lines

    lines += rating_lines(stats.get("ratings") or [])
    lines += evaluation_lines(stats.get("evaluation") or {"comparisons": [], "unreadable_items": []})
    return "\n".join(lines)


def _rate(row: dict) -> str:
    ci = "{:.3f}-{:.3f}".format(*row["ci95"]) if row["ci95"] else "-"
    return f"{row['agree']} of {row['agree'] + row['disagree']} ({_num(row['rate'])}, 95% CI {ci})"


def _original_lines(original: dict) -> list[str]:
    """The table's lines on imported items (none for a project without any)."""
    lines = []
    for kind, what in (("relabel", "agree with the original label"), ("control", "correct")):
        row = original.get(kind)
        if not row or not row["items"]:
            continue
        lines += [
            "",
            f"{kind} items: {row['items']}, {row['items_labelled']} labelled; {what}: {_rate(row)}; "
            f"not counted: {row['ties']} tie, {row['both_bad']} both bad",
            f"{'annotator':<20}{'agree' if kind == 'relabel' else 'correct':<36}{'ties':>6}{'both bad':>10}",
        ]
        for who, r in row["per_annotator"].items():
            lines.append(f"{who[:19]:<20}{_rate(r):<36}{r['ties']:>6}{r['both_bad']:>10}")
    return lines


_COMMANDS = {
    "init": _init,
    "create-project": _create_project,
    "add-annotator": _add_annotator,
    "rotate-token": _rotate_token,
    "deactivate": _set_active(False),
    "reactivate": _set_active(True),
    "load": _load,
    "import": _import,
    "serve": _serve,
    "export": _export,
    "stats": _stats,
    "controls": _controls,
}
