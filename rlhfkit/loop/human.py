"""The human labeler: a round's selected pairs go to the feedback app as a batch of items, and the loop
polls the database until every item has its labels.

A batch is the items of one round: item ids ``loop:<run>:round-NN:<hash of prompt and both responses>``
(so sending the same batch again adds nothing, and a resumed loop finds the labels already given), the
two responses at positions 0 (a) and 1 (b). An item is labelled once it has as many annotations as the
project's overlap. Each annotation becomes one label record (``annotator`` is the person's name); see
``rlhfkit.loop.labels`` for the record and for how several votes on one pair are trained on.

This module, like the app, does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.judgements import pair_outcomes
from rlhfkit.feedback.store import NotFound, Store
from rlhfkit.feedback.views import ProjectInfo
from rlhfkit.loop.labels import label_record

if TYPE_CHECKING:
    from rlhfkit.loop.config import HumanConfig

# pair_outcomes' outcome for positions (0, 1) -> the label of response a against b
OUTCOME_LABEL = {">": "a", "<": "b", "tie": "tie", "both_bad": "both_bad"}


def item_id(run: str, round_no: int, pair: dict[str, Any]) -> str:
    """The feedback item id of a selected pair: stable for the same run, round, prompt and responses."""
    blob = json.dumps([pair["prompt"], pair["response_a"], pair["response_b"]], sort_keys=True)
    return f"loop:{run}:round-{round_no:02d}:{hashlib.sha1(blob.encode('utf-8')).hexdigest()[:16]}"


class HumanLabeler:
    """Sends pairs to the feedback database and waits for people to label them.

    ``say`` prints progress and ``sleep`` waits between polls (both replaceable, for tests).
    """

    def __init__(
        self,
        cfg: HumanConfig,
        run: str,
        say: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.cfg, self.run, self.say, self.sleep = cfg, run, say, sleep
        self.project_name = cfg.project or run

    def label(self, round_no: int, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Label records for ``pairs`` once every one is labelled.

        Raises:
            TimeoutError: ``timeout_seconds`` passed first (the labels given so far stay in the database;
                re-running the loop goes on waiting for the rest).
            rlhfkit.feedback.store.FeedbackError, sqlalchemy.exc.SQLAlchemyError: the database refused.
        """
        store = Store.init(self.cfg.db)
        try:
            project = self._project(store)
            ids = [item_id(self.run, round_no, p) for p in pairs]
            store.load_items(
                project.name, (self._item(round_no, p, i) for p, i in zip(pairs, ids, strict=True))
            )
            self._announce(store, project, round_no, len(set(ids)))
            votes = self._wait(store, project.name, round_no, ids)
        finally:
            store.close()
        return [
            label_record(round_no, pair, OUTCOME_LABEL[outcome], annotator)
            for pair, key in zip(pairs, ids, strict=True)
            for annotator, outcome in votes[key]
        ]

    def _project(self, store: Store) -> ProjectInfo:
        try:
            return store.project(self.project_name)
        except NotFound:
            guidelines = Path(self.cfg.guidelines).read_text(encoding="utf-8") if self.cfg.guidelines else ""
            return store.create_project(self.project_name, guidelines, self.cfg.overlap)

    def _item(self, round_no: int, pair: dict[str, Any], key: str) -> ItemRecord:
        made_by = {"run": self.run, "round": round_no}
        responses = (
            ResponseRecord(pair["response_a"], {**made_by, "side": "a"}),
            ResponseRecord(pair["response_b"], {**made_by, "side": "b"}),
        )
        meta = {"source": "rlhfkit loop", **made_by, "selection_score": pair.get("selection_score")}
        return ItemRecord(pair["prompt"], responses, key, meta)

    def _announce(self, store: Store, project: ProjectInfo, round_no: int, n: int) -> None:
        db = store.engine.url.render_as_string(hide_password=True)
        name = project.name
        people = len([a for a in store.annotators(name) if a[2]])
        self.say(
            f"[rlhfkit] round {round_no}: {n} pairs to label in project {name!r} of {db} "
            f"(items loop:{self.run}:round-{round_no:02d}:*), {project.overlap} label(s) each\n"
            f"[rlhfkit]   serve the labelling page:  rlhfkit annotate serve --db {db}\n"
            f"[rlhfkit]   annotators open their sign-in links ({people} in the project); add one with:  "
            f"rlhfkit annotate add-annotator --db {db} --project {name} NAME\n"
            f"[rlhfkit]   checking every {self.cfg.poll_seconds:g} s; "
            "Ctrl-C stops, and the same command resumes here"
        )

    def _wait(
        self, store: Store, project: str, round_no: int, ids: list[str]
    ) -> dict[str, list[tuple[str, str]]]:
        """Poll until every item of ``ids`` has the project's overlap of annotations; returns each item's
        ``[(annotator, outcome of a vs b), ...]``."""
        wanted = set(ids)
        deadline = None if self.cfg.timeout_seconds is None else time.monotonic() + self.cfg.timeout_seconds
        shown = -1
        while True:
            key_of = {i.id: i.external_id for i in store.items(project) if i.external_id in wanted}
            votes: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for a in store.annotations(project):
                if a.item_id in key_of:
                    votes[key_of[a.item_id]].append(
                        (a.annotator, pair_outcomes(a.label, a.ranking, 2)[(0, 1)])
                    )
            overlap = store.project(project).overlap
            done = sum(len(votes[key]) >= overlap for key in wanted)
            if done != shown:
                self.say(f"[rlhfkit] round {round_no}: {done}/{len(wanted)} pairs labelled")
                shown = done
            if done == len(wanted):
                return votes
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"round {round_no}: {done} of {len(wanted)} pairs labelled in project {project!r} after "
                    f"{self.cfg.timeout_seconds:g} s (human.timeout_seconds); re-run the loop to keep waiting"
                )
            self.sleep(self.cfg.poll_seconds)
