"""Load benchmark of the annotation server: simulated annotators on loopback label every item.

The server runs in its own process (``python -m rlhfkit.feedback serve``); each annotator is a thread
with its own HTTP connection that asks for an item (``POST /api/next``), labels it (``POST
/api/annotations``) and goes on until its queue is empty. With ``race_share`` > 0 that share of items
gets a submit and a skip sent at the same moment from two connections (two tabs): exactly one of them
may be accepted. Afterwards the database is read directly: every acknowledged label must be there (zero
lost), once (zero duplicated), never beside a skip of the same item by the same annotator, with no item
given to more than ``overlap`` annotators. With ``controls`` > 0 and ``control_rate`` > 0, that many
control items (known answers) are mixed into every annotator's queue at that rate, each to every
annotator at most once (`rlhfkit.feedback.controls`); with ``evaluation`` > 0, that many of the items
are blind-evaluation items (a baseline's and a policy's response, their names and scores in the metadata
annotators never see).

    .venv/bin/python benchmarks/feedback_load.py                       # 20 annotators, 2,000 labels, SQLite
    .venv/bin/python benchmarks/feedback_load.py --db postgresql://postgres@127.0.0.1:55432/postgres

Prints the p50 / p99 latency of submissions and of claims, and the throughput. The functions are also
used by tests/integration/test_feedback_load.py (with fewer labels, and with the server killed midway).
Only loopback addresses are used; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.store import Store
from rlhfkit.feedback.views import ImportedItem, Original, OriginalLabel

HOST = "127.0.0.1"
LABELS = ("a_better", "b_better", "tie", "both_bad")
STRENGTHS = ("slight", "clear", "strong")


@dataclass
class Run:
    """What the simulated annotators saw: acknowledged labels and latencies (seconds)."""

    acked: set = field(default_factory=set)  # (item_id, annotator)
    skipped: set = field(default_factory=set)  # (item_id, annotator) whose skip was acknowledged
    both_accepted: int = 0  # races in which the submit and the skip were both acknowledged
    duplicates_acked: int = 0  # 200 replies with created=True for a pair already acknowledged
    submit_latency: list = field(default_factory=list)
    claim_latency: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def evaluation_item(n: int) -> ItemRecord:
    """A blind-evaluation item, shaped as ``rlhfkit annotate evaluate`` makes them: baseline at 0."""

    def response(policy: str, text: str, score: float) -> ResponseRecord:
        meta = {"policy": policy, "path": f"runs/load/{policy}", "sampling": {"temperature": 0.7}}
        return ResponseRecord(text, {**meta, "scores": {"judge": score}})

    responses = (response("sft", f"{n} baseline", 0.25), response("ppo", f"{n} policy", 0.75))
    return ItemRecord(
        f"eval prompt {n}", responses, f"e{n}", {"evaluation": {"baseline": "sft", "policy": "ppo"}}
    )


def control_item(n: int) -> ImportedItem:
    """A control item: its response at position 0 is the known better one."""
    record = ItemRecord(f"control {n}", (ResponseRecord(f"{n} right"), ResponseRecord(f"{n} wrong")), f"c{n}")
    return ImportedItem(record, Original("control", "trl", (OriginalLabel(0, 1),)))


def setup(
    db_url: str,
    annotators: int,
    labels: int,
    overlap: int,
    controls: int = 0,
    control_rate: float = 0.0,
    evaluation: int = 0,
) -> dict[str, str]:
    """A project "load" with labels / overlap items (`evaluation` of them blind-evaluation items),
    `controls` control items mixed in at `control_rate`, and `annotators` annotators; returns their
    tokens."""
    store = Store.init(db_url)
    store.create_project("load", "Label at random.", overlap=overlap, control_rate=control_rate)
    n_items = math.ceil(labels / overlap)
    store.load_items(
        "load",
        (
            ItemRecord(f"prompt {n}", (ResponseRecord(f"{n}a"), ResponseRecord(f"{n}b")), f"i{n}")
            if n >= evaluation
            else evaluation_item(n)
            for n in range(n_items)
        ),
    )
    store.import_items("load", [control_item(n) for n in range(controls)])
    tokens = {
        f"annotator{n:02d}": store.add_annotator("load", f"annotator{n:02d}") for n in range(annotators)
    }
    store.close()
    return tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(db_url: str, port: int, timeout: float = 60.0) -> subprocess.Popen:
    """Start ``python -m rlhfkit.feedback serve`` and wait until it answers.

    Raises:
        RuntimeError: it exited or did not answer within `timeout` seconds.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlhfkit.feedback",
            "serve",
            "--db",
            db_url,
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/api/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not answer on port {port} within {timeout} s")


