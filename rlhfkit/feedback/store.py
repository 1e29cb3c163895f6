"""The feedback store: projects, annotators (and admins), items, and reading back the labels.

The annotation queue itself (claiming items, submitting, skipping) is `rlhfkit.feedback.queue.Queue`,
reached as ``store.queue``. Every method runs in its own transaction and commits before it returns.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.controls import KEEP, Keep, check_share
from rlhfkit.feedback.db import check_schema, make_engine, upgrade
from rlhfkit.feedback.queue import DEFAULT_LEASE, Queue, release
from rlhfkit.feedback.tables import (
    PENDING,
    RELEASED,
    SKIPPED,
    Admin,
    Annotation,
    Annotator,
    Assignment,
    Item,
    Project,
    Response,
)
from rlhfkit.feedback.views import (
    AnnotationView,
    Conflict,
    FeedbackError,
    ImportedItem,
    ItemView,
    NotFound,
    Original,
    Principal,
    ProjectInfo,
    SkipView,
)

__all__ = ["Conflict", "FeedbackError", "NotFound", "Store", "hash_token", "new_token"]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


class Store:
    """The feedback database: `Store.open` needs an up-to-date schema, `Store.init` creates/migrates it.

    ``lease`` is how long an annotator may hold a claimed item before it goes back to the queue (None:
    forever; see `rlhfkit.feedback.queue.Queue`).
    """

    def __init__(self, engine: Engine, lease: timedelta | None = DEFAULT_LEASE) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        self.queue = Queue(self._session, lease)

    @classmethod
    def open(cls, url: str | URL, lease: timedelta | None = DEFAULT_LEASE) -> Store:
        """Connect to a database whose schema is at the current revision.

        Raises:
            SchemaError: no database file (SQLite), no schema yet, or another revision (see
                `rlhfkit.feedback.db.check_schema`).
            sqlalchemy.exc.OperationalError: the database cannot be reached.
        """
        engine = make_engine(url, create=False)
        check_schema(engine)
        return cls(engine, lease)

    @classmethod
    def init(cls, url: str | URL) -> Store:
        """Connect to a database, creating or migrating its schema to the current revision first.

        Raises:
            SchemaError: the database is at a revision this rlhfkit does not know (made by a newer one).
            sqlalchemy.exc.OperationalError: the database cannot be reached.
        """
        engine = make_engine(url)
        upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # --- people -------------------------------------------------------------------------------------

    def create_admin(self, name: str = "admin", replace: bool = False) -> str:
        """Create the admin `name` and return its token (shown once; only its hash is stored).

        With `replace`, an existing admin of that name gets a new token and the old one stops working.

        Raises:
            Conflict: the admin exists and `replace` is False.
        """
        token = new_token()
        with self._session.begin() as s:
            admin = s.scalars(select(Admin).where(Admin.name == name)).first()
            if admin is not None and not replace:
                raise Conflict(f"admin {name!r} exists; ask for a new token to replace its old one")
            if admin is None:
                s.add(Admin(name=name, token_hash=hash_token(token)))
            else:
                admin.token_hash = hash_token(token)
        return token

    def has_admin(self) -> bool:
        """Whether any admin exists."""
        with self._session() as s:
            return s.scalar(select(func.count(Admin.id))) > 0

    def authenticate(self, token: str) -> Principal | None:
        """The admin or (active) annotator that `token` belongs to, or None."""
        digest = hash_token(token)
        with self._session() as s:
            admin = s.scalars(select(Admin).where(Admin.token_hash == digest)).first()
            if admin is not None:
                return Principal("admin", admin.id, admin.name)
            annotator = s.scalars(
                select(Annotator).where(Annotator.token_hash == digest, Annotator.active.is_(True))
            ).first()
            if annotator is not None:
                return Principal("annotator", annotator.id, annotator.name, annotator.project_id)
        return None

    def add_annotator(self, project: str, name: str) -> str:
        """Add annotator `name` to `project`; returns their token (shown once).

        Raises:
            NotFound: no such project.
            Conflict: the project already has an annotator of that name.
            ValueError: an empty name or one over 100 characters.
        """
        name = name.strip()
        if not 0 < len(name) <= 100:
            raise ValueError("an annotator name is 1 to 100 characters long")
        token = new_token()
        try:
            with self._session.begin() as s:
                s.add(
                    Annotator(
                        project_id=self._project(s, project).id, name=name, token_hash=hash_token(token)
                    )
                )
        except IntegrityError:
            raise Conflict(f"project {project!r} already has an annotator named {name!r}") from None
        return token

    def set_active(self, project: str, name: str, active: bool) -> int:
        """Deactivate (``active=False``) or reactivate an annotator; returns how many held items were
        released. A deactivated annotator's token is refused (401) and the items they held go back to the
        queue; their labels stay.

        Raises:
            NotFound: no such project or annotator.
        """
        with self._session.begin() as s:
            annotator = self._annotator(s, project, name)
            annotator.active = active
            return 0 if active else self._release_held(s, annotator)

    def _release_held(self, s: Session, annotator: Annotator) -> int:
        held = s.scalars(
            select(Assignment)
            .where(Assignment.annotator_id == annotator.id, Assignment.status == PENDING)
            .with_for_update()
        ).all()
        for assignment in held:
            release(s, assignment, RELEASED, self.queue.clock())
        return len(held)

    def rotate_token(self, project: str, name: str) -> str:
        """Give an annotator a new token (shown once); the old one stops working at once.

        Raises:
            NotFound: no such project or annotator.
        """
        token = new_token()
        with self._session.begin() as s:
            self._annotator(s, project, name).token_hash = hash_token(token)
        return token

    def revoke_token(self, project: str, name: str) -> int:
        """Make an annotator's token stop working at once, without giving a new one (`rotate_token`
        gives one later); the items they held go back to the queue. Returns how many were released.

        Raises:
            NotFound: no such project or annotator.
        """
        with self._session.begin() as s:
            annotator = self._annotator(s, project, name)
            annotator.token_hash = hash_token(new_token())  # a token nobody is shown
            return self._release_held(s, annotator)

    def _annotator(self, s: Session, project: str, name: str) -> Annotator:
        project_id = self._project(s, project).id
        annotator = s.scalars(
            select(Annotator)
            .where(Annotator.project_id == project_id, Annotator.name == name.strip())
            .with_for_update()
        ).first()
        if annotator is None:
            raise NotFound(f"project {project!r} has no annotator named {name!r}")
        return annotator

    def annotators(self, project: str) -> list[tuple[int, str, bool]]:
        """``(id, name, active)`` of the project's annotators.

        Raises:
            NotFound: no such project.
        """
        with self._session() as s:
            project_id = self._project(s, project).id
            rows = s.execute(
                select(Annotator.id, Annotator.name, Annotator.active)
                .where(Annotator.project_id == project_id)
                .order_by(Annotator.id)
            )
            return [tuple(r) for r in rows]

    # --- projects and items ---------------------------------------------------------------------------

    def create_project(
        self,
        name: str,
        guidelines: str = "",
        overlap: int = 1,
        control_rate: float = 0.0,
        min_control_accuracy: float | None = None,
    ) -> ProjectInfo:
        """Create a project whose items each go to `overlap` different annotators, with `control_rate`
        of each annotator's queue control items and annotators below `min_control_accuracy` flagged
        (`rlhfkit.feedback.controls`, `rlhfkit.feedback.quality`).

        Raises:
            Conflict: a project of that name exists.
            ValueError: an empty name or one over 100 characters, `overlap` < 1, or a rate or accuracy
                outside [0, 1].
        """
        check_share(control_rate, "the control rate")
        check_share(min_control_accuracy, "the minimum control accuracy")
        name = name.strip()
        if not 0 < len(name) <= 100:
            raise ValueError("a project name is 1 to 100 characters long")
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
            raise ValueError(f"overlap is the number of annotators per item, at least 1; got {overlap!r}")
        try:
            with self._session.begin() as s:
                s.add(
                    Project(
                        name=name,
                        guidelines=guidelines,
                        overlap=overlap,
                        control_rate=control_rate,
                        min_control_accuracy=min_control_accuracy,
                    )
                )
        except IntegrityError:
            raise Conflict(f"project {name!r} exists") from None
        return self.project(name)

    def update_project(
        self,
        name: str,
        guidelines: str | None = None,
        overlap: int | None = None,
        control_rate: float | None = None,
        min_control_accuracy: float | None | Keep = KEEP,
    ) -> ProjectInfo:
        """Change a project's guidelines, overlap, control rate and/or minimum control accuracy (None
        clears it: nobody is flagged); labels already given are kept.

        Raises:
            NotFound: no such project.
            ValueError: `overlap` < 1, or a rate or accuracy outside [0, 1].
        """
        check_share(control_rate, "the control rate")
        if min_control_accuracy is not KEEP:
            check_share(min_control_accuracy, "the minimum control accuracy")
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1):
            raise ValueError(f"overlap is the number of annotators per item, at least 1; got {overlap!r}")
        with self._session.begin() as s:
            project = self._project(s, name)
            if guidelines is not None:
                project.guidelines = guidelines
            if control_rate is not None:
                project.control_rate = control_rate
            if min_control_accuracy is not KEEP:
                project.min_control_accuracy = min_control_accuracy
            if overlap is not None:
                project.overlap = overlap
                s.execute(
                    update(Item).where(Item.project_id == project.id).values(is_open=Item.assigned < overlap)
                )
        return self.project(name)

    def project(self, name: str) -> ProjectInfo:
        """The project called `name`.

        Raises:
            NotFound: no such project.
        """
        with self._session() as s:
            return _info(self._project(s, name))

    def project_by_id(self, project_id: int) -> ProjectInfo:
        """The project with database id `project_id`.

        Raises:
            NotFound: no such project.
        """
        with self._session() as s:
            project = s.get(Project, project_id)
            if project is None:
                raise NotFound(f"no project with id {project_id}")
            return _info(project)

    def projects(self) -> list[ProjectInfo]:
        """Every project, oldest first."""
        with self._session() as s:
            return [_info(p) for p in s.scalars(select(Project).order_by(Project.id))]

    def load_items(self, project: str, records: Iterable[ItemRecord], batch: int = 500) -> tuple[int, int]:
        """Add items to `project`, all or nothing; returns ``(added, already there)``.

        An item whose key (its id, or the hash of its content, see `ItemRecord.key`) is already in the
        project is left as it is, so loading the same file twice adds nothing. Every record is taken
        first (a file's records are validated as they are read: a bad one stops the load before anything
        is written), then all are written in one transaction, flushed `batch` at a time.

        Raises:
            NotFound: no such project.
        """
        return self._add_items(project, [(record, None) for record in records], batch)

    def import_items(
        self, project: str, imported: Iterable[ImportedItem], batch: int = 500
    ) -> tuple[int, int]:
        """Add imported items with their original labels (`rlhfkit.feedback.imports.read_comparisons`),
        exactly as `load_items` adds items: keyed, all or nothing; returns ``(added, already there)``. An
        item already in the project keeps its own kind and original labels.

        Raises:
            NotFound: no such project.
        """
        return self._add_items(project, [(i.item, i.original) for i in imported], batch)

    def _add_items(
        self, project: str, entries: list[tuple[ItemRecord, Original | None]], batch: int
    ) -> tuple[int, int]:
        added = 0
        with self._session.begin() as s:
            project_id = self._project(s, project).id
            for start in range(0, len(entries), batch):
                chunk = entries[start : start + batch]
                keys = {record.key() for record, _ in chunk}
                seen = set(
                    s.scalars(
                        select(Item.external_id).where(
                            Item.project_id == project_id, Item.external_id.in_(keys)
                        )
                    )
                )
                for record, original in chunk:
                    key = record.key()
                    if key in seen:
                        continue
                    seen.add(key)
                    item = Item(
                        project_id=project_id,
                        external_id=key,
                        prompt=record.prompt,
                        meta=record.meta,
                        document=record.document,
                        original=original.to_json() if original is not None else None,
                        question=record.question,
                    )
                    item.responses = [
                        Response(position=i, text=r.text, meta=r.meta) for i, r in enumerate(record.responses)
                    ]
                    s.add(item)
                    added += 1
                s.flush()
        return added, len(entries) - added

    def set_originals(self, project: str, originals: dict[int, Original]) -> int:
        """Give items of `project` these original labels (`controls.controls_from_annotator` makes
        them), all in one transaction; returns how many items changed.

        Raises:
            NotFound: no such project, or an item id that is not one of its items (nothing is written).
        """
        with self._session.begin() as s:
            project_id = self._project(s, project).id
            for item_id, original in originals.items():
                item = s.get(Item, item_id)
                if item is None or item.project_id != project_id:
                    raise NotFound(f"project {project!r} has no item with id {item_id}")
                item.original = original.to_json()
        return len(originals)

    # --- reading everything (admin) ---------------------------------------------------------------------

    def items(self, project: str) -> list[ItemView]:
        """Every item of the project with its responses (in position order).

        Raises:
            NotFound: no such project.
        """
        with self._session() as s:
            project_id = self._project(s, project).id
            items = s.scalars(select(Item).where(Item.project_id == project_id).order_by(Item.id))
            return [
                ItemView(
                    i.id,
                    i.external_id,
                    i.prompt,
                    [ResponseRecord(r.text, r.meta) for r in i.responses],
                    i.meta,
                    i.document,
                    Original.from_json(i.original) if i.original is not None else None,
                    i.question,
                )
                for i in items
            ]

    def annotations(self, project: str) -> list[AnnotationView]:
        """Every annotation of the project, in the order they were made.

        Raises:
            NotFound: no such project.
        """
        with self._session() as s:
            project_id = self._project(s, project).id
            rows = s.execute(
                select(Annotation, Annotator.name)
                .join(Annotator, Annotator.id == Annotation.annotator_id)
                .where(Annotator.project_id == project_id)
                .order_by(Annotation.id)
            )
            return [
                AnnotationView(
                    a.id,
                    a.item_id,
                    name,
                    a.label,
                    a.ranking,
                    list(a.display_order),
                    a.strength,
                    a.note,
                    a.created_at,
                    a.duration_ms,
                    a.rating,
                )
                for a, name in rows
            ]

    def skips(self, project: str) -> list[SkipView]:
        """Every skipped assignment of the project.

        Raises:
            NotFound: no such project.
        """
        with self._session() as s:
            project_id = self._project(s, project).id
            rows = s.execute(
                select(Assignment, Annotator.name)
                .join(Annotator, Annotator.id == Assignment.annotator_id)
                .where(Annotator.project_id == project_id, Assignment.status == SKIPPED)
                .order_by(Assignment.id)
            )
            return [SkipView(a.item_id, name, list(a.display_order), a.finished_at) for a, name in rows]

    @staticmethod
    def _project(s: Session, name: str) -> Project:
        project = s.scalars(select(Project).where(Project.name == name)).first()
        if project is None:
            raise NotFound(f"no project named {name!r}")
        return project


def _info(project: Project) -> ProjectInfo:
    return ProjectInfo(
        project.id,
        project.name,
        project.guidelines,
        project.overlap,
        project.created_at,
        project.control_rate,
        project.min_control_accuracy,
    )
