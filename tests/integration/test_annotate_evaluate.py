"""``rlhfkit annotate evaluate`` through the CLI on tiny random models (CPU): the baseline's and each
policy's response to the same held-out prompts, scored by two judges, loaded as evaluation items with the
agreed meta; a second run adds nothing; labels then show in ``annotate stats``. The README walkthrough's
stand-in annotators (benchmarks/stand_in_annotators.py) label such items through the API."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import yaml

from rlhfkit.cli import main
from rlhfkit.data import load_prompts
from rlhfkit.data.split import DataConfig, load_split
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.store import Store

STAND_INS = Path(__file__).resolve().parents[2] / "benchmarks" / "stand_in_annotators.py"
_spec = importlib.util.spec_from_file_location("stand_in_annotators", STAND_INS)
stand_ins = sys.modules.setdefault("stand_in_annotators", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(stand_ins)


def test_evaluate_loads_blind_items_with_judge_scores(
    tmp_path, capsys, tiny_policy_dir, tiny_reward_dir, toy_hh_file
):
    models = {}
    for name, source in (("sft", tiny_policy_dir), ("ppo", tiny_policy_dir), ("dpo", tiny_policy_dir)):
        models[name] = tmp_path / "run" / name  # ppo and dpo: copies of sft, the same weights
        shutil.copytree(source, models[name])
    for name in ("reward", "judge"):
        models[name] = tmp_path / "run" / name
        shutil.copytree(tiny_reward_dir, models[name])
    data = {"path": str(toy_hh_file), "format": "hh", "eval_fraction": 0.25, "split_seed": 0}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"name": "toy", "data": data}))
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    assert main(["annotate", "init", "--db", db]) == 0
    assert main(["annotate", "create-project", "ev", "--db", db, "--overlap", "2"]) == 0
    evaluate = ["annotate", "evaluate", "--db", db, "--project", "ev", "--baseline", str(models["sft"])]
    evaluate += ["--policies", f"{models['ppo']},{models['dpo']}", "--prompts", str(config), "--limit", "5"]
    evaluate += ["--judges", f"{models['reward']},{models['judge']}", "sampling.max_new_tokens=6"]
    evaluate += ["batch_size=2"]  # three batches for five prompts
    capsys.readouterr()
    assert main(evaluate) == 0
    out = capsys.readouterr().out
    assert "10 evaluation items (5 prompts x 2 policies against" in out and "10 added to 'ev'" in out

    store = Store.open(db)
    items = store.items("ev")
    assert len(items) == 10
    _, held_out = load_split(DataConfig(**data), load_prompts)
    prompts = [p.prompt for p in held_out[:5]]
    assert [i.prompt for i in items] == [p for p in prompts for _ in range(2)]  # prompt, then policy order
    assert [i.meta for i in items[:2]] == [
        {"evaluation": {"baseline": "sft", "policy": "ppo"}},
        {"evaluation": {"baseline": "sft", "policy": "dpo"}},
    ]
    for item in items:
        base, mine = item.responses
        policy = item.meta["evaluation"]["policy"]
        assert set(base.meta) == set(mine.meta) == {"policy", "path", "sampling", "scores", "has_eos"}
        assert (base.meta["policy"], base.meta["path"]) == ("sft", str(models["sft"]))
        assert (mine.meta["policy"], mine.meta["path"]) == (policy, str(models[policy]))
        for response in (base, mine):
            sampling = response.meta["sampling"]
            assert sampling["max_new_tokens"] == 6 and sampling["seed"] == 0
            assert sampling["temperature"] == 0.7 and sampling["use_chat_template"] is True
            assert set(response.meta["scores"]) == {"reward", "judge"}
            assert all(isinstance(s, float) for s in response.meta["scores"].values())
        # the same weights, the same prompts, settings and seed: the same response, and the same scores
        assert mine.text == base.text and mine.meta["scores"] == base.meta["scores"]
    assert items[0].responses[0] == items[1].responses[0]  # one baseline response per prompt, shared

    assert main(evaluate) == 0  # the same command again adds nothing
    assert "0 added to 'ev', 10 already there" in capsys.readouterr().out

    tokens = {}
    for name in ("ann", "bob"):
        tokens[name] = store.authenticate(store.add_annotator("ev", name)).id
    for n, who in enumerate(tokens.values()):
        while (task := store.queue.next_task(who)) is not None:
            label = Judgement("a_better", "clear") if n == 0 else Judgement("tie")
            store.queue.submit(who, task.item_id, label)
    store.close()
    assert main(["annotate", "stats", "--db", db, "--project", "ev", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["evaluation"]["comparisons"]
    assert [(r["policy"], r["labels"], r["ties"]) for r in rows] == [("ppo", 10, 5), ("dpo", 10, 5)]
    for row in rows:
        assert row["judges"]["reward"]["ties"] == 5  # equal responses, equal scores
        assert row["judges"]["reward"]["agreement_with_annotators"]["n"] == 0  # the judge picks no side
        assert row["position_bias"] == {
            "n": 5,
            "successes": 5,
            "rate": 1.0,
            "ci95": row["position_bias"]["ci95"],
        }
    assert main(["annotate", "stats", "--db", db, "--project", "ev"]) == 0
    assert "blind evaluation, ppo vs sft: 5 items, 5 labelled, 10 labels" in capsys.readouterr().out


def test_evaluate_reads_a_prompts_file_and_reports_errors(
    tmp_path, capsys, tiny_policy_dir, tiny_reward_dir, toy_preferences
):
    sft, ppo = tmp_path / "sft", tmp_path / "ppo"
    shutil.copytree(tiny_policy_dir, sft)
    shutil.copytree(tiny_policy_dir, ppo)
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    assert main(["annotate", "init", "--db", db]) == 0
    evaluate = ["annotate", "evaluate", "--db", db, "--baseline", str(sft), "--policies", str(ppo)]
    evaluate += ["--prompts", str(toy_preferences), "--limit", "3", "sampling.max_new_tokens=4"]
    assert main([*evaluate, "--project", "missing"]) == 2  # before any model is loaded
    assert "no project named 'missing'" in capsys.readouterr().err
    assert main(["annotate", "create-project", "ev", "--db", db, "--overlap", "2"]) == 0
    assert main([*evaluate, "--project", "ev", "sampling.nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err
    assert main([*evaluate[:5], str(tmp_path / "x" / "sft"), *evaluate[6:], "--project", "ev"]) == 2
    assert "cannot find model" in capsys.readouterr().err
    assert main([*evaluate, "--project", "ev"]) == 0
    assert "3 evaluation items (3 prompts x 1 policy" in capsys.readouterr().out
    store = Store.open(db)
    items = store.items("ev")
    assert [i.prompt for i in items] == [json.loads(line)["prompt"] for line in toy_preferences.open()][:3]
    assert all(i.responses[0].meta["scores"] == {} for i in items)  # no judges given
    store.close()

    # the README walkthrough's stand-in annotators label every item through the API
    stand_in = ["--db", db, "--project", "ev", "--reward", str(tiny_reward_dir), "--annotators", "2"]
    assert stand_ins.main(stand_in) == 0
    assert "stand-in-2 (a stand-in following" in capsys.readouterr().out
    store = Store.open(db)
    annotations = store.annotations("ev")
    assert sorted(a.annotator for a in annotations) == ["stand-in-1"] * 3 + ["stand-in-2"] * 3
    assert {a.label for a in annotations} <= {"a_better", "b_better"} and all(a.strength for a in annotations)
    store.close()