def _race(client: httpx.Client, tab: httpx.Client, body: dict) -> tuple[httpx.Response, httpx.Response]:
    """A submit (from ``client``) and a skip (from ``tab``) of the same item, sent at the same moment."""
    start, replies = threading.Barrier(2), {}

    def skip() -> None:
        start.wait()
        replies["skip"] = tab.post("/api/skip", json={"item_id": body["item_id"]})

    thread = threading.Thread(target=skip)
    thread.start()
    start.wait()
    replies["submit"] = client.post("/api/annotations", json=body)
    thread.join()
    return replies["submit"], replies["skip"]


def annotate(
    base_url: str, name: str, token: str, run: Run, max_requests: int = 100_000, race_share: float = 0.0
) -> None:
    """One simulated annotator: claim, label (or, for ``race_share`` of the items, submit and skip at the
    same moment), repeat until the queue is empty or the server is gone."""
    rng = random.Random(name)
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=60) as client,
        httpx.Client(base_url=base_url, headers=headers, timeout=60) as tab,
    ):
        for _ in range(max_requests):
            try:
                start = time.perf_counter()
                reply = client.post("/api/next")
                claimed = time.perf_counter()
                if reply.status_code == 204:
                    return
                reply.raise_for_status()
                item_id = reply.json()["item_id"]
                label = rng.choice(LABELS)
                body = {"item_id": item_id, "label": label, "strength": None}
                if label in ("a_better", "b_better"):
                    body["strength"] = rng.choice(STRENGTHS)
                sent = time.perf_counter()
                skipped = None
                if rng.random() < race_share:
                    reply, skipped = _race(client, tab, body)
                    outcome = (reply.status_code, skipped.status_code)
                    if outcome not in ((200, 409), (409, 200)):
                        with run.lock:
                            run.both_accepted += outcome == (200, 200)
                            run.errors.append(f"{name}: submit/skip race ended {outcome}")
                        return
                    if skipped.status_code == 200:
                        with run.lock:
                            run.skipped.add((item_id, name))
                        continue
                else:
                    reply = client.post("/api/annotations", json=body)
                done = time.perf_counter()
                reply.raise_for_status()
            except httpx.TransportError as err:  # the server is gone (the crash test kills it)
                with run.lock:
                    run.errors.append(f"{name}: {type(err).__name__}")
                return
            except httpx.HTTPStatusError as err:
                with run.lock:
                    run.errors.append(f"{name}: HTTP {err.response.status_code} {err.response.text[:200]}")
                return
            with run.lock:
                key = (item_id, name)
                if reply.json()["created"] and key in run.acked:
                    run.duplicates_acked += 1
                run.acked.add(key)
                run.claim_latency.append(claimed - start)
                run.submit_latency.append(done - sent)


