"""`rlhfkit loop` end to end on tiny random models (CPU, seconds): two rounds with the simulated labeler,
then resuming after a late stage's output is deleted."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from rlhfkit.cli import main
from rlhfkit.config import load_config
from rlhfkit.loop import run as loop_run
from rlhfkit.loop.layout import RunLayout, read_jsonl
from rlhfkit.loop.run import LoopConfig, run_loop
from rlhfkit.loop.stages import POLICY_TRAINERS

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "loop_selection.py"
_spec = importlib.util.spec_from_file_location("loop_selection", BENCHMARK)
bench = sys.modules.setdefault("loop_selection", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bench)

RECORD_KEYS = {
    "round",
    "labels_total",
    "labels_round",
    "strategy",
    "method",
    "reward_heldout_accuracy",
    "proxy_score",
    "gold_score",
    "kl",
    "win_rate",
    "win_rate_low",
    "win_rate_high",
    "wall_seconds",
}


def tiny_loop(tmp_path, policy, backbone, gold, data_path, **overrides) -> LoopConfig:
    """Two rounds of 3 prompts x 3 samples (9 candidate pairs), 4 labels each, 1 PPO step, 4 eval prompts."""
    base = {
        "name": "tiny",
        "runs_dir": str(tmp_path / "runs"),
        "policy": str(policy),
        "reward_backbone": str(backbone),
        "data": {"path": str(data_path), "eval_fraction": 0.25},
        "rounds": 2,
        "strategy": "ensemble",
        "ensemble_size": 2,
        "labels_per_round": 4,
        "candidates": {"prompts_per_round": 3, "k": 3, "sampling": {"max_new_tokens": 8, "temperature": 1.0}},
        "simulated": {"gold_reward_model": str(gold), "max_length": 64, "heldout_pairs": 8},
        "reward": {"max_steps": 2, "batch_size": 4, "max_length": 64, "lr": 1e-3, "threads": 2},
        "ppo": {
            "steps": 1,
            "batch_size": 2,
            "mini_batch_size": 2,
            "ppo_epochs": 1,
            "sampling": {"max_new_tokens": 8},
        },
        "dpo": {"max_steps": 1, "batch_size": 2, "max_length": 64, "max_prompt_length": 32, "eval_pairs": 2},
        "eval": {"num_prompts": 4, "sampling": {"max_new_tokens": 8}, "batch_size": 4, "n_boot": 50},
    }
    base.update(overrides)
    return load_config(LoopConfig, base=base)


@pytest.fixture(scope="module")
def finished_loop(tmp_path_factory, tiny_policy_dir, tiny_reward_dir, tiny_bert_reward_dir, toy_preferences):
    tmp_path = tmp_path_factory.mktemp("loop")
    cfg = tiny_loop(tmp_path, tiny_policy_dir, tiny_reward_dir, tiny_bert_reward_dir, toy_preferences)
    return cfg, run_loop(cfg)


def test_two_rounds_write_one_record_each_with_growing_labels(finished_loop):
    cfg, records = finished_loop
    layout = RunLayout(Path(cfg.runs_dir) / "tiny")
    assert records == read_jsonl(layout.records)
    assert [r["round"] for r in records] == [1, 2]
    assert all(set(r) == RECORD_KEYS for r in records)
    assert [r["labels_total"] for r in records] == [4, 8] and [r["labels_round"] for r in records] == [4, 4]
    for r in records:
        assert r["strategy"] == "ensemble" and r["method"] == "ppo"
        assert 0.0 <= r["reward_heldout_accuracy"] <= 1.0 and isinstance(r["gold_score"], float)
        assert 0.0 <= r["win_rate_low"] <= r["win_rate"] <= r["win_rate_high"] <= 1.0
        assert r["wall_seconds"] > 0
    assert layout.config.exists() and len(read_jsonl(layout.heldout)) == 8

    one, two = layout.round(1), layout.round(2)
    candidates = read_jsonl(one.candidates)
    assert len(candidates) == 3 and all(len(c["responses"]) == 3 for c in candidates)
    prompts_1 = {c["prompt"] for c in candidates}
    assert prompts_1.isdisjoint(c["prompt"] for c in read_jsonl(two.candidates))  # a fresh slice each round
    # round 1 has no reward model yet, so it selects at random; round 2 uses round 1's 2-member ensemble
    assert {s["strategy"] for s in read_jsonl(one.selected)} == {"random"}
    selected_2 = read_jsonl(two.selected)
    assert {s["strategy"] for s in selected_2} == {"ensemble"} and len(selected_2) == 4
    scores = [s["selection_score"] for s in selected_2]
    assert scores == sorted(scores, reverse=True)  # most disagreement first
    labels = read_jsonl(two.labels)
    assert [(x["response_a"], x["response_b"]) for x in labels] == [
        (s["response_a"], s["response_b"]) for s in selected_2
    ]
    assert all(x["annotator"] == "simulated" and 0 < x["gold_prob_a"] < 1 for x in labels)
    assert len(read_jsonl(two.pairs)) == 8  # the reward model of round 2 trains on both rounds' labels
    for folder in (two.reward, two.member(1), two.policy, two.eval):
        assert (folder / "summary.json").exists()
    reward_config = (two.reward / "rlhfkit_config.yaml").read_text()
    assert str(two.pairs) in reward_config
    ppo = json.loads((two.policy / "summary.json").read_text())
    assert ppo["stage"] == "ppo"


def counting(monkeypatch, calls: dict, target, name: str) -> None:
    """Count the calls of ``target.name`` (a module attribute or a dict entry) and pass them through."""
    is_dict = isinstance(target, dict)
    real = target[name] if is_dict else getattr(target, name)

    def wrapper(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return real(*args, **kwargs)

    (monkeypatch.setitem if is_dict else monkeypatch.setattr)(target, name, wrapper)


def test_rerunning_resumes_without_redoing_finished_stages(finished_loop, monkeypatch, capsys):
    cfg, records = finished_loop
    layout = RunLayout(Path(cfg.runs_dir) / "tiny")
    calls: dict[str, int] = {}
    for name in ("sample_candidates", "member_probs", "train_reward", "evaluate"):
        counting(monkeypatch, calls, loop_run, name)
    counting(monkeypatch, calls, POLICY_TRAINERS, "ppo")
    round_1 = {p: p.stat().st_mtime_ns for p in layout.round(1).dir.rglob("*") if p.is_file()}

    # everything is done: the same command (through the CLI, from the run's saved config) does nothing
    assert main(["loop", str(layout.config)]) == 0
    assert calls == {} and read_jsonl(layout.records) == records
    assert "round 2 policy: done already" in capsys.readouterr().out

    # a deleted late stage is redone, with what depends on it (eval, the record), and nothing else
    policy = layout.round(2).policy
    shutil.rmtree(policy)
    assert main(["loop", str(layout.config)]) == 0
    assert calls == {"ppo": 1, "evaluate": 1}
    assert (policy / "summary.json").exists()
    after = read_jsonl(layout.records)
    assert [r["round"] for r in after] == [1, 2] and after[0] == records[0]
    assert {p: p.stat().st_mtime_ns for p in round_1} == round_1  # round 1 untouched


def test_dpo_with_uncertainty_and_argmax_labels(tmp_path, tiny_policy_dir, tiny_reward_dir, toy_preferences):
    # one round; the gold model is the (random) reward backbone itself, labelling by argmax
    cfg = tiny_loop(
        tmp_path,
        tiny_policy_dir,
        tiny_reward_dir,
        tiny_reward_dir,
        toy_preferences,
        rounds=1,
        method="dpo",
        strategy="uncertainty",
        initial_reward_model=str(tiny_reward_dir),
        simulated={"gold_reward_model": str(tiny_reward_dir), "mode": "argmax", "heldout_pairs": 4},
    )
    (record,) = run_loop(cfg)
    paths = RunLayout(tmp_path / "runs" / "tiny").round(1)
    assert record["method"] == "dpo" and record["labels_total"] == 4
    # the initial reward model selects round 1 by uncertainty: the 4 pairs with p nearest 1/2
    assert {s["strategy"] for s in read_jsonl(paths.selected)} == {"uncertainty"}
    # with the gold model = the selector, argmax labels follow p: a when p > 1/2
    for label in read_jsonl(paths.labels):
        assert label["label"] == ("a" if label["gold_prob_a"] > 0.5 else "b")
    assert json.loads((paths.policy / "summary.json").read_text())["stage"] == "dpo"


def test_the_selection_benchmark_runs_on_tiny_models(tmp_path, tiny_reward_dir, toy_hh_file):
    tiny = [
        "--tiny",
        "--data",
        str(toy_hh_file),
        "--out-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "r.json"),
    ]
    models = ["--backbone", str(tiny_reward_dir), "--gold-backbone", str(tiny_reward_dir)]
    result = bench.main([*tiny, *models])
    assert result["labels"] == [4, 8]  # warm start, then one round of 4
    assert set(result["summary"]) == {"random", "uncertainty", "ensemble"}
    for row in result["summary"].values():
        assert len(row["mean"]) == 2 and all(0.0 <= m <= 1.0 for m in row["mean"])
        assert row["std"] == [0.0, 0.0]  # one seed
    # every strategy starts from the same warm-start model
    assert len({row["mean"][0] for row in result["summary"].values()}) == 1
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == result["summary"]
    assert (tmp_path / "gold" / "summary.json").exists()  # cached for the next run
    assert list((tmp_path / "work").iterdir()) == []  # the proxy models are deleted once used


def test_self_play_gold_loop_on_a_support_table_finishes_and_writes_its_report(
    tmp_path, tiny_policy_dir, tiny_reward_dir
):
    """Two DPO rounds on a CSV table of messages and human answers, labelled by a gold model trained on
    self-play pairs (the human answer chosen over the policy's own); the report page is written."""
    table = tmp_path / "support.csv"
    rows = [f'"question {i}, please?",intent_{i % 3},"good answer {i} yes"' for i in range(40)]
    table.write_text("instruction,intent,response\n" + "\n".join(rows) + "\n", encoding="utf-8")
    data = {"path": str(table), "fields": {"prompt": "instruction", "response": "response"}}
    self_play = {"train_records": 6, "heldout_records": 4, "backbone": str(tiny_reward_dir), "batch_size": 4}
    self_play["sampling"] = {"max_new_tokens": 8}
    simulated = {"max_length": 64, "heldout_pairs": 4, "self_play": self_play}
    cfg = tiny_loop(
        tmp_path,
        tiny_policy_dir,
        tiny_reward_dir,
        "unused",
        table,
        data={**data, "eval_fraction": 0.25},
        simulated=simulated,
        method="dpo",
        strategy="random",
    )
    records = run_loop(cfg)
    layout = RunLayout(Path(cfg.runs_dir) / "tiny")
    assert [r["round"] for r in records] == [1, 2] and all(set(r) == RECORD_KEYS for r in records)
    pairs = read_jsonl(layout.gold.pairs)
    assert len(pairs) == 6 and all(p["chosen"].startswith("good answer") for p in pairs)
    assert all(not p["rejected"].startswith("good answer") for p in pairs)  # the tiny policy's own sample
    used = {json.dumps(c["prompt"]) for i in (1, 2) for c in read_jsonl(layout.round(i).candidates)}
    assert used.isdisjoint(json.dumps(p["prompt"]) for p in pairs)  # the gold never trains on a round's
    assert pairs[0]["prompt"] == [{"role": "user", "content": pairs[0]["prompt"][0]["content"]}]
    accuracy = json.loads(layout.gold_accuracy.read_text())
    assert accuracy["heldout_pairs"] == 4 and 0.0 <= accuracy["accuracy"] <= 1.0
    assert len(read_jsonl(layout.heldout)) == 4  # the held-out self-play pairs, oriented by the gold model
    summary = json.loads((layout.round(2).eval / "summary.json").read_text())
    assert set(summary["policies"]["policy"]["judges"]) == {"reward", "gold"}  # the gold judges eval too
    assert main(["report", str(layout.root)]) == 0
    assert "round" in (layout.root / "report.html").read_text(encoding="utf-8")
