"""Pair selection strategies and the simulated labeler, on constructed cases whose answer is known.

No models: the strategies take preference probabilities, the labeler takes gold rewards.
"""

from __future__ import annotations

import math
import typing

import pytest
import torch

from rlhfkit.loop.config import Strategy
from rlhfkit.loop.labeler import SimulatedLabeler, simulate_labels
from rlhfkit.loop.labels import label_record, preference_pairs
from rlhfkit.loop.selection import (
    STRATEGIES,
    CandidatePair,
    candidate_pairs,
    pair_rewards,
    preference_probs,
    select,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def probs(*diffs_per_member: list[float]) -> torch.Tensor:
    """(M, N) preference probabilities from r_a - r_b per member (r_b = 0)."""
    r_a = torch.tensor(diffs_per_member, dtype=torch.float32)
    return preference_probs(r_a, torch.zeros_like(r_a))


# --- candidate pairs ---------------------------------------------------------------------------------


def test_candidate_pairs_are_every_distinct_nonempty_pair_per_prompt():
    responses = [["x", "y", "z"], ["same", "same", " "]]
    pairs = candidate_pairs(responses)
    # prompt 0: 3 choose 2 = 3 pairs; prompt 1: "same"/"same" is identical, " " is empty -> none
    assert pairs == [CandidatePair(0, 0, 1), CandidatePair(0, 0, 2), CandidatePair(0, 1, 2)]


def test_pair_rewards_gathers_each_pairs_two_responses_for_every_member():
    rewards = torch.tensor(
        [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[0.0, 0.0, 0.0], [7.0, 8.0, 9.0]]]
    )  # (2, 2, 3)
    pairs = [CandidatePair(0, 0, 2), CandidatePair(1, 1, 2)]
    r_a, r_b = pair_rewards(rewards, pairs)
    assert r_a.tolist() == [[1.0, 5.0], [0.0, 8.0]]
    assert r_b.tolist() == [[3.0, 6.0], [0.0, 9.0]]
    # p = sigmoid(r_a - r_b): sigmoid(-2), sigmoid(-1); sigmoid(0), sigmoid(-1)
    expected = [sigmoid(-2), sigmoid(-1), 0.5, sigmoid(-1)]
    assert preference_probs(r_a, r_b).flatten().tolist() == pytest.approx(expected)


# --- strategies --------------------------------------------------------------------------------------


def test_the_config_offers_exactly_the_registered_strategies():
    assert set(typing.get_args(Strategy)) == set(STRATEGIES)


def test_uncertainty_picks_the_pairs_whose_probability_is_nearest_one_half():
    # r_a - r_b = 3, 0.1, -2, -0.5  ->  p = 0.953, 0.525, 0.119, 0.378  ->  |p - 1/2| = .453, .025, .381, .122
    p = probs([3.0, 0.1, -2.0, -0.5])
    chosen = select("uncertainty", p, budget=2)
    assert chosen.indices == [1, 3]
    assert chosen.scores == pytest.approx([-abs(sigmoid(0.1) - 0.5), -abs(sigmoid(-0.5) - 0.5)])


def test_uncertainty_averages_the_members():
    # pair 0: members say 0.88 and 0.12 (mean 0.5: unsure overall); pair 1: both 0.62
    p = probs([2.0, 0.5], [-2.0, 0.5])
    assert select("uncertainty", p, budget=1).indices == [0]


def test_ensemble_picks_the_pair_the_members_disagree_on():
    # pair 0: every member says 1/2 (uncertain, but they agree: std 0)
    # pair 1: members say sigmoid(3), sigmoid(-2), 1/2 (disagree)
    # pair 2: every member says sigmoid(2) (std 0)
    p = probs([0.0, 3.0, 2.0], [0.0, -2.0, 2.0], [0.0, 0.0, 2.0])
    member_p = [sigmoid(3), sigmoid(-2), 0.5]
    mean = sum(member_p) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in member_p) / 3)  # population std over the 3 members
    chosen = select("ensemble", p, budget=1)
    assert chosen.indices == [1]
    assert chosen.scores == pytest.approx([std])
    # uncertainty, on the same numbers, prefers pair 0 (mean p exactly 1/2)
    assert select("uncertainty", p, budget=1).indices == [0]


def test_random_is_seeded_within_budget_and_without_duplicates():
    p = torch.empty(0, 50)  # random needs no reward model
    a = select("random", p, budget=10, seed=3)
    assert a == select("random", p, budget=10, seed=3)
    assert a.indices != select("random", p, budget=10, seed=4).indices
    assert len(a.indices) == 10 == len(set(a.indices)) and all(0 <= i < 50 for i in a.indices)
    everything = select("random", p, budget=80, seed=3)  # a budget above N takes every pair once
    assert sorted(everything.indices) == list(range(50))