def run_annotators(
    base_url: str, tokens: dict[str, str], run: Run | None = None, race_share: float = 0.0
) -> Run:
    """Run every annotator on its own thread until all are done."""
    run = run or Run()
    threads = [
        threading.Thread(target=annotate, args=(base_url, n, t, run), kwargs={"race_share": race_share})
        for n, t in tokens.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return run


def check(db_url: str, run: Run, overlap: int) -> dict:
    """Compare the acknowledged labels and skips with the database: lost, duplicated, labelled and skipped
    by the same annotator, over-assigned (an ordinary item labelled by more than ``overlap`` annotators;
    a mixed-in control goes to every annotator, once each, which "duplicated" checks); and how many
    labels are on control and on evaluation items."""
    store = Store.open(db_url)
    try:
        project = store.project("load")
        items = store.items("load")
        controls = {i.id for i in items if i.original is not None and i.original.kind == "control"}
        evaluations = {i.id for i in items if i.meta and "evaluation" in i.meta}
        mixed = controls if project.control_rate > 0 else set()
        stored = [(a.item_id, a.annotator) for a in store.annotations("load")]
        skips = {(s.item_id, s.annotator) for s in store.skips("load")}
        per_item: dict[int, int] = {}
        for item_id, _ in stored:
            if item_id not in mixed:
                per_item[item_id] = per_item.get(item_id, 0) + 1
        return {
            "control_labels": sum(1 for item_id, _ in stored if item_id in controls),
            "evaluation_labels": sum(1 for item_id, _ in stored if item_id in evaluations),
            "stored": len(stored),
            "acknowledged": len(run.acked),
            "lost": len(run.acked - set(stored)) + len(run.skipped - skips),
            "duplicated": len(stored) - len(set(stored)) + run.duplicates_acked,
            "skips": len(skips),
            "labelled_and_skipped": len(set(stored) & skips) + run.both_accepted,
            "over_assigned_items": sum(1 for n in per_item.values() if n > overlap),
        }
    finally:
        store.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`, in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def benchmark(
    db_url: str,
    annotators: int = 20,
    labels: int = 2000,
    overlap: int = 1,
    race_share: float = 0.0,
    controls: int = 0,
    control_rate: float = 0.0,
    evaluation: int = 0,
) -> dict:
    """Set up, serve, label everything, check; returns the report (see the module docstring)."""
    tokens = setup(db_url, annotators, labels, overlap, controls, control_rate, evaluation)
    port = free_port()
    server = start_server(db_url, port)
    try:
        start = time.perf_counter()
        run = run_annotators(f"http://{HOST}:{port}", tokens, race_share=race_share)
        seconds = time.perf_counter() - start
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    report = check(db_url, run, overlap)
    report.update(
        annotators=annotators,
        overlap=overlap,
        race_share=race_share,
        controls=controls,
        control_rate=control_rate,
        evaluation_items=evaluation,
        seconds=round(seconds, 2),
        labels_per_second=round(len(run.acked) / seconds, 1),
        submit_p50_ms=round(percentile(run.submit_latency, 50), 2),
        submit_p99_ms=round(percentile(run.submit_latency, 99), 2),
        claim_p50_ms=round(percentile(run.claim_latency, 50), 2),
        claim_p99_ms=round(percentile(run.claim_latency, 99), 2),
        errors=run.errors[:5],
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--labels", type=int, default=2000)
    parser.add_argument("--overlap", type=int, default=1)
    parser.add_argument(
        "--race-share", type=float, default=0.0, help="share of items submitted and skipped at once"
    )
    parser.add_argument(
        "--controls", type=int, default=0, help="control items mixed in (with --control-rate)"
    )
    parser.add_argument(
        "--control-rate", type=float, default=0.0, help="share of each queue that is controls"
    )
    parser.add_argument("--evaluation", type=int, default=0, help="how many items are blind-evaluation items")
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db or f"sqlite:///{Path(tmp) / 'load.db'}"
        report = benchmark(
            db_url,
            args.annotators,
            args.labels,
            args.overlap,
            args.race_share,
            args.controls,
            args.control_rate,
            args.evaluation,
        )
    print(json.dumps(report, indent=2))
    bad = (
        report["lost"] + report["duplicated"] + report["over_assigned_items"] + report["labelled_and_skipped"]
    )
    ok = bad == 0 and not report["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
