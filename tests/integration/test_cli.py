"""The CLI: bad input of every kind gets its named error, and the pipeline runs and resumes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlhfkit.cli import main

DEMO = Path(__file__).resolve().parents[2] / "configs" / "hh-demo.yaml"


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = json.dumps({"prompt": "Q?", "chosen": "yes", "rejected": "no"})


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([GOOD, "{not json"], r"pairs.jsonl:2: malformed JSON"),
        ([GOOD, json.dumps({"prompt": "Q?", "chosen": "yes"})], r"pairs.jsonl:2: field 'rejected': missing"),
        (
            [json.dumps({"prompt": "Q?", "chosen": "  ", "rejected": "no"})],
            r"pairs.jsonl:1: field 'chosen': empty",
        ),
        (
            [
                json.dumps(
                    {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"}
                )
            ],
            r"pairs.jsonl:1: field 'rejected': HH prompts differ",
        ),
    ],
)
def test_bad_data_is_rejected_with_file_line_and_field(tmp_path, capsys, lines, expected):
    data = _write(tmp_path / "pairs.jsonl", lines)
    assert main(["reward", f"data.path={data}", f"output_dir={tmp_path / 'rm'}"]) == 2
    err = capsys.readouterr().err
    assert "rlhfkit reward: error:" in err
    assert re.search(expected, err), err
    assert not (tmp_path / "rm").exists()  # nothing was trained or written


def test_skip_invalid_counts_and_reports(tmp_path, capsys, tiny_reward_dir):
    data = _write(tmp_path / "pairs.jsonl", [GOOD, "{not json", GOOD, GOOD])
    code = main(
        [
            "reward",
            f"model={tiny_reward_dir}",
            f"data.path={data}",
            f"output_dir={tmp_path / 'rm'}",
            "max_steps=1",
            "batch_size=2",
            "data.eval_fraction=0.34",
            "--skip-invalid",
        ]
    )
    assert code == 0
    assert "3 records, 1 skipped" in capsys.readouterr().out
    assert (tmp_path / "rm" / "summary.json").exists()


def test_overrides_after_a_flag_are_read(capsys):
    # the override after --skip-invalid reaches the config (its typo is reported), not argparse
    assert main(["sft", "lr=1e-5", "--skip-invalid", "max_step=3"]) == 2
    assert "unknown key 'max_step'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a flag no command takes is still refused
        main(["sft", "lr=1e-5", "--skip-invalid", "--no-such-flag"])
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_unknown_config_key_and_missing_model(tmp_path, capsys, toy_preferences):
    assert main(["sft", "max_step=3"]) == 2
    assert "unknown key 'max_step'; did you mean 'max_steps'" in capsys.readouterr().err
    assert main(["sft", f"model={tmp_path / 'nope'}", f"data.path={toy_preferences}"]) == 2
    err = capsys.readouterr().err
    assert "cannot find model" in err and "built-in names" in err and str(tmp_path / "nope") in err


def test_pipeline_runs_every_stage_then_resumes(
    tmp_path, capsys, tiny_policy_dir, tiny_reward_dir, toy_hh_file
):
    args = [
        "pipeline",
        str(DEMO),
        f"runs_dir={tmp_path}",
        "name=tiny",
        f"policy={tiny_policy_dir}",
        f"reward_backbone={tiny_reward_dir}",
        f"data.path={toy_hh_file}",
        "data.eval_fraction=0.25",
        "sft.max_steps=2",
        "reward.max_steps=2",
        "judge.max_steps=2",
        "ppo.steps=2",
        "ppo.value_warmup_steps=1",
        "ppo.reward_norm_samples=4",
        "ppo.batch_size=4",
        "ppo.mini_batch_size=2",
        "ppo.ppo_epochs=1",
        "ppo.sampling.max_new_tokens=6",
        "eval.num_prompts=4",
        "eval.sampling.max_new_tokens=6",
        "eval.n_boot=100",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rlhfkit pipeline summary" in out and "win rate vs sft" in out
    assert "judge: proxy" in out and "judge: judge" in out  # every policy under both reward models
    assert "Proxy" in out and "Judge" in out  # their held-out accuracies side by side
    for stage in ("sft", "reward", "judge", "ppo", "eval"):
        assert (tmp_path / "tiny" / stage / "summary.json").exists()
    assert main(args) == 0  # a second run finds every stage done and skips it
    assert capsys.readouterr().out.count("done already") == 5


def test_out_of_memory_says_what_to_lower(monkeypatch, capsys):
    from rlhfkit.trainers import sft

    def boom(cfg):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(sft, "train_sft", boom)  # the CLI looks the runner up when the command runs
    assert main(["sft", "max_steps=1"]) == 3
    err = capsys.readouterr().err
    assert "out of memory" in err and "batch_size" in err and "gradient_checkpointing" in err


def test_other_runtime_errors_are_not_disguised_as_out_of_memory(monkeypatch):
    from rlhfkit.trainers import sft

    def boom(cfg):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(sft, "train_sft", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["sft", "max_steps=1"])
