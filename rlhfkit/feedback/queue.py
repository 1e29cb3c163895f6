"""The annotation queue: handing items to annotators, and taking their labels and skips.

Every method runs in its own transaction and commits before it returns: an accepted label is on disk
before the caller hears about it (on SQLite with ``synchronous=FULL``; see `rlhfkit.feedback.db`). The
guarantees that matter under concurrency are kept by the database's unique constraints, not by locks in
this process, so they hold for several server processes on one PostgreSQL database too:

- an item goes to at most ``overlap`` annotators at a time, and never twice to the same one (a control
  item mixed in at the project's ``control_rate`` goes to every annotator, in no slot, and still never
  twice to the same one: `rlhfkit.feedback.controls`);
- two annotators asking at the same moment never get the same slot (the loser of the race retries);
- one annotation per (item, annotator): resubmitting the same answer changes nothing;
- an assignment changes state once: of a submit and a skip of the same item sent at the same moment
  (two tabs), exactly one is accepted and the other gets a `Conflict`;
- an annotator holds one item at a time, however many of their ``next`` calls arrive at once;
- a claim is a lease: one held longer than ``lease`` (an annotator who went quiet) is released, and the
  item goes back to the queue. A submission on a released claim is refused with a `Conflict` saying so,
  never stored (the item's labels stay exactly once each).

Where the constraints alone cannot decide (a state read, then written), the rows are locked: the
annotator's row for a claim, the assignment's row for a submit or a skip (``SELECT ... FOR UPDATE`` on
PostgreSQL, where a second transaction waits and then reads the committed state; SQLite runs every
write transaction under ``BEGIN IMMEDIATE``, one at a time, so it needs no row locks).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rlhfkit.feedback.controls import available_to, next_control, ordinary_items
from rlhfkit.feedback.judgements import Judgement, letters_of, ranking_positions
from rlhfkit.feedback.ratings import check_answer
from rlhfkit.feedback.tables import (
    DONE,
    PENDING,
    RELEASED,
    SKIPPED,
    Annotation,
    Annotator,
    Assignment,
    Item,
    Project,
    Response,
    utcnow,
)
from rlhfkit.feedback.views import Busy, Conflict, NotFound, Progress, Task

_CLAIM_ATTEMPTS = 50


class _LostRace(Exception):
    """Another annotator filled the item between our look and our claim."""


_CANDIDATES = 8  # after a lost race, a claim picks at random among this many of the oldest open items


DEFAULT_LEASE = timedelta(hours=1)


class Queue:
    """The queue of one feedback database (reach it as `Store.queue`).

    Args:
        session: the store's session factory.
        lease: how long a claim is held before it is released (None: forever).
        clock: the current UTC time (tests pass a fake one).
    """

    def __init__(
        self,
        session: sessionmaker,
        lease: timedelta | None = DEFAULT_LEASE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._session = session
        self._rng = random.SystemRandom()
        self.lease, self.clock = lease, clock

    def next_task(self, annotator_id: int) -> Task | None:
        """The annotator's current item: the one they hold, else a newly claimed one; None when none is left.

        A new claim takes the lowest free slot of the oldest item this annotator has never been given
        (items go out in the order they were loaded), and a fresh random left-to-right order of its
        responses, which is recorded. With the project's ``control_rate`` > 0 the claim is a control
        item instead with that probability (one draw per call; `rlhfkit.feedback.controls`).

        Raises:
            NotFound: no such (active) annotator.
            Busy: `_CLAIM_ATTEMPTS` claims in a row lost a race to other annotators.
        """
        draw = self._rng.random()  # drawn once: a lost race must not give the control mix a second go
        for attempt in range(_CLAIM_ATTEMPTS):
            try:
                with self._session.begin() as s:
                    return self._claim(s, annotator_id, spread=attempt > 0, draw=draw)
            except (IntegrityError, _LostRace):  # another annotator took that slot first: look again
                continue
        raise Busy("too many annotators are asking for the same items right now; try again")

    def _claim(self, s: Session, annotator_id: int, spread: bool, draw: float) -> Task | None:
        # the lock serialises this annotator's claims: a second `next` waits, then sees the held item
        annotator = s.get(Annotator, annotator_id, with_for_update=True)
        if annotator is None or not annotator.active:
            raise NotFound(f"no active annotator with id {annotator_id}")
        self._release_expired(s, annotator.project_id)
        held = s.scalars(
            select(Assignment)
            .where(Assignment.annotator_id == annotator_id, Assignment.status == PENDING)
            .order_by(Assignment.id)
        ).first()
        if held is not None:
            return _task(s, held)
        project = s.get(Project, annotator.project_id)
        overlap = project.overlap
        candidates = s.scalars(
            select(Item.id)
            .where(*ordinary_items(project.id, annotator_id, project.control_rate))
            .order_by(Item.id)
            .limit(_CANDIDATES)
        ).all()
        if not candidates:
            return None
        if draw < project.control_rate:  # a mixed-in control: every annotator gets it, in no slot
            control = next_control(s, project.id, annotator_id)
            if control is not None:
                return _task(s, self._assign(s, control, annotator_id, None))
        # The oldest open item first; after a lost race, any of the oldest few, so that annotators who
        # keep colliding spread out instead of queueing for the same item.
        item_id = self._rng.choice(candidates) if spread else candidates[0]
        taken = s.execute(
            update(Item)
            .where(Item.id == item_id, Item.assigned < overlap)
            .values(assigned=Item.assigned + 1, is_open=Item.assigned + 1 < overlap)
        )
        if taken.rowcount != 1:
            raise _LostRace  # filled since the query above (rolls the transaction back)
        used = set(
            s.scalars(
                select(Assignment.slot).where(Assignment.item_id == item_id, Assignment.slot.is_not(None))
            )
        )
        free = [slot for slot in range(overlap) if slot not in used]
        if not free:
            raise _LostRace
        return _task(s, self._assign(s, item_id, annotator_id, free[0]))

    def _assign(self, s: Session, item_id: int, annotator_id: int, slot: int | None) -> Assignment:
        """A new pending assignment of the item, in `slot` (None: a mixed-in control), with a fresh random
        left-to-right order of its responses."""
        k = s.scalar(select(func.count(Response.id)).where(Response.item_id == item_id))
        order = list(range(k))
        self._rng.shuffle(order)
        assignment = Assignment(
            item_id=item_id,
            annotator_id=annotator_id,
            slot=slot,
            display_order=order,
            status=PENDING,
            assigned_at=self.clock(),
        )
        s.add(assignment)
        s.flush()  # a lost race on the slot raises IntegrityError here (or at commit)
        return assignment

    def submit(
        self, annotator_id: int, item_id: int, judgement: Judgement, duration_ms: int | None = None
    ) -> tuple[int, bool]:
        """Store the annotator's judgement of an item they were given; returns ``(annotation id, created)``.

        Committed before it returns. Resubmitting the same judgement (same label, strength, ranking,
        rating and note) returns the stored annotation with ``created=False`` and changes nothing. A
        rating item takes a rating and a comparison a label (`ratings.check_answer`).

        Raises:
            NotFound: the item was never given to this annotator.
            InvalidJudgement: the judgement does not fit the item (see `ratings.check_answer`).
            Conflict: the annotator already labelled the item differently, or skipped it.
        """
        for attempt in range(2):
            try:
                with self._session.begin() as s:
                    return self._submit(s, annotator_id, item_id, judgement, duration_ms)
            except IntegrityError:  # the same submission raced itself: the second look sees the first
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _submit(
        self, s: Session, annotator_id: int, item_id: int, judgement: Judgement, duration_ms: int | None
    ) -> tuple[int, bool]:
        assignment = _assignment(s, annotator_id, item_id)
        order = list(assignment.display_order)
        j, rating = check_answer(judgement, s.get(Item, item_id).question, len(order))
        ranking = ranking_positions(j, order)
        stored = s.scalars(select(Annotation).where(Annotation.assignment_id == assignment.id)).first()
        if stored is not None:
            if (stored.label, stored.strength, stored.ranking, stored.note, stored.rating) == (
                j.label,
                j.strength,
                ranking,
                j.note,
                rating,
            ):
                return stored.id, False
            raise Conflict(
                f"item {item_id} was already labelled {stored.label!r} at "
                f"{stored.created_at:%Y-%m-%d %H:%M:%S} UTC; a label cannot be changed"
            )
        if assignment.status == SKIPPED:
            raise Conflict(f"item {item_id} was skipped; it cannot be labelled afterwards")
        if assignment.status == RELEASED:
            raise Conflict(
                f"your claim on item {item_id} was released (held past its lease, or your account was "
                "deactivated) and the item went back to the queue; this label was not recorded"
            )
        now = self.clock()
        annotation = Annotation(
            item_id=item_id,
            annotator_id=annotator_id,
            assignment_id=assignment.id,
            label=j.label,
            ranking=ranking,
            display_order=order,
            strength=j.strength,
            note=j.note,
            duration_ms=duration_ms,
            rating=rating,
            created_at=now,
        )
        assignment.status, assignment.finished_at = DONE, now
        s.add(annotation)
        s.flush()
        return annotation.id, True

    def skip(self, annotator_id: int, item_id: int) -> None:
        """Skip an item: it leaves the annotator's queue for good and its slot goes to someone else.

        Skipping twice is the same as once.

        Raises:
            NotFound: the item was never given to this annotator.
            Conflict: the annotator already labelled it.
        """
        with self._session.begin() as s:
            assignment = _assignment(s, annotator_id, item_id)
            if assignment.status == DONE:
                raise Conflict(f"item {item_id} is already labelled; it cannot be skipped")
            if assignment.status == PENDING:
                release(s, assignment, SKIPPED, self.clock())

    def _release_expired(self, s: Session, project_id: int) -> None:
        """Release the project's claims held longer than the lease (rows another transaction is writing
        are left to it: ``SKIP LOCKED`` on PostgreSQL)."""
        if self.lease is None:
            return
        now = self.clock()
        expired = s.scalars(
            select(Assignment)
            .join(Item, Item.id == Assignment.item_id)
            .where(
                Item.project_id == project_id,
                Assignment.status == PENDING,
                Assignment.assigned_at < now - self.lease,
            )
            .with_for_update(skip_locked=True, of=Assignment)
        ).all()
        for assignment in expired:
            release(s, assignment, RELEASED, now)

    def progress(self, annotator_id: int) -> Progress:
        """The annotator's counts (see `Progress`).

        Raises:
            NotFound: no such annotator.
        """
        with self._session() as s:
            annotator = s.get(Annotator, annotator_id)
            if annotator is None:
                raise NotFound(f"no annotator with id {annotator_id}")
            counts = dict(
                s.execute(
                    select(Assignment.status, func.count(Assignment.id))
                    .where(Assignment.annotator_id == annotator_id)
                    .group_by(Assignment.status)
                ).all()
            )
            project = s.get(Project, annotator.project_id)
            available = available_to(s, project.id, annotator_id, project.control_rate)
            total = s.scalar(select(func.count(Item.id)).where(Item.project_id == project.id))
        return Progress(counts.get(DONE, 0), counts.get(SKIPPED, 0), counts.get(PENDING, 0), available, total)

    def own_annotations(self, annotator_id: int) -> list[dict[str, Any]]:
        """The annotator's own labels, newest first, in their display letters."""
        with self._session() as s:
            rows = s.scalars(
                select(Annotation)
                .where(Annotation.annotator_id == annotator_id)
                .order_by(Annotation.id.desc())
            )
            return [
                {
                    "item_id": a.item_id,
                    "label": a.label,
                    "ranking": letters_of(a.ranking, a.display_order),
                    "strength": a.strength,
                    "note": a.note,
                    "rating": a.rating,
                    "created_at": a.created_at.isoformat() + "Z",
                }
                for a in rows
            ]


