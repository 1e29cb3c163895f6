"""Feedback-store fixtures: a fresh, migrated database per test, on SQLite and on a real PostgreSQL.

PostgreSQL runs where ``RLHFKIT_TEST_PG_URL`` points at a reachable server (``.ci/run`` starts one and
sets it); each test gets its own schema there, dropped afterwards. Without it the PostgreSQL cases are
skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.store import Store

PG_URL = os.environ.get("RLHFKIT_TEST_PG_URL")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file that each test copies (migrating once is faster than once per test)."""
    path = tmp_path_factory.mktemp("feedback_template") / "template.db"
    store = Store.init(f"sqlite:///{path}")
    store.close()
    return path


@pytest.fixture(scope="session")
def pg_server():
    """The admin URL of the test PostgreSQL server; skips when there is none."""
    if not PG_URL:
        pytest.skip("PostgreSQL tests need RLHFKIT_TEST_PG_URL (.ci/run starts a server and sets it)")
    from sqlalchemy import create_engine, text

    from rlhfkit.feedback.db import database_url

    engine = create_engine(database_url(PG_URL), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any failure to connect means "no server here"
        pytest.skip(f"PostgreSQL at RLHFKIT_TEST_PG_URL is not reachable: {str(err).splitlines()[0]}")
    yield engine
    engine.dispose()


def _sqlite_store(tmp_path, template) -> Store:
    path = tmp_path / "feedback.db"
    shutil.copy(template, path)
    return Store.open(f"sqlite:///{path}")


@pytest.fixture
def sqlite_store(tmp_path, sqlite_template):
    store = _sqlite_store(tmp_path, sqlite_template)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, sqlite_template):
    """A migrated, empty store: once on SQLite, once on PostgreSQL (in a schema of its own)."""
    if request.param == "sqlite":
        store = _sqlite_store(tmp_path, sqlite_template)
        yield store
        store.close()
        return
    admin = request.getfixturevalue("pg_server")
    from sqlalchemy import text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
    store = Store.init(url)
    try:
        yield store
    finally:
        store.close()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def pair_item(n: int, k: int = 2) -> ItemRecord:
    """Item ``q<n>`` with K responses ``"q<n> r<i>"``."""
    return ItemRecord(f"question {n}?", tuple(ResponseRecord(f"q{n} r{i}") for i in range(k)), f"q{n}")


def seed(store: Store, items: int = 4, k: int = 2, overlap: int = 2, annotators=("ann", "bob")) -> dict:
    """A project "p" with `items` items and the given annotators; returns ``{name: annotator id}``."""
    store.create_project("p", "be kind", overlap=overlap)
    store.load_items("p", [pair_item(n, k) for n in range(items)])
    ids = {}
    for name in annotators:
        ids[name] = store.authenticate(store.add_annotator("p", name)).id
    return ids


@pytest.fixture(name="seed")
def seed_fixture():
    """`seed`, as a fixture (conftest modules cannot be imported by name)."""
    return seed


@pytest.fixture(name="pair_item")
def pair_item_fixture():
    return pair_item
