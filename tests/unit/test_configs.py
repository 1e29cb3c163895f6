"""Every shipped config loads and validates against the dataclass of the command that runs it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rlhfkit.cli import COMMANDS
from rlhfkit.config import ConfigError, load_config
from rlhfkit.data import load_sft
from rlhfkit.data.split import load_split
from rlhfkit.pipeline import PipelineConfig, stage_configs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
DEMO = ROOT / "configs" / "hh-demo.yaml"
DPO = ROOT / "configs" / "hh-dpo.yaml"

# The `rlhfkit <command>` that runs each shipped config; its config class comes from cli.COMMANDS.
# A new config must be added here, so that no file in configs/ goes unchecked.
COMMAND_OF = {
    "hh-demo.yaml": "pipeline",
    "hh-dpo.yaml": "dpo",
    "hh-grpo.yaml": "grpo",
    "hh-kto.yaml": "kto",
    "hh-loop.yaml": "loop",
    "hh-rloo.yaml": "rloo",
    "support-loop.yaml": "loop",
    "support-sft.yaml": "sft",
    "tldr-demo.yaml": "pipeline",
}


def _load(path: Path, overrides=()):
    return load_config(COMMANDS[COMMAND_OF[path.name]].config(), path, overrides)


def test_configs_exist():
    assert any(p.name == "hh-demo.yaml" for p in CONFIGS)


def test_every_shipped_config_names_its_command():
    unlisted = sorted({p.name for p in CONFIGS} - set(COMMAND_OF))
    assert not unlisted, f"add {unlisted} to COMMAND_OF in {Path(__file__).name}"
    assert set(COMMAND_OF.values()) <= set(COMMANDS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = _load(path)
    assert isinstance(cfg, COMMANDS[COMMAND_OF[path.name]].config())


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if COMMAND_OF.get(p.name) == "pipeline"], ids=lambda p: p.name
)
def test_pipeline_config_wires_its_stages(path):
    cfg = load_config(PipelineConfig, path)
    stages = stage_configs(cfg)
    rl = [stage for stage in ("ppo", "grpo") if stage in cfg.stages]
    assert rl and all(stages[s].policy == stages["sft"].output_dir for s in rl)  # stages are wired
    assert stages["eval"].policies == [stages[s].output_dir for s in rl]
    assert stages["sft"].data == cfg.data  # one shared data split
    # the proxy and the judge train on disjoint halves of its training part; nothing trains on the judge
    assert replace(stages["reward"].data, train_part="all") == cfg.data
    parts = (stages["reward"].data.train_part, stages["judge"].data.train_part)
    assert parts == ("first_half", "second_half")
    judges = [j.path for j in stages["eval"].judges]
    assert judges == [stages["reward"].output_dir, stages["judge"].output_dir]
    if "ppo" in rl:
        assert stages["ppo"].reward_model == stages["reward"].output_dir
    if "grpo" in rl:
        assert [r.path for r in stages["grpo"].rewards] == [stages["reward"].output_dir]


def test_pipeline_grpo_stage_tunes_the_sft_policy_against_the_proxy():
    cfg = load_config(PipelineConfig, DEMO, ["stages=[sft,reward,judge,ppo,grpo,eval]"])
    stages = stage_configs(cfg)
    assert stages["grpo"].policy == stages["grpo"].reference == stages["sft"].output_dir
    assert [(r.kind, r.path) for r in stages["grpo"].rewards] == [("model", stages["reward"].output_dir)]
    assert stages["grpo"].data == cfg.data and stages["grpo"].seed == cfg.seed
    assert stages["eval"].policies == [stages["ppo"].output_dir, stages["grpo"].output_dir]
    only_grpo = stage_configs(load_config(PipelineConfig, DEMO, ["stages=[sft,reward,judge,grpo,eval]"]))
    assert only_grpo["eval"].policies == [only_grpo["grpo"].output_dir]
    assert "grpo" not in load_config(PipelineConfig).stages  # not run unless listed


def test_hh_demo_reads_the_shared_hh_data():
    cfg = load_config(PipelineConfig, DEMO)
    assert cfg.data.path.endswith("shared/data/hh-rlhf/harmless-base-2000.jsonl.gz")
    assert cfg.data.skip_invalid is True


TLDR = ROOT / "configs" / "tldr-demo.yaml"


def test_tldr_demo_reads_the_comparisons_split_by_post_and_never_cuts_a_summary():
    cfg = load_config(PipelineConfig, TLDR)
    assert cfg.data.path.endswith("shared/data/tldr-comparisons/tldr-comparisons.jsonl.gz")
    assert cfg.data.format == "tldr" and cfg.data.sft_target == "preferred"
    stages = stage_configs(cfg)
    # every stage reads the same queries; the reward model's input has room for the longest query
    # (about 4 characters a token) and a summary, so truncation from the left never reaches the summary
    assert len({stages[s].data.max_query_chars for s in ("sft", "reward", "judge", "grpo", "eval")}) == 1
    room = cfg.data.max_query_chars // 3 + 64
    for length in (stages["reward"].max_length, stages["judge"].max_length, stages["grpo"].reward_max_length):
        assert room <= length <= 512  # MiniLM's position limit
    assert stages["eval"].reward_max_length == stages["grpo"].reward_max_length
    assert stages["sft"].max_prompt_length == stages["grpo"].sampling.max_prompt_length
    assert stages["sft"].max_length >= stages["sft"].max_prompt_length + 54  # the longest summary


def test_config_rejects_unknown_stage_keys():
    with pytest.raises(ConfigError, match="ppo.kl_coeff"):
        load_config(PipelineConfig, DEMO, ["ppo.kl_coeff=0.1"])


def test_hh_dpo_starts_from_the_demo_sft_on_the_demo_split():
    cfg = _load(DPO)
    demo = stage_configs(load_config(PipelineConfig, DEMO))
    assert cfg.policy == demo["sft"].output_dir  # DPO's reference and eval's baseline is the SFT model
    # same file, format, skip and train/eval split; only the proxy's half of the training pairs
    assert cfg.data == demo["reward"].data and cfg.data.train_part == "first_half"
    assert cfg.reference == "precomputed" and cfg.lora.r == 0
    assert cfg.output_dir.startswith(str(Path(demo["sft"].output_dir).parent))
    with pytest.raises(ConfigError, match="did you mean 'beta'"):
        _load(DPO, ["betta=0.2"])


def test_hh_kto_takes_apart_the_pairs_dpo_trains_on():
    cfg = _load(ROOT / "configs" / "hh-kto.yaml")
    dpo = _load(DPO)
    assert cfg.policy == dpo.policy and cfg.data == dpo.data  # the SFT model; the proxy's half, same split
    assert cfg.data.format == "hh" and cfg.reference == "precomputed"
    # at most the pairs DPO touches, taken apart (two examples a pair)
    assert cfg.batch_size * cfg.max_steps <= 2 * dpo.batch_size * dpo.max_steps
    assert cfg.desirable_weight == cfg.undesirable_weight  # n_D = n_U: the paper's ratio 1
    assert Path(cfg.output_dir).parent == Path(dpo.output_dir).parent
    with pytest.raises(ConfigError, match="did you mean 'undesirable_weight'"):
        _load(ROOT / "configs" / "hh-kto.yaml", ["undesirable_weigth=2"])


def test_hh_grpo_starts_from_the_demo_sft_and_reward_on_the_demo_split():
    cfg = _load(ROOT / "configs" / "hh-grpo.yaml")
    demo = stage_configs(load_config(PipelineConfig, DEMO))
    assert cfg.policy == cfg.reference == demo["sft"].output_dir  # eval's baseline is the SFT model
    assert [(r.kind, r.path) for r in cfg.rewards] == [("model", demo["reward"].output_dir)]
    assert cfg.data == demo["ppo"].data  # same file, format, skip and train/eval split as PPO
    assert cfg.output_dir.startswith(str(Path(demo["sft"].output_dir).parent))
    assert cfg.kl_coef > 0 and cfg.batch_size * cfg.group_size % cfg.mini_batch_size == 0
    with pytest.raises(ConfigError, match="did you mean 'group_size'"):
        _load(ROOT / "configs" / "hh-grpo.yaml", ["grop_size=8"])


def test_hh_loop_starts_from_the_demo_sft_and_is_labelled_by_the_demo_reward_model():
    cfg = _load(ROOT / "configs" / "hh-loop.yaml")
    demo = stage_configs(load_config(PipelineConfig, DEMO))
    assert cfg.policy == demo["sft"].output_dir  # the reference and eval baseline of every round
    assert cfg.simulated.gold_reward_model == demo["reward"].output_dir
    assert cfg.data == demo["ppo"].data  # same file, format, skip and train/eval split
    with pytest.raises(ConfigError, match="did you mean 'labels_per_round'"):
        _load(ROOT / "configs" / "hh-loop.yaml", ["label_per_round=8"])
    # 16 prompts x K(K-1)/2 = 6 pairs each: 96 candidate pairs a round, so 97 labels cannot be chosen
    with pytest.raises(ConfigError, match="labels_per_round 97 is more than the 96 candidate pairs"):
        _load(ROOT / "configs" / "hh-loop.yaml", ["labels_per_round=97"])


ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(path)
    assert str(cfg.distributed_type).split(".")[-1] in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert cfg.num_processes >= 1 and cfg.use_cpu is False


@pytest.mark.parametrize("command", ["sft", "reward", "dpo", "kto", "ppo", "grpo", "rloo"])
def test_every_trainer_takes_bf16_mixed_precision(command):
    config = COMMANDS[command].config()
    assert load_config(config).bf16 is False
    assert load_config(config, overrides=["bf16=true"]).bf16 is True
    with pytest.raises(ConfigError, match="bf16"):
        load_config(config, overrides=["bf16=fast"])


@pytest.mark.parametrize("name", ["hh-grpo.yaml", "hh-rloo.yaml"])
def test_hh_group_rl_optimises_the_demo_proxy_never_the_judge(name):
    cfg = _load(CONFIGS[[p.name for p in CONFIGS].index(name)])
    demo = stage_configs(load_config(PipelineConfig, DEMO))
    assert [spec.path for spec in cfg.rewards] == [demo["reward"].output_dir]
    assert cfg.policy == cfg.reference == demo["sft"].output_dir
    assert cfg.reward_norm_samples > 0  # normalised on the reference's own samples
    assert cfg.data == demo["sft"].data


def test_support_configs_share_the_bitext_split_and_the_loop_uses_unseen_messages():
    sft = _load(ROOT / "configs" / "support-sft.yaml")
    loop = _load(ROOT / "configs" / "support-loop.yaml")
    assert sft.data.path.endswith("shared/data/customer-support/bitext-customer-support-4514.csv.gz")
    assert sft.data.fields == loop.data.fields == {"prompt": "instruction", "response": "response"}
    assert (sft.data.eval_fraction, sft.data.split_seed) == (loop.data.eval_fraction, loop.data.split_seed)
    assert sft.data.system_prompt and loop.data.system_prompt == sft.data.system_prompt
    assert (sft.data.train_part, loop.data.train_part) == ("first_half", "second_half")
    assert loop.policy == sft.output_dir and loop.labeler == "human"
    assert (ROOT / loop.human.guidelines).is_file() and "placeholder" in (
        ROOT / loop.human.guidelines
    ).read_text()
    assert loop.simulated.self_play.train_records > 0  # the stand-in's gold comes from human-written answers
    # the table is read through the mapping; the loop's messages (rounds and gold) are not SFT's
    sft_train, sft_eval = load_split(sft.data, load_sft)
    loop_train, loop_eval = load_split(loop.data, load_sft)
    assert loop_eval == sft_eval and len(sft_eval) == 451
    seen = {json.dumps(ex.prompt) for ex in sft_train}
    assert sum(json.dumps(ex.prompt) in seen for ex in loop_train) == 0
