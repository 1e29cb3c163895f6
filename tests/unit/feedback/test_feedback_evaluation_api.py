"""Blind evaluation through the HTTP API: what an annotator receives for an evaluation item names no
policy, model path, sampling setting or judge score, and the left-to-right order is drawn per
assignment (both orders occur) and recorded with the label."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from rlhfkit.data.items import ItemRecord, ResponseRecord
from rlhfkit.feedback.api import create_app
from rlhfkit.feedback.evaluation import evaluation_stats

BASELINE, POLICY = "sft-baseline-name", "ppo-secret-policy"
SECRETS = (BASELINE, POLICY, "runs/hidden-path", "0.123456", "9.87654", "temperature", "scores", "evaluation")


def evaluation_item(n: int) -> ItemRecord:
    def response(name: str, score: float) -> ResponseRecord:
        meta = {
            "policy": name,
            "path": f"runs/hidden-path/{name}",
            "sampling": {"temperature": 0.7, "max_new_tokens": 64, "seed": 0},
            "scores": {"reward": score, "judge": -score},
        }
        return ResponseRecord(f"answer {n} from one of them ({len(name)})", meta)

    return ItemRecord(
        f"question {n}?",
        (response(BASELINE, 0.123456), response(POLICY, 9.87654)),
        f"eval:{n}",
        {"evaluation": {"baseline": BASELINE, "policy": POLICY}},
    )


def test_the_task_json_of_an_evaluation_item_names_no_policy_and_the_order_is_drawn(sqlite_store):
    store = sqlite_store
    store.create_project("blind", "Which answer is more helpful?", overlap=1)
    store.load_items("blind", [evaluation_item(n) for n in range(24)])
    store.queue._rng = random.Random(0)  # a fixed draw: the test cannot flake
    headers = {"Authorization": f"Bearer {store.add_annotator('blind', 'alice')}"}
    client = TestClient(create_app(store))
    shown = {}
    while (reply := client.post("/api/next", headers=headers)).status_code == 200:
        task = reply.json()
        for secret in SECRETS:
            assert secret not in reply.text, secret
        assert set(task) == {"item_id", "turns", "document", "responses", "progress"} | (
            {"question"} if "question" in task else set()
        )
        assert all(set(r) == {"letter", "text"} for r in task["responses"])
        shown[task["item_id"]] = [r["text"] for r in task["responses"]]
        body = {"item_id": task["item_id"], "label": "a_better", "strength": "clear"}
        assert client.post("/api/annotations", json=body, headers=headers).status_code == 200
    assert reply.status_code == 204 and len(shown) == 24
    for path in ("/api/me", "/api/my/annotations"):
        reply = client.get(path, headers=headers)
        assert reply.status_code == 200 and not [s for s in SECRETS if s in reply.text]

    items = {item.id: item for item in store.items("blind")}
    policy_left = 0
    for a in store.annotations("blind"):
        texts = [items[a.item_id].responses[p].text for p in a.display_order]
        assert texts == shown[a.item_id]  # the recorded order is the one the annotator saw
        policy_left += a.display_order[0] == 1  # the policy's response is stored at position 1
    assert 0 < policy_left < 24  # drawn per assignment: both orders occur
    # every label picked the left response: the policy won exactly where it was shown left
    (row,) = evaluation_stats(items.values(), store.annotations("blind"))["comparisons"]
    assert (row["policy_wins"], row["baseline_wins"]) == (policy_left, 24 - policy_left)
    assert row["position_bias"]["successes"] == row["position_bias"]["n"] == 24