def test_random_is_uniform_over_pairs():
    counts = torch.zeros(6)
    for seed in range(3000):
        counts[select("random", torch.empty(0, 6), budget=2, seed=seed).indices] += 1
    # each pair is chosen with probability 2/6: 1000 of 3000 times, binomial std ~26
    assert (counts - 1000).abs().max() < 110


def test_select_refuses_an_unknown_strategy_and_too_few_members():
    with pytest.raises(KeyError, match="known: random, uncertainty, ensemble"):
        select("entropy", probs([0.0]), budget=1)
    with pytest.raises(ValueError, match="M >= 2"):
        select("ensemble", probs([0.0, 1.0]), budget=1)
    with pytest.raises(ValueError, match="M >= 1"):
        select("uncertainty", torch.empty(0, 3), budget=1)


# --- the simulated labeler -------------------------------------------------------------------------


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_argmax_follows_the_gold_model():
    out = simulate_labels(torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 0.0, 0.5]), "argmax", 0.0, gen())
    assert out.labels == ["a", "b", "tie"]
    assert out.flipped.tolist() == [False, False, False]
    assert out.prob_a.tolist() == pytest.approx([sigmoid(1), sigmoid(-1), 0.5])


def test_noise_one_flips_every_preference():
    out = simulate_labels(torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 0.0, 0.5]), "argmax", 1.0, gen())
    assert out.labels == ["b", "a", "tie"]  # a tie has nothing to flip
    assert out.flipped.tolist() == [True, True, False]


def test_bradley_terry_rate_matches_the_sigmoid_of_the_gold_margin():
    n = 20000
    margin = torch.cat([torch.full((n,), 1.0), torch.full((n,), -0.5)])  # g_a - g_b
    out = simulate_labels(margin, torch.zeros(2 * n), "bt", 0.0, gen(1))
    a_wins = torch.tensor([label == "a" for label in out.labels], dtype=torch.float64)
    # binomial std sqrt(p (1 - p) / n) ~ 0.0033: 4 std is 0.013
    assert a_wins[:n].mean().item() == pytest.approx(sigmoid(1.0), abs=0.013)  # 0.731
    assert a_wins[n:].mean().item() == pytest.approx(sigmoid(-0.5), abs=0.013)  # 0.378


def test_noise_flips_that_share_of_labels_and_says_which():
    n = 20000
    out = simulate_labels(torch.ones(n), torch.zeros(n), "argmax", 0.2, gen(2))
    flipped = out.flipped.double().mean().item()
    assert flipped == pytest.approx(0.2, abs=0.012)  # binomial std 0.0028
    assert [label == "b" for label in out.labels] == out.flipped.tolist()  # argmax says a: b iff flipped


def test_the_labeler_is_deterministic_given_a_seed():
    g_a, g_b = torch.randn(100, generator=gen(5)), torch.randn(100, generator=gen(6))
    first = simulate_labels(g_a, g_b, "bt", 0.1, gen(7))
    assert first.labels == simulate_labels(g_a, g_b, "bt", 0.1, gen(7)).labels
    assert first.labels != simulate_labels(g_a, g_b, "bt", 0.1, gen(8)).labels


def test_simulated_labeler_writes_records_seeded_by_seed_and_round():
    gold_of = {"good": 2.0, "bad": -2.0, "meh": 0.0}

    def gold(prompts, responses):  # stands in for a RewardScorer: (N,) rewards
        return torch.tensor([gold_of[r] for r in responses])

    pairs = [
        {"prompt": "q", "response_a": a, "response_b": b} for a, b in [("good", "bad"), ("meh", "good")] * 20
    ]
    labeler = SimulatedLabeler(gold, "bt", 0.0, seed=0)
    records = labeler.label(3, pairs)
    assert records == labeler.label(3, pairs)  # same seed and round: same labels
    assert [r["label"] for r in records] != [r["label"] for r in labeler.label(4, pairs)]
    first = records[0]
    assert set(first) == {
        "round",
        "prompt",
        "response_a",
        "response_b",
        "label",
        "annotator",
        "gold_prob_a",
        "flipped",
    }
    assert first["round"] == 3 and first["annotator"] == "simulated" and first["flipped"] is False
    assert first["gold_prob_a"] == pytest.approx(sigmoid(4.0), abs=1e-6)
    argmax = SimulatedLabeler(gold, "argmax", 0.0, seed=0).label(1, pairs[:2])
    assert [r["label"] for r in argmax] == ["a", "b"]


def test_preference_pairs_turn_a_and_b_into_chosen_and_rejected_and_leave_out_ties():
    pair = {"prompt": "q", "response_a": "A", "response_b": "B"}
    labels = [label_record(1, pair, label, "x") for label in ("a", "b", "tie", "both_bad")]
    pairs = preference_pairs(labels)
    assert [(p.chosen, p.rejected) for p in pairs] == [("A", "B"), ("B", "A")]
    with pytest.raises(ValueError, match="label must be one of"):
        label_record(1, pair, "A", "x")
