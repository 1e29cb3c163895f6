"""The report's human evaluation: a feedback project's blind evaluation of policies against a baseline
(`rlhfkit annotate evaluate`), read from the feedback database, in one table with the model judges.

``rlhfkit report RUN_DIR --feedback-project P [--feedback-db URL]`` reads project P's evaluation items
and labels and computes what ``rlhfkit annotate stats`` shows (`rlhfkit.feedback.evaluation`). Per
policy, the table's rows are the annotators, then each reward-model judge on exactly the items they
labelled (its agreement with them beside it), then each judge of the run's ``rlhfkit eval`` stages on
all of that stage's held-out prompts, where the stage compared the same policy with the same baseline:
human and model judgements side by side, on the same items and on the whole held-out set.

Like the rest of the report, nothing here raises on bad input: a database or project that cannot be read
is returned as a problem for the report to list.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhfkit.eval.report_data import Run, is_number

HEADER = (
    "policy",
    "judged by",
    "items",
    "policy win rate [95% CI]",
    "W / T / X / L",
    "tie share",
    "both-bad share",
    "agreement with annotators [95% CI]",
)


@dataclass(frozen=True)
class HumanEvaluation:
    """A feedback project's blind-evaluation statistics (`evaluation_stats` output) and where they came
    from."""

    project: str
    db: str
    stats: dict


def read_human_evaluation(db: str, project: str) -> tuple[HumanEvaluation | None, str | None]:
    """``(HumanEvaluation, None)``, or ``(None, why not)`` when the database or project cannot be read."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    from rlhfkit.feedback.db import SchemaError
    from rlhfkit.feedback.evaluation import evaluation_stats
    from rlhfkit.feedback.store import Store
    from rlhfkit.feedback.views import FeedbackError

    try:
        store = Store.open(db)
        try:
            stats = evaluation_stats(store.items(project), store.annotations(project))
            where = store.engine.url.render_as_string(hide_password=True)
        finally:
            store.close()
    except (FeedbackError, SchemaError, OperationalError, ArgumentError) as err:
        return None, f"feedback project {project!r} ({db}): {str(err).splitlines()[0]}"
    return HumanEvaluation(project, where, stats), None


def _counts(*values) -> str:
    return " / ".join("-" if v is None else str(v) for v in values)


def human_rows(human: HumanEvaluation, run: Run | None = None) -> list[list]:
    """The table's rows (`HEADER`'s columns), plain values: strings, numbers, ``(rate, [low, high])``
    pairs for the intervals, None for an empty cell."""
    rows = []
    for row in human.stats["comparisons"]:
        policy = f"{row['policy']} vs {row['baseline']}"
        rows.append(
            [
                policy,
                "annotators",
                row["items_labelled"],
                (row["win_rate"], row["ci95"]),
                _counts(row["policy_wins"], row["ties"], row["both_bad"], row["baseline_wins"]),
                row["tie_share"],
                row["both_bad_share"],
                None,
            ]
        )
        for judge, j in row["judges"].items():
            agree = j["agreement_with_annotators"]
            rows.append(
                [
                    policy,
                    f"{judge} (the same items)",
                    j["items"],
                    (j["win_rate"], j["ci95"]),
                    _counts(j["wins"], j["ties"], None, j["losses"]),
                    None,
                    None,
                    (agree["rate"], agree["ci95"], agree["n"]),
                ]
            )
        for stage in run.evals if run is not None else []:
            summary = stage.summary
            entry = summary["policies"].get(row["policy"])
            if summary.get("baseline") != row["baseline"] or not isinstance(entry, dict):
                continue
            for judge, j in (entry.get("judges") or {}).items():
                if isinstance(j, dict) and is_number(j.get("win_rate")):
                    rows.append(
                        [
                            policy,
                            f"{judge} ({stage.name}: every held-out prompt)",
                            summary.get("prompts"),
                            (j["win_rate"], [j.get("win_low"), j.get("win_high")]),
                            None,
                            None,
                            None,
                            None,
                        ]
                    )
    return rows


def human_notes(human: HumanEvaluation) -> list[str]:
    """The lines under the table: per comparison, annotator agreement and position bias; unreadable
    items; how the numbers are counted."""
    notes = []
    for row in human.stats["comparisons"]:
        agreement, bias = row["agreement"], row["position_bias"]
        alpha = "-" if agreement["alpha"] is None else f"{agreement['alpha']:.3f}"
        pairwise = "-" if agreement["pairwise"] is None else f"{agreement['pairwise']:.3f}"
        left = "-" if bias["rate"] is None else f"{bias['rate']:.3f}"
        ci = f" [{bias['ci95'][0]:.3f}, {bias['ci95'][1]:.3f}]" if bias["ci95"] else ""
        notes.append(
            f"{row['policy']} vs {row['baseline']}: {row['items']} items, {row['items_labelled']} labelled, "
            f"{row['labels']} labels; annotator agreement on {agreement['items']} items with two labels or "
            f"more: pairwise {pairwise}, Krippendorff's alpha {alpha}; position bias: the left response "
            f"picked in {bias['successes']} of {bias['n']} strict labels ({left}{ci}; 0.5 = none)."
        )
    if human.stats["unreadable_items"]:
        notes.append(
            f"{len(human.stats['unreadable_items'])} evaluation items left out: their responses do not name "
            "their baseline and policy."
        )
    notes.append(
        "Win rate: the policy's response preferred 1, the baseline's 0, tie and both bad 1/2 each "
        "(W / T / X / L: policy wins, ties, both bad, baseline wins). Intervals: bootstrap over the items; "
        "agreement with annotators (over the strict labels of items the judge scored apart) and position "
        "bias: Wilson."
    )
    return notes
