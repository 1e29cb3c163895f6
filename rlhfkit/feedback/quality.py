"""Per-annotator quality: control accuracy, agreement with the majority, speed, position bias, the flag.

For each annotator of a project (comparisons only; ratings are left out here):

- **Control accuracy**: over every (annotation, known answer) pair of control items
  (`agreement.original_agreement`), ``correct / judgements``. Unlike the ``original_labels`` rate of
  the stats, a **tie** or **both bad** answer to a control counts as a miss here: a known answer is a
  strict preference, and an annotator who answers "tie" to everything must not escape the flag.
- **Agreement with the majority**: the unit is one pair of responses of one item
  (`agreement.units_of`); for each unit that the annotator gave a strict value (``>`` or ``<``) and
  that at least one other annotator labelled, the *others'* majority is the value most of them gave
  (a tie in their vote count: the unit does not count). ``rate = agree / judgements``: the share of the
  annotator's strict judgements that agree with the others' majority (with one other annotator, plain
  agreement with them; it reads best with an overlap of 3 or more).
- **Speed**: the median of the seconds the page measured per label (``duration_ms``), None without any.
- **Position bias**: the share of their strict pairwise judgements in which the response shown on the
  left won (`agreement.position_bias`; 0.5 = none).
- **Flagged**: the project has a ``min_control_accuracy``, the annotator has at least
  `MIN_CONTROL_JUDGEMENTS` control judgements, and their control accuracy is below it.

``annotate export --exclude-flagged`` (and the export API's ``exclude_flagged=true``) leaves flagged
annotators' labels out (`without_flagged`) and says how many.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rlhfkit.feedback.agreement import original_agreement, position_bias, project_stats, units_of
from rlhfkit.feedback.controls import mixed_in
from rlhfkit.feedback.views import AnnotationView, ItemView, ProjectInfo, SkipView
from rlhfkit.stats import wilson_interval

MIN_CONTROL_JUDGEMENTS = 5  # fewer control judgements than this never flag an annotator
_STRICT = (">", "<")


def majority_agreement(items: Iterable[ItemView], annotations: Iterable[AnnotationView]) -> dict[str, dict]:
    """``{annotator: {"agree", "judgements", "rate"}}``: agreement with the other annotators' majority
    (see the module docstring); ``rate`` is None without a judgement."""
    k_of = {item.id: len(item.responses) for item in items}
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for values in units_of(annotations, k_of).values():
        if len(values) < 2:
            continue
        for who, value in values.items():
            if value not in _STRICT:
                continue
            ranked = Counter(v for other, v in values.items() if other != who).most_common(2)
            if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
                continue  # the others are split evenly: no majority to agree with
            tally[who][0] += value == ranked[0][0]
            tally[who][1] += 1
    return {who: _rate(agree, n) for who, (agree, n) in tally.items()}


def _rate(agree: int, n: int) -> dict[str, Any]:
    return {"agree": agree, "judgements": n, "rate": agree / n if n else None}


def control_accuracy(items: Iterable[ItemView], annotations: Iterable[AnnotationView]) -> dict[str, dict]:
    """``{annotator: {"correct", "judgements", "accuracy", "ci95"}}`` on control items; a tie or both-bad
    answer is a miss (see the module docstring)."""
    per = original_agreement(items, annotations)["control"]["per_annotator"]
    out = {}
    for who, row in per.items():
        n = row["judgements"]
        out[who] = {
            "correct": row["agree"],
            "judgements": n,
            "accuracy": row["agree"] / n if n else None,
            "ci95": wilson_interval(row["agree"], n),
        }
    return out


def annotator_quality(
    items: list[ItemView],
    annotations: list[AnnotationView],
    skips: list[SkipView],
    annotators: Iterable[tuple[str, bool]],
    min_control_accuracy: float | None,
) -> dict[str, dict]:
    """One row per annotator (`annotators`: ``(name, active)``, in order), JSON-ready: ``{"active",
    "labels", "skips", "median_seconds", "majority": {"agree", "judgements", "rate"}, "control":
    {"correct", "judgements", "accuracy", "ci95"}, "position_bias": {"left_wins", "judgements", "rate"},
    "flagged": bool}`` (see the module docstring)."""
    comparisons = [a for a in annotations if a.rating is None]
    majority = majority_agreement(items, comparisons)
    controls = control_accuracy(items, comparisons)
    bias = position_bias(comparisons)["per_annotator"]
    labels = Counter(a.annotator for a in annotations)
    skipped = Counter(s.annotator for s in skips)
    seconds: dict[str, list[float]] = defaultdict(list)
    for a in annotations:
        if a.duration_ms is not None:
            seconds[a.annotator].append(a.duration_ms / 1000)
    rows = {}
    for name, active in annotators:
        control = controls.get(name, {"correct": 0, "judgements": 0, "accuracy": None, "ci95": None})
        left = bias.get(name, {"left_wins": 0, "judgements": 0, "rate": None})
        rows[name] = {
            "active": active,
            "labels": labels[name],
            "skips": skipped[name],
            "median_seconds": statistics.median(seconds[name]) if seconds[name] else None,
            "majority": majority.get(name, _rate(0, 0)),
            "control": control,
            "position_bias": {k: left[k] for k in ("left_wins", "judgements", "rate")},
            "flagged": min_control_accuracy is not None
            and control["judgements"] >= MIN_CONTROL_JUDGEMENTS
            and control["accuracy"] < min_control_accuracy,
        }
    return rows


def flagged(quality: dict[str, dict]) -> list[str]:
    """The flagged annotators of an `annotator_quality` table, in its order."""
    return [name for name, row in quality.items() if row["flagged"]]


def without_flagged(
    annotations: Iterable[AnnotationView], names: Iterable[str]
) -> tuple[list[AnnotationView], int]:
    """The annotations not made by `names`, and how many were left out."""
    annotations, names = list(annotations), set(names)
    kept = [a for a in annotations if a.annotator not in names]
    return kept, len(annotations) - len(kept)


def _quality(
    store,
    name: str,
    items: list[ItemView],
    annotations: list[AnnotationView],
    skips: list[SkipView] | None = None,
) -> dict[str, dict]:
    project: ProjectInfo = store.project(name)
    people = [(who, active) for _, who, active in store.annotators(name)]
    skips = store.skips(name) if skips is None else skips
    return annotator_quality(items, annotations, skips, people, project.min_control_accuracy)


def project_report(store, name: str) -> dict[str, Any]:
    """`agreement.project_stats` of the project, with ``"quality"``: ``{"control_rate",
    "min_control_accuracy", "min_control_judgements", "annotators": annotator_quality(...),
    "flagged": [names]}`` (every annotator of the project, active or not).

    Raises:
        NotFound: no such project.
    """
    project: ProjectInfo = store.project(name)
    items, annotations, skips = store.items(name), store.annotations(name), store.skips(name)
    report = project_stats(items, annotations, skips, project.overlap)
    quality = _quality(store, name, items, annotations, skips)
    report["quality"] = {
        "control_rate": project.control_rate,
        "controls_mixed_in": mixed_in(project.control_rate),
        "min_control_accuracy": project.min_control_accuracy,
        "min_control_judgements": MIN_CONTROL_JUDGEMENTS,
        "annotators": quality,
        "flagged": flagged(quality),
    }
    return report


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def quality_lines(quality: dict[str, Any] | None) -> list[str]:
    """The `project_report` ``"quality"`` block as lines of the stats table (none without it)."""
    if not quality or not quality["annotators"]:
        return []
    threshold = quality["min_control_accuracy"]
    rule = (
        f"flagged below {_num(threshold, 2)} control accuracy with >= {quality['min_control_judgements']} "
        "control judgements"
        if threshold is not None
        else "no minimum control accuracy (create-project --update --min-control-accuracy): none flagged"
    )
    lines = [
        "",
        f"quality (control rate {_num(quality['control_rate'], 2)}; {rule})",
        f"{'annotator':<20}{'active':>7}{'labels':>8}{'skips':>7}{'median s':>10}{'majority':>14}"
        f"{'controls':>14}{'left wins':>11}  flag",
    ]
    for who, row in quality["annotators"].items():
        majority, control = row["majority"], row["control"]
        lines.append(
            f"{who[:19]:<20}{'yes' if row['active'] else 'no':>7}{row['labels']:>8}{row['skips']:>7}"
            f"{_num(row['median_seconds'], 1):>10}"
            f"{_num(majority['rate']):>7} of {majority['judgements']:<4}"
            f"{_num(control['accuracy']):>7} of {control['judgements']:<4}"
            f"{_num(row['position_bias']['rate']):>11}  {'FLAGGED' if row['flagged'] else ''}".rstrip()
        )
    return lines


@dataclass(frozen=True)
class Flagged:
    """What an export did about flagged annotators: who they are, whether their labels were left out
    (``excluded``), and how many labels that was."""

    names: tuple[str, ...]
    excluded: bool
    left_out: int

    def message(self) -> str | None:
        """One line for the terminal (None: nobody is flagged)."""
        if not self.names:
            return None
        who = ", ".join(self.names)
        if not self.excluded:
            return f"note: flagged annotators {who}; --exclude-flagged leaves their labels out"
        return f"left out {self.left_out} labels of {len(self.names)} flagged annotators ({who})"


def export_annotations(
    store, name: str, items: list[ItemView], annotations: list[AnnotationView], exclude_flagged: bool
) -> tuple[list[AnnotationView], Flagged]:
    """The annotations of project `name` that an export writes (with `exclude_flagged`, none of a
    flagged annotator's), and what was done about flagged annotators.

    Raises:
        NotFound: no such project.
    """
    names = tuple(flagged(_quality(store, name, items, annotations)))
    if not exclude_flagged:
        return annotations, Flagged(names, False, 0)
    kept, left_out = without_flagged(annotations, names)
    return kept, Flagged(names, True, left_out)
