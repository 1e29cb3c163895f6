"""The schema: migrations build exactly the tables the code declares; version checks; SQLite settings."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.db import (
    HEAD,
    MIGRATIONS,
    SchemaError,
    check_schema,
    current_revision,
    make_engine,
    upgrade,
)
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.store import Store
from rlhfkit.feedback.tables import Base


def test_head_is_the_newest_migration():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_migrations_match_the_tables(store):
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    assert current_revision(store.engine) == HEAD


def test_open_refuses_a_database_without_or_with_another_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'db' / 'f.db'}"
    with pytest.raises(SchemaError, match="rlhfkit annotate init"):
        Store.open(url)
    engine = make_engine(url)
    upgrade(engine)
    check_schema(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(SchemaError, match="revision 0000, this rlhfkit expects"):
        check_schema(engine)
    engine.dispose()


def test_sqlite_is_durable_and_waits_for_locks(sqlite_store):
    with sqlite_store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_open_never_creates_a_missing_file_and_init_creates_it_private(tmp_path):
    path = tmp_path / "db" / "f.db"
    with pytest.raises(SchemaError, match="no database file"):
        Store.open(f"sqlite:///{path}")
    assert not path.exists()
    Store.init(f"sqlite:///{path}").close()
    assert path.stat().st_mode & 0o777 == 0o600  # token hashes and labels: the owner's only


def test_init_on_a_newer_or_unknown_revision_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    Store.init(url).close()
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="revision 9999, which this rlhfkit does not know"):
        Store.init(url)
    engine.dispose()


def test_migrating_0001_to_0002_keeps_items_as_they_were(store):
    """A database made before documents and original labels (0001) migrates with its items intact:
    they get no document and no original labels, and are served as before."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert current_revision(store.engine) == "0001"
    with store.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO projects (name, guidelines, overlap, created_at) VALUES ('old', '', 1, :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO items (project_id, external_id, prompt, meta, created_at, assigned, is_open) "
                "SELECT id, 'q0', '\"an old prompt\"', NULL, :t, 0, true FROM projects WHERE name = 'old'"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO responses (item_id, position, text, meta) "
                "SELECT id, p, 'r' || p, NULL FROM items, (SELECT 0 AS p UNION ALL SELECT 1) AS ps"
            )
        )
    assert upgrade(store.engine) == HEAD == "0003"
    (item,) = store.items("old")
    assert (item.prompt, [r.text for r in item.responses]) == ("an old prompt", ["r0", "r1"])
    assert item.document is None and item.original is None
    who = store.authenticate(store.add_annotator("old", "ann")).id
    task = store.queue.next_task(who)
    assert task.prompt == "an old prompt" and task.document is None


def test_migrating_0002_to_0003_keeps_projects_items_and_labels_as_they_were(store):
    """A database made before ratings and quality control (0002) migrates with its rows intact: its
    projects mix in no control items and flag nobody, its items are comparisons, its labels no ratings."""
    from alembic import command
    from alembic.config import Config

    store.create_project("old", overlap=1)
    store.load_items("old", [ItemRecord(prompt="p", responses=(ResponseRecord("a"), ResponseRecord("b")))])
    who = store.authenticate(store.add_annotator("old", "ann")).id
    task = store.queue.next_task(who)
    store.queue.submit(who, task.item_id, Judgement(label="a_better", strength="clear"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    assert current_revision(store.engine) == "0002"
    assert upgrade(store.engine) == HEAD == "0003"
    with store.engine.connect() as connection:
        project = connection.execute(text("SELECT control_rate, min_control_accuracy FROM projects")).one()
        (question,) = connection.execute(text("SELECT question FROM items")).one()
        (rating, label) = connection.execute(text("SELECT rating, label FROM annotations")).one()
    assert tuple(project) == (0.0, None)
    assert question is None and rating is None and label == "a_better"
