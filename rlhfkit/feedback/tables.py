"""The feedback store's tables (SQLAlchemy 2 ORM). The schema is versioned by Alembic (``migrations/``).

A *project* holds *items*; an item is a prompt with K >= 2 candidate *responses*, and optionally the
*document* they are about (a post or article the page shows in place of the prompt) and, for an item
imported from a labelled data set (``annotate import``), its *original* labels (never sent to
annotators; `rlhfkit.feedback.imports`). Each item goes to
``project.overlap`` *annotators*: handing an item to an annotator creates an *assignment* in one of the
item's ``overlap`` slots (``UNIQUE(item_id, slot)``: two annotators can never hold the same slot, and
``UNIQUE(item_id, annotator_id)``: nobody gets an item twice). The assignment records the left-to-right
order in which the responses are shown to that annotator. Submitting creates an *annotation*
(``UNIQUE(item_id, annotator_id)``, so a resubmission cannot add a second one).

``items.assigned`` / ``items.is_open`` count the taken slots (an index finds open items fast); the
unique constraints, not these counters, are what keep two annotators out of one slot.

A skipped assignment keeps its row (the annotator is never handed that item again) but gives its slot
back (``slot = NULL``) so another annotator can take it. A control item mixed into every annotator's
queue (``projects.control_rate`` > 0, `rlhfkit.feedback.controls`) is assigned in no slot at all
(``slot = NULL`` from the start): it goes to every annotator, once each, and never counts in ``assigned``.

Times are naive UTC datetimes. Tokens are never stored, only their SHA-256.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PENDING, DONE, SKIPPED = "pending", "done", "skipped"
RELEASED = "released"  # a claim given back unlabelled: its lease ran out, or its annotator was deactivated


def utcnow() -> datetime:
    """The current UTC time as a naive datetime (what the tables store)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Admin(Base):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The share of an annotator's queue that is control items (0: none mixed in), and the control
    # accuracy below which an annotator is flagged (None: never flagged).
    control_rate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    min_control_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)


class Annotator(Base):
    __tablename__ = "annotators"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_annotators_project_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_items_project_external_id"),
        Index("ix_items_project_open", "project_id", "is_open", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    # How many slots are taken (assignments with a slot), and whether that is below the overlap: kept
    # by the queue in the same transaction as the assignments, so that finding open items is an index
    # lookup rather than a count per item.
    assigned: Mapped[int] = mapped_column(Integer, default=0)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    prompt: Mapped[Any] = mapped_column(JSON)  # a string or a list of chat messages
    meta: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    document: Mapped[Any] = mapped_column(JSON, nullable=True)  # {"text", "title"?, "source"?} or NULL
    # An imported item's original labels, {"kind": "relabel"|"control", "format", "labels": [...]}
    # (`views.Original.to_json`), or NULL: for the stats and the admin only, never for annotators.
    original: Mapped[Any] = mapped_column(JSON, nullable=True)
    # What annotators are asked: NULL compares the responses; a rating of a single response is
    # {"type": "thumbs"} or {"type": "likert", "axes": [...], "scale": 7}.
    question: Mapped[Any] = mapped_column(JSON, nullable=True)

    responses: Mapped[list[Response]] = relationship(
        order_by="Response.position", lazy="selectin", cascade="all, delete-orphan"
    )


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_responses_item_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based index in the item as loaded
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[Any] = mapped_column(JSON, nullable=True)  # model, sampling settings, ...


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", name="uq_assignments_item_annotator"),
        UniqueConstraint("item_id", "slot", name="uq_assignments_item_slot"),
        Index("ix_assignments_annotator_status", "annotator_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"))
    slot: Mapped[int | None] = mapped_column(Integer, nullable=True)  # NULL once skipped
    display_order: Mapped[Any] = mapped_column(JSON)  # response positions, left to right
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    assigned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Annotation(Base):
    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("item_id", "annotator_id", name="uq_annotations_item_annotator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    label: Mapped[str] = mapped_column(String(16))  # a_better | b_better | tie | both_bad | ranking
    ranking: Mapped[Any] = mapped_column(JSON, nullable=True)  # response positions, best first
    display_order: Mapped[Any] = mapped_column(JSON)  # response positions, left to right, as shown
    strength: Mapped[str | None] = mapped_column(String(16), nullable=True)  # slight | clear | strong
    note: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # A rating item's answer, {"thumbs": "up"|"down"} or {axis: 1..scale, ...}; NULL for a comparison.
    rating: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
