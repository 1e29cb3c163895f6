"""Control items: items with a known answer, mixed into every annotator's queue at a project's rate.

A *control* is an item whose original labels are of kind ``"control"`` (`views.Original`). Its known
answer comes from a labelled data set (``annotate import --as control``) or from an annotator of the
project (`controls_from_annotator`, ``annotate controls --from NAME``: an admin labels items as an
annotator of their own, and their strict preferences become the known answers of those items).

How controls are served (`rlhfkit.feedback.queue.Queue.next_task`), by ``projects.control_rate``:

- ``0`` (the default): controls are ordinary items: they go to ``overlap`` annotators, like any other.
- ``0 < rate <= 1``: controls leave the ordinary queue and are *mixed in*. Each new claim draws
  ``u ~ U[0, 1)`` once; if ``u < rate`` the annotator gets the oldest control they were never given,
  otherwise (or when none is left) the next ordinary item. So the expected share of controls in an
  annotator's queue is ``rate`` for as long as controls last. A mixed-in control is served to *every*
  annotator, not to ``overlap`` of them (a known answer is worth asking everyone), once each: its
  assignment takes no slot (``slot = NULL``; ``UNIQUE(item, annotator)`` still holds), so it never
  counts towards ``items.assigned`` and never closes. Controls are mixed *into* ordinary work: once an
  annotator has no ordinary item left, their queue is empty, whatever controls they were not given.

A control looks exactly like any other item to the annotator: the same task JSON (`api.task_json`
sends no kind, original labels or metadata), its own random left-to-right order, and the same progress
counts (`available_to`: the controls not yet given count as items left while ordinary work remains, so
"left" drops by one for every label, control or not). One hint remains: the task's ``item_id`` is the
item's database id, and controls loaded in a batch of their own are numbered apart from the items around
them (opaque per-assignment ids in the annotator API would close it).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from rlhfkit.feedback.judgements import PREFERENCES, pair_outcomes
from rlhfkit.feedback.tables import Assignment, Item
from rlhfkit.feedback.views import AnnotationView, ItemView, NotFound, Original, OriginalLabel

CONTROL = "control"


class Keep(enum.Enum):
    """The type of `KEEP`: "leave this setting as it is" where None means "clear it"."""

    KEEP = "keep"


KEEP = Keep.KEEP
FROM_ANNOTATOR = "annotator"  # `Original.format` of known answers made from an annotator's labels


def is_control() -> ColumnElement[bool]:
    """SQL: the item is a control (its original labels are of kind ``"control"``; SQLite and PostgreSQL)."""
    return func.coalesce(Item.original["kind"].as_string(), "") == CONTROL


def _not_given(annotator_id: int) -> ColumnElement[bool]:
    return ~exists().where(Assignment.item_id == Item.id, Assignment.annotator_id == annotator_id)


def mixed_in(control_rate: float | None) -> bool:
    """Whether a project with this rate mixes its controls in (else they are ordinary items)."""
    return bool(control_rate) and control_rate > 0


def ordinary_items(project_id: int, annotator_id: int, control_rate: float) -> list[ColumnElement[bool]]:
    """SQL conditions: an open item of the project that the annotator was never given and that the
    ordinary (overlap) queue serves, i.e. not a mixed-in control."""
    conditions = [Item.project_id == project_id, Item.is_open.is_(True), _not_given(annotator_id)]
    if mixed_in(control_rate):
        conditions.append(~is_control())
    return conditions


def next_control(s: Session, project_id: int, annotator_id: int) -> int | None:
    """The id of the oldest control of the project that the annotator was never given, or None."""
    return s.scalar(
        select(Item.id)
        .where(Item.project_id == project_id, is_control(), _not_given(annotator_id))
        .order_by(Item.id)
        .limit(1)
    )


def available_to(s: Session, project_id: int, annotator_id: int, control_rate: float) -> int:
    """How many more items the annotator may be given: ordinary items open to them, plus (while there is
    one) the mixed-in controls they were never given."""
    ordinary = s.scalar(
        select(func.count(Item.id)).where(*ordinary_items(project_id, annotator_id, control_rate))
    )
    if not ordinary or not mixed_in(control_rate):
        return ordinary
    controls = s.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project_id, is_control(), _not_given(annotator_id)
        )
    )
    return ordinary + controls


# --- known answers from an annotator's labels ------------------------------------------------------


@dataclass
class ControlsReport:
    """What `controls_from_annotator` did with each of the annotator's labels."""

    made: dict[int, Original] = field(default_factory=dict)  # item id -> the item's new original labels
    already: int = 0  # items that already had these known answers (running the command again)
    not_strict: int = 0  # ties, both-bad and ratings: no known preference to check others against
    has_original: int = 0  # items that already had other original labels (imported): left as they are

    def summary(self) -> str:
        """One line for the terminal."""
        return (
            f"{len(self.made)} items made controls, {self.already} already were; left out: "
            f"{self.not_strict} not a strict preference (tie, both bad, rating), {self.has_original} with "
            "original labels of their own (imported)"
        )


def controls_from_annotator(
    items: Iterable[ItemView], annotations: Iterable[AnnotationView], name: str
) -> ControlsReport:
    """The known answers that annotator `name`'s labels make (see the module docstring).

    Each strict preference of `name` (``a_better``, ``b_better``, or a ranking: every pair of it) on an
    item without original labels becomes that item's original labels, ``Original("control",
    "annotator", ...)`` with ``worker=name``. Ties, both-bad and ratings make none; an item that already
    has original labels (imported, or made from another annotator) keeps them. Nothing is written here
    (`Store.set_originals` writes ``report.made``).
    """
    by_id = {item.id: item for item in items}
    report = ControlsReport()
    for a in annotations:
        if a.annotator != name:
            continue
        item = by_id[a.item_id]
        if a.label not in PREFERENCES or a.ranking is None:
            report.not_strict += 1
            continue
        outcomes = pair_outcomes(a.label, a.ranking, len(item.responses))
        labels = tuple(
            OriginalLabel(i, j, name) if outcome == ">" else OriginalLabel(j, i, name)
            for (i, j), outcome in sorted(outcomes.items())
        )
        original = Original(CONTROL, FROM_ANNOTATOR, labels)
        if item.original == original:
            report.already += 1
        elif item.original is not None:
            report.has_original += 1
        else:
            report.made[item.id] = original
    return report


def check_share(value: float | None, what: str) -> float | None:
    """`value` as a share in [0, 1] (None passes through).

    Raises:
        ValueError: not a number (a bool is not one), NaN, or outside [0, 1]; the message names `what`.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{what} is a share between 0 and 1; got {value!r}")
    return float(value)


def make_controls(store, project: str, name: str) -> ControlsReport:
    """Turn annotator `name`'s labels in `project` into known answers (`controls_from_annotator`) and
    write them (`Store.set_originals`), all at once; returns the report.

    Raises:
        NotFound: no such project, or no annotator `name` in it.
    """
    if name.strip() not in {who for _, who, _ in store.annotators(project)}:
        raise NotFound(f"project {project!r} has no annotator named {name!r}")
    report = controls_from_annotator(store.items(project), store.annotations(project), name.strip())
    store.set_originals(project, report.made)
    return report
