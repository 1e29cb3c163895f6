"""Every shipped config loads and validates against its dataclass."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit.config import ConfigError, load_config
from rlhfkit.pipeline import PipelineConfig, stage_configs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
DEMO = ROOT / "configs" / "hh-demo.yaml"


def test_configs_exist():
    assert any(p.name == "hh-demo.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = load_config(PipelineConfig, path)
    stages = stage_configs(cfg)
    assert stages["ppo"].policy == stages["sft"].output_dir  # stages are wired to each other
    assert stages["eval"].policies == [stages["ppo"].output_dir]
    assert stages["reward"].data == cfg.data  # one shared data split


def test_hh_demo_reads_the_shared_hh_data():
    cfg = load_config(PipelineConfig, DEMO)
    assert cfg.data.path.endswith("shared/data/hh-rlhf/harmless-base-2000.jsonl.gz")
    assert cfg.data.skip_invalid is True


def test_config_rejects_unknown_stage_keys():
    with pytest.raises(ConfigError, match="ppo.kl_coeff"):
        load_config(PipelineConfig, DEMO, ["ppo.kl_coeff=0.1"])
