"""Blind-evaluation statistics (rlhfkit.feedback.evaluation) on a constructed project, every number worked
out by hand below: the human win rate with ties and both-bad counted half, tie and both-bad shares,
agreement among annotators, position bias, each judge's win rate on the labelled items and its agreement
with the humans."""

from __future__ import annotations

from datetime import datetime

import pytest

from rlhfkit.data.items import ResponseRecord
from rlhfkit.feedback.agreement import project_stats
from rlhfkit.feedback.evaluation import evaluation_lines, evaluation_stats
from rlhfkit.feedback.views import AnnotationView, ItemView


def eval_item(item_id: int, policy: str, policy_first: bool, scores: dict[str, tuple[float, float]]):
    """An evaluation item ``sft`` vs `policy`; `scores` maps judge -> (baseline score, policy score)."""
    base = ResponseRecord(
        f"sft {item_id}", {"policy": "sft", "path": "runs/sft", "sampling": {}, "scores": {}}
    )
    mine = ResponseRecord(
        f"{policy} {item_id}", {"policy": policy, "path": f"runs/{policy}", "sampling": {}, "scores": {}}
    )
    for judge, (b, p) in scores.items():
        base.meta["scores"][judge], mine.meta["scores"][judge] = b, p
    responses = [mine, base] if policy_first else [base, mine]
    meta = {"evaluation": {"baseline": "sft", "policy": policy}}
    return ItemView(item_id, f"eval:{item_id}", "q?", responses, meta)


def label(item_id: int, who: str, label: str, ranking=None, display_order=(0, 1)) -> AnnotationView:
    strength = "clear" if ranking is not None else None
    return AnnotationView(
        0, item_id, who, label, ranking, list(display_order), strength, "", datetime(2026, 1, 1), None
    )


# Items of ppo vs sft (positions: where the policy's response is stored):
#   1: policy at 1. alice: policy (shown on the LEFT: display order [1, 0]); bob: policy (shown right)
#   2: policy at 0. alice: baseline (position 1, shown right); bob: tie
#   3: policy at 1. alice: both bad
#   4: policy at 1. no label (its judge scores must not count)
# Judge "rm" (baseline, policy): 1: (0.6, 0.5) baseline; 2: (0.3, 0.2) baseline; 3: (0.4, 0.4) tie;
#   4: (0.0, 9.0). Judge "gold" scored item 1 only: (0.0, 1.0) policy.
# dpo vs sft: item 5, policy at 1, one label: policy.
ITEMS = [
    eval_item(1, "ppo", False, {"rm": (0.6, 0.5), "gold": (0.0, 1.0)}),
    eval_item(2, "ppo", True, {"rm": (0.3, 0.2)}),
    eval_item(3, "ppo", False, {"rm": (0.4, 0.4)}),
    eval_item(4, "ppo", False, {"rm": (0.0, 9.0)}),
    eval_item(5, "dpo", False, {}),
    ItemView(6, "plain", "q?", [ResponseRecord("a"), ResponseRecord("b")], None),  # not an evaluation item
    ItemView(  # says evaluation, but its responses do not name sft and ppo
        7,
        "broken",
        "q?",
        [ResponseRecord("a", {"policy": "x"}), ResponseRecord("b", {"policy": "y"})],
        {"evaluation": {"baseline": "sft", "policy": "ppo"}},
    ),
]
ANNOTATIONS = [
    label(1, "alice", "a_better", ranking=[1, 0], display_order=(1, 0)),
    label(1, "bob", "b_better", ranking=[1, 0], display_order=(0, 1)),
    label(2, "alice", "b_better", ranking=[1, 0], display_order=(0, 1)),
    label(2, "bob", "tie"),
    label(3, "alice", "both_bad"),
    label(5, "alice", "a_better", ranking=[1, 0], display_order=(1, 0)),
    label(6, "alice", "a_better", ranking=[0, 1]),
]


@pytest.fixture(scope="module")
def stats():
    return evaluation_stats(ITEMS, ANNOTATIONS)


def test_human_win_rate_counts_ties_and_both_bad_as_half(stats):
    ppo, dpo = stats["comparisons"]
    assert (ppo["baseline"], ppo["policy"], dpo["policy"]) == ("sft", "ppo", "dpo")
    assert (ppo["items"], ppo["items_labelled"], ppo["labels"]) == (4, 3, 5)
    assert (ppo["policy_wins"], ppo["baseline_wins"], ppo["ties"], ppo["both_bad"]) == (2, 1, 1, 1)
    # (W + (T + X) / 2) / N = (2 + (1 + 1) / 2) / 5 = 3 / 5
    assert ppo["win_rate"] == pytest.approx(0.6)
    assert ppo["tie_share"] == pytest.approx(0.2) and ppo["both_bad_share"] == pytest.approx(0.2)
    # bootstrap over the 3 labelled items (per-item wins 2, 0.5, 0.5 of 2, 2, 1 labels): a resample's
    # ratio lies between item 2 alone (0.25) and item 1 alone (1.0)
    low, high = ppo["ci95"]
    assert 0.25 <= low < 0.6 < high <= 1.0
    assert (dpo["items"], dpo["labels"], dpo["win_rate"], dpo["ci95"]) == (1, 1, 1.0, [1.0, 1.0])


