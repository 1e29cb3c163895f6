"""The server under load and under a crash, over loopback HTTP (benchmarks/feedback_load.py does the work).

- 20 simulated annotators label every item: zero labels lost, zero duplicated, no item over-assigned,
  with control items mixed into every queue (each to every annotator at most once) and blind-evaluation
  items among the ordinary ones.
- The server is SIGKILLed in the middle of the load: every label acknowledged before the kill is in the
  database, the SQLite file is intact, and after a restart the annotators finish the queue with still
  nothing lost or duplicated.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from rlhfkit.feedback.store import Store

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "feedback_load.py"
_spec = importlib.util.spec_from_file_location("feedback_load", BENCHMARK)
load = sys.modules.setdefault("feedback_load", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(load)


MIX = {"controls": 6, "control_rate": 0.15, "evaluation": 30}  # 30 of the 150 items are evaluation items


def test_twenty_annotators_lose_and_duplicate_nothing(tmp_path):
    report = load.benchmark(f"sqlite:///{tmp_path / 'load.db'}", annotators=20, labels=300, overlap=2, **MIX)
    print(
        f"\n[feedback load] {report['acknowledged']} labels ({report['control_labels']} on controls) in "
        f"{report['seconds']} s; submit p50 {report['submit_p50_ms']} ms, p99 {report['submit_p99_ms']} ms"
    )
    assert report["errors"] == []
    assert report["acknowledged"] == report["stored"]
    assert report["stored"] - report["control_labels"] == 300  # every ordinary slot labelled, once
    assert 0 < report["control_labels"] <= 6 * 20  # mixed in, each control at most once per annotator
    assert report["evaluation_labels"] == 30 * 2
    assert report["lost"] == report["duplicated"] == report["over_assigned_items"] == 0


def test_killing_the_server_loses_no_acknowledged_label(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    tokens = load.setup(db_url, annotators=10, labels=240, overlap=1)
    port = load.free_port()
    base_url = f"http://{load.HOST}:{port}"
    server = load.start_server(db_url, port)
    run = load.Run()
    killer_done = threading.Event()

    def kill_midway():
        deadline = time.monotonic() + 60
        while len(run.acked) < 60 and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.005)
        server.send_signal(signal.SIGKILL)  # mid-load: other requests are in flight
        server.wait(30)
        killer_done.set()

    killer = threading.Thread(target=kill_midway)
    killer.start()
    load.run_annotators(base_url, tokens, run)
    killer.join()
    assert killer_done.is_set() and server.returncode == -signal.SIGKILL
    acked_before = set(run.acked)
    assert 60 <= len(acked_before) < 240  # killed in the middle, not before or after
    assert run.errors  # the annotators did see the server go

    store = Store.open(db_url)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    stored = {(a.item_id, a.annotator) for a in store.annotations("load")}
    store.close()
    assert acked_before <= stored  # every acknowledged label survived the kill

    # restart: the annotators get their held items back and finish; still nothing lost or doubled
    server = load.start_server(db_url, port)
    try:
        run.errors.clear()
        load.run_annotators(base_url, tokens, run)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    report = load.check(db_url, run, overlap=1)
    assert run.errors == []
    assert report["stored"] == 240 and report["lost"] == report["duplicated"] == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def load_db(request, tmp_path):
    """A database URL for a load run: a new SQLite file, or a schema of its own on the test PostgreSQL
    (``RLHFKIT_TEST_PG_URL``, which ``.ci/run`` starts; skipped without it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
        return
    url = os.environ.get("RLHFKIT_TEST_PG_URL")
    if not url:
        pytest.skip("PostgreSQL tests need RLHFKIT_TEST_PG_URL (.ci/run starts a server and sets it)")
    from sqlalchemy import create_engine

    from rlhfkit.feedback.db import database_url

    admin = create_engine(database_url(url))
    schema = f"load_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        scoped = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_twenty_annotators_with_submits_and_skips_racing_lose_and_duplicate_nothing(load_db):
    """A third of the items get a submit and a skip at the same moment (two tabs): exactly one side wins
    each race, and the database ends with every acknowledged label and skip, none twice, no item both
    labelled and skipped by one annotator, none over its overlap."""
    report = load.benchmark(load_db, annotators=20, labels=300, overlap=2, race_share=0.33, **MIX)
    assert report["errors"] == []
    assert report["control_labels"] > 0 and report["evaluation_labels"] > 0
    assert report["skips"] > 0 and report["acknowledged"] == report["stored"]
    assert report["lost"] == report["duplicated"] == report["over_assigned_items"] == 0
    assert report["labelled_and_skipped"] == 0