def release(s: Session, assignment: Assignment, status: str, now: datetime) -> None:
    """End a held claim unlabelled (``status``: SKIPPED or RELEASED): its slot goes back to the item,
    which is open again for its next annotator. A mixed-in control held no slot: nothing goes back."""
    slotted = assignment.slot is not None
    assignment.status, assignment.slot, assignment.finished_at = status, None, now
    if not slotted:
        return
    overlap = s.scalar(
        select(Project.overlap).join(Item, Item.project_id == Project.id).where(Item.id == assignment.item_id)
    )
    s.execute(
        update(Item)
        .where(Item.id == assignment.item_id)
        .values(assigned=Item.assigned - 1, is_open=Item.assigned - 1 < overlap)
    )


def _assignment(s: Session, annotator_id: int, item_id: int) -> Assignment:
    """The annotator's assignment of the item, its row locked until the transaction ends (a concurrent
    submit or skip of it waits, then reads the state this one committed)."""
    assignment = s.scalars(
        select(Assignment)
        .where(Assignment.item_id == item_id, Assignment.annotator_id == annotator_id)
        .with_for_update()
    ).first()
    if assignment is None:
        raise NotFound(f"item {item_id} is not in your queue")
    return assignment


def _task(s: Session, assignment: Assignment) -> Task:
    item = s.get(Item, assignment.item_id)
    texts = [r.text for r in item.responses]
    order = list(assignment.display_order)
    return Task(
        item.id, item.external_id, item.prompt, [texts[p] for p in order], order, item.document, item.question
    )
