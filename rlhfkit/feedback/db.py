"""Connecting to the feedback database and keeping its schema at the version this code expects.

Any SQLAlchemy URL works; the two that are tested are SQLite (the embedded default,
``sqlite:///runs/feedback.db``) and PostgreSQL (``postgresql://user:pass@host/db``, driven by psycopg 3).

SQLite is set up for durability and concurrent writers: WAL journal, ``synchronous=FULL`` (a commit
is on disk before it returns), ``BEGIN IMMEDIATE`` transactions (so two writers queue for the lock
instead of failing half-way with "database is locked"), one pooled connection per process (threads take
turns in order) and a 30 s busy timeout (for other processes on the same file).

The schema is versioned with Alembic (``migrations/versions``): `upgrade` brings a database to the
newest revision, `check_schema` refuses a database that is older or newer than this code.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, QueuePool, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0003"  # the newest revision in migrations/versions; test_db.py checks they agree


class SchemaError(RuntimeError):
    """The database has no feedback schema yet, or one at another revision than this code expects."""


def database_url(url: str | URL) -> URL:
    """Parse `url`, choosing the psycopg (3) driver for a bare ``postgresql://`` URL.

    Raises:
        sqlalchemy.exc.ArgumentError: `url` is not a database URL.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, create: bool = True) -> Engine:
    """An engine for `url`; for a SQLite file, the pragmas above are set and, with ``create``, a missing
    file is created (with its folder) readable by its owner only (mode 0600: it holds token hashes and
    every label).

    Raises:
        sqlalchemy.exc.ArgumentError: `url` is not a database URL.
        ModuleNotFoundError: the URL's database driver is not installed (psycopg for PostgreSQL).
        SchemaError: ``create`` is false and the SQLite file does not exist.
    """
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.exists():
            if not create:
                raise SchemaError(f"no database file {path}; run `rlhfkit annotate init --db {parsed}`")
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # One connection per process: SQLite has one writer at a time anyway, and threads queueing for the
    # pool's connection are served in turn, where threads polling SQLite's lock (busy_timeout) are not.
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=120,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we send BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for a database without the feedback schema."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Create or migrate the schema up to `revision` (default: the newest); returns the revision reached.

    Raises:
        SchemaError: the database is at a revision this rlhfkit does not know (a newer one).
        alembic.util.CommandError: `revision` is unknown.
        sqlalchemy.exc.SQLAlchemyError: the database refused a migration (it is rolled back).
    """
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    found = current_revision(engine)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if found is not None and found not in known:
        where = engine.url.render_as_string(hide_password=True)
        raise SchemaError(
            f"{where} is at schema revision {found}, which this rlhfkit does not know (it knows up to "
            f"{HEAD}): the database was made by a newer rlhfkit; upgrade rlhfkit, or use another database"
        )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return current_revision(engine) or ""


def check_schema(engine: Engine) -> None:
    """Make sure the database is at `HEAD`.

    Raises:
        SchemaError: no feedback schema (run ``rlhfkit annotate init``), or another revision (``init``
            migrates an older one; a newer one needs a newer rlhfkit).
    """
    revision = current_revision(engine)
    if revision == HEAD:
        return
    where = engine.url.render_as_string(hide_password=True)
    if revision is None:
        raise SchemaError(f"{where} has no feedback schema yet; run `rlhfkit annotate init --db {where}`")
    raise SchemaError(
        f"{where} is at schema revision {revision}, this rlhfkit expects {HEAD}; "
        f"run `rlhfkit annotate init --db {where}` to migrate (or upgrade rlhfkit if the database is newer)"
    )