def test_annotator_agreement_on_items_with_two_labels(stats):
    ppo, dpo = stats["comparisons"]
    # item 1: policy, policy (agree); item 2: baseline, tie (disagree) -> pairwise 1 / 2
    # alpha: values policy x2, baseline, tie (n = 4); D_o = (0 + 2 / 1) / 4 = 0.5;
    # D_e = sum_{c != k} n_c n_k / (n (n - 1)) = 2 * (2*1 + 2*1 + 1*1) / 12 = 10 / 12; 1 - 0.5 / (10 / 12)
    assert ppo["agreement"]["items"] == 2
    assert ppo["agreement"]["pairwise"] == pytest.approx(0.5)
    assert ppo["agreement"]["alpha"] == pytest.approx(0.4)
    assert dpo["agreement"] == {"items": 0, "pairwise": None, "alpha": None}


def test_position_bias_is_the_share_of_strict_picks_shown_left(stats):
    ppo, dpo = stats["comparisons"]
    # strict labels: item 1 alice (left), item 1 bob (right), item 2 alice (right) -> 1 of 3;
    # Wilson, z = 1.96: centre (1/3 + z^2/6) / (1 + z^2/3) = 0.4269, half-width
    # z sqrt(1/3 * 2/3 / 3 + z^2/36) / (1 + z^2/3) = 0.3654 -> [0.0615, 0.7923]
    bias = ppo["position_bias"]
    assert (bias["successes"], bias["n"]) == (1, 3) and bias["rate"] == pytest.approx(1 / 3)
    assert bias["ci95"] == pytest.approx((0.0615, 0.7923), abs=1e-3)
    assert (dpo["position_bias"]["successes"], dpo["position_bias"]["n"]) == (1, 1)


def test_each_judge_on_exactly_the_labelled_items_and_its_agreement_with_annotators(stats):
    ppo, dpo = stats["comparisons"]
    rm, gold = ppo["judges"]["rm"], ppo["judges"]["gold"]
    # rm on items 1-3 (not the unlabelled 4): baseline, baseline, tie -> (0 + 0 + 0.5) / 3
    assert (rm["items"], rm["wins"], rm["ties"], rm["losses"]) == (3, 0, 1, 2)
    assert rm["win_rate"] == pytest.approx(0.5 / 3)
    # agreement over strict human labels on items rm scored apart: item 1 (rm: baseline) alice and bob
    # picked the policy: 0 of 2; item 2 (rm: baseline) alice picked the baseline: 1 of 1; bob's tie and
    # item 3 (rm tie) are not counted -> 1 of 3
    agreement = rm["agreement_with_annotators"]
    assert (agreement["successes"], agreement["n"]) == (1, 3) and agreement["rate"] == pytest.approx(1 / 3)
    # gold scored item 1 only: the policy, as both humans -> win rate 1, agreement 2 of 2
    assert (gold["items"], gold["win_rate"], gold["ci95"]) == (1, 1.0, [1.0, 1.0])
    assert (gold["agreement_with_annotators"]["successes"], gold["agreement_with_annotators"]["n"]) == (2, 2)
    assert dpo["judges"] == {}


def test_items_that_do_not_name_their_policies_are_listed_not_dropped(stats):
    assert stats["unreadable_items"] == ["broken"]
    lines = "\n".join(evaluation_lines(stats))
    assert "broken" in lines


def test_annotate_stats_shows_the_evaluation_table(stats):
    full = project_stats(ITEMS, ANNOTATIONS, [], overlap=2)
    assert full["evaluation"] == stats
    text = "\n".join(evaluation_lines(stats))
    assert "blind evaluation, ppo vs sft: 4 items, 3 labelled, 5 labels" in text
    assert "0.600 [" in text and "2/1/1/1" in text  # W/T/X/L of the humans
    assert "0.333 [0.061, 0.792] (n=3)" in text  # rm's agreement with the humans
    assert "pairwise 0.500, Krippendorff's alpha 0.400" in text
    assert evaluation_lines({"comparisons": [], "unreadable_items": []}) == []


def test_malformed_metadata_is_no_score_and_no_crash():
    """Items loaded by hand may carry anything in their meta: a score that is not a finite number (or a
    scores field that is not an object) is no score from that judge; names that are not strings make the
    item unreadable, listed."""
    odd = eval_item(1, "ppo", False, {"rm": (0.1, 0.2)})
    odd.responses[0].meta["scores"]["nan"] = float("nan")
    odd.responses[1].meta["scores"]["nan"] = 0.5
    odd.responses[0].meta["scores"]["text"], odd.responses[1].meta["scores"]["text"] = "high", "low"
    listed = eval_item(2, "ppo", False, {})
    listed.responses[0].meta["scores"] = [1.0]
    unhashable = ItemView(
        3,
        "lists",
        "q?",
        [ResponseRecord("a", {"policy": ["sft"]}), ResponseRecord("b", {"policy": ["ppo"]})],
        {"evaluation": {"baseline": ["sft"], "policy": ["ppo"]}},
    )
    labels = [label(1, "alice", "tie"), label(2, "alice", "tie"), label(3, "alice", "tie")]
    stats = evaluation_stats([odd, listed, unhashable], labels)
    (row,) = stats["comparisons"]
    # "nan" scored one response of item 1 only: listed, with no item; "text" scored none
    assert {j: r["items"] for j, r in row["judges"].items()} == {"nan": 0, "rm": 1}
    assert row["judges"]["nan"]["win_rate"] is None
    assert row["labels"] == 2 and stats["unreadable_items"] == ["lists"]
