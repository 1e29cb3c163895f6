"""When the RL trainers shard (``fsdp=true`` or the accelerate launcher's ``ACCELERATE_USE_FSDP``), what they
refuse, and that unsharded models pass through the sharding helpers untouched. Sharded runs themselves
are in ``tests/integration/test_fsdp.py`` (they need several processes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlhfkit.models.lora import LoRAConfig
from rlhfkit.trainers import sharding
from rlhfkit.trainers.grpo import GRPOConfig


def _accelerator(processes: int) -> SimpleNamespace:
    return SimpleNamespace(num_processes=processes, is_main_process=True)


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch):
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)


def test_fsdp_is_off_unless_asked_for():
    assert not sharding.use_fsdp(GRPOConfig(), _accelerator(2))


def test_the_key_or_the_launcher_turns_it_on(monkeypatch, capsys):
    assert sharding.use_fsdp(GRPOConfig(fsdp=True), _accelerator(2))
    assert "sharded over 2 processes" in capsys.readouterr().out
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what configs/accelerate/fsdp.yaml sets
    assert sharding.use_fsdp(GRPOConfig(), _accelerator(4))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    assert not sharding.use_fsdp(GRPOConfig(), _accelerator(4))


def test_one_process_has_nothing_to_shard_over(capsys):
    assert not sharding.use_fsdp(GRPOConfig(fsdp=True), _accelerator(1))
    assert "nothing to shard over" in capsys.readouterr().out


def test_lora_and_deepspeed_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="fsdp with lora"):
        sharding.use_fsdp(GRPOConfig(fsdp=True, lora=LoRAConfig(r=8)), _accelerator(2))
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="do not run under DeepSpeed"):
        sharding.use_fsdp(GRPOConfig(), _accelerator(2))


def test_unsharded_models_pass_through():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    assert not sharding.is_sharded(model)
    with sharding.full_weights(model) as full:
        assert full is model
    assert sharding.checkpointed(model) is model
    assert sharding.checkpointed([model, torch.nn.Linear(2, 1)], optimizer) is optimizer
    accelerator = SimpleNamespace(prepare=lambda *objects: ("prepared", *objects))
    assert sharding.prepare(accelerator, False, model, optimizer) == ("prepared", model, optimizer)
    assert sharding.prepare(accelerator, True, model, optimizer) == (model, optimizer)
    assert sharding.prepare(accelerator, True, optimizer) is optimizer
