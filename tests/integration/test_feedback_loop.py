"""The whole loop through the CLI: generate candidates from a policy, label them, export, train a reward
model on the export with ``rlhfkit reward`` (tiny random models, CPU). Plus the CLI's errors."""

from __future__ import annotations

import json
import random
import re

from rlhfkit.cli import main
from rlhfkit.data import load_preferences
from rlhfkit.feedback.judgements import Judgement
from rlhfkit.feedback.store import Store


def tokens_from(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)\t(\S+)\thttp", output, flags=re.M))


def test_generate_label_export_train(tmp_path, capsys, tiny_policy_dir, tiny_reward_dir, toy_preferences):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    guidelines = tmp_path / "guidelines.md"
    guidelines.write_text("Prefer polite answers.")
    assert main(["annotate", "init", "--db", db]) == 0
    assert "admin token" in capsys.readouterr().out
    assert (
        main(
            [
                "annotate",
                "create-project",
                "demo",
                "--db",
                db,
                "--guidelines",
                str(guidelines),
                "--overlap",
                "2",
            ]
        )
        == 0
    )
    assert main(["annotate", "add-annotator", "--db", db, "--project", "demo", "ann", "bob"]) == 0
    tokens = tokens_from(capsys.readouterr().out)
    assert set(tokens) == {"ann", "bob"}
    items_path = tmp_path / "items.jsonl"
    generate = ["generate", f"policy={tiny_policy_dir}", f"prompts={toy_preferences}", "k=3"]
    generate += ["sampling.max_new_tokens=6", "limit=8", f"output={items_path}"]
    load = ["annotate", "load", "--db", db, "--project", "demo", str(items_path)]
    assert main(generate) == 0
    assert len(items_path.read_text().splitlines()) == 8
    assert main(load) == 0
    assert "8 items added" in capsys.readouterr().out
    assert main(generate) == 0 and main(load) == 0  # the same commands again add nothing
    assert "0 items added to 'demo', 8 already there" in capsys.readouterr().out

    store = Store.open(db)
    items = store.items("demo")
    assert len(items) == 8 and all(len(i.responses) == 3 for i in items)
    meta = items[0].responses[1].meta
    assert meta["model"] == str(tiny_policy_dir) and meta["sample"] == 1 and meta["max_new_tokens"] == 6
    assert meta["temperature"] == 0.8 and isinstance(meta["has_eos"], bool)
    rng = random.Random(0)
    for name in ("ann", "bob"):
        annotator = store.authenticate(tokens[name]).id
        while (task := store.queue.next_task(annotator)) is not None:
            ranking = tuple(rng.sample("ABC", 3))
            store.queue.submit(
                annotator, task.item_id, Judgement("ranking", rng.choice(["slight", "strong"]), ranking)
            )
    store.close()

    assert main(["annotate", "stats", "--db", db, "--project", "demo"]) == 0
    stats = capsys.readouterr().out
    assert "8 items, 8 labelled, 8 complete (overlap 2)" in stats and "Krippendorff" in stats
    labels = tmp_path / "labels.jsonl"
    assert main(["annotate", "export", "--db", db, "--project", "demo", "--output", str(labels)]) == 0
    pairs = list(load_preferences(labels))
    assert 0 < len(pairs) <= 8 * 3  # 3 pairs per item, minus those where the two annotators split
    raw = tmp_path / "raw.jsonl"
    assert (
        main(["annotate", "export", "--db", db, "--project", "demo", "--format", "raw", "--output", str(raw)])
        == 0
    )
    assert len(raw.read_text().splitlines()) == 16
    assert json.loads(raw.read_text().splitlines()[0])["response_meta"][0]["model"] == str(tiny_policy_dir)

    reward = [
        "reward",
        f"model={tiny_reward_dir}",
        f"data.path={labels}",
        f"output_dir={tmp_path / 'rm'}",
        "max_steps=2",
        "batch_size=4",
        "data.eval_fraction=0.25",
    ]
    assert main(reward) == 0
    assert (tmp_path / "rm" / "summary.json").exists()


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["annotate", "stats", "--db", db, "--project", "p"]) == 2
    assert "no database file" in capsys.readouterr().err  # and none is made
    assert not (tmp_path / "f.db").exists()
    assert main(["annotate", "init", "--db", db]) == 0
    assert main(["annotate", "stats", "--db", db, "--project", "p"]) == 2
    assert "no project named 'p'" in capsys.readouterr().err
    assert main(["annotate", "create-project", "p", "--db", db, "--overlap", "0"]) == 2
    assert "overlap" in capsys.readouterr().err
    assert main(["annotate", "create-project", "p", "--db", db]) == 0
    assert main(["annotate", "create-project", "p", "--db", db]) == 2
    assert "exists" in capsys.readouterr().err
    items = tmp_path / "items.jsonl"
    items.write_text('{"prompt": "q", "responses": ["a", "b"]}\n{"prompt": "q", "responses": ["a"]}\n')
    assert main(["annotate", "load", "--db", db, "--project", "p", str(items)]) == 2
    assert "items.jsonl:2: field 'responses'" in capsys.readouterr().err
    assert main(["annotate", "stats", "--db", db, "--project", "p", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 0  # the good first line was not loaded either
    assert main(["annotate", "load", "--db", db, "--project", "p", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["annotate", "init", "--db", "nonsense://"]) == 2
    assert main(["annotate", "init", "--db", db, "--new-admin-token"]) == 0
    assert "admin token" in capsys.readouterr().out


def test_cli_rotates_tokens_and_deactivates_annotators(tmp_path, capsys):
    from rlhfkit.feedback.store import Store

    db = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["annotate", "init", "--db", db]) == 0
    assert main(["annotate", "create-project", "p", "--db", db]) == 0
    assert main(["annotate", "add-annotator", "--db", db, "--project", "p", "ann"]) == 0
    old = capsys.readouterr().out.splitlines()[-1].split("\t")[1]
    assert main(["annotate", "rotate-token", "--db", db, "--project", "p", "ann"]) == 0
    new = capsys.readouterr().out.splitlines()[-1].split("\t")[1]
    store = Store.open(db)
    assert store.authenticate(old) is None and store.authenticate(new).name == "ann"
    assert main(["annotate", "deactivate", "--db", db, "--project", "p", "ann"]) == 0
    assert "deactivated" in capsys.readouterr().out
    assert store.authenticate(new) is None
    assert main(["annotate", "reactivate", "--db", db, "--project", "p", "ann"]) == 0
    assert store.authenticate(new).name == "ann"
    assert main(["annotate", "deactivate", "--db", db, "--project", "p", "nobody"]) == 2
    assert "no annotator named 'nobody'" in capsys.readouterr().err
    store.close()
