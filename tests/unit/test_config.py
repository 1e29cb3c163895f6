"""Tests for rlhfkit.config: YAML + key=value overrides -> validated dataclasses."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from rlhfkit.config import (
    ConfigError,
    config_to_dict,
    describe_config,
    load_config,
    option,
    save_config,
)


@dataclass
class SFTSection:
    """Supervised fine-tuning."""

    lr: float = option(2e-5, "AdamW learning rate")
    epochs: int = option(1, "passes over the data")
    packing: bool = option(False, "pack short examples into one sequence")


@dataclass
class PPOSection:
    lr: float = option(1e-6, "policy learning rate")
    kl_coef: float = option(0.05, "beta: weight of the per-token KL penalty")
    kl_estimator: Literal["k1", "k3"] = option("k1", "per-token KL estimator")
    stop: list[str] = option([], "extra stop strings")
    max_new_tokens: int | None = option(None, "cap on sampled tokens; None = model default")

    def __post_init__(self):
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass
class Pipeline:
    """The whole SFT -> PPO recipe."""

    model: str = option("HuggingFaceTB/SmolLM2-135M", "policy model folder or hub id")
    seed: int = option(0, "random seed")
    run_name: Optional[str] = option(None, "name of the run folder")  # noqa: UP045 (typing.Optional on purpose)
    layers: list[int] = option([0, 1], "layers to adapt")
    sft: SFTSection = option(SFTSection, "SFT stage")
    ppo: PPOSection = option(default_factory=lambda: PPOSection(lr=3e-6), help="PPO stage")


@dataclass
class Required:
    data: str = option(help="path of the training data")
    steps: int = option(10, "optimizer steps")


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- option() -----------------------------------------------------------------------------


def test_option_stores_help_and_copies_mutable_defaults():
    f = {f.name: f for f in dataclasses.fields(Pipeline)}
    assert f["seed"].metadata["help"] == "random seed"
    a, b = Pipeline(), Pipeline()
    a.layers.append(7)
    a.ppo.stop.append("###")
    assert b.layers == [0, 1] and b.ppo.stop == []  # each instance got its own list
    assert isinstance(b.sft, SFTSection) and b.ppo.lr == 3e-6  # type default and default_factory


# --- loading and overrides ----------------------------------------------------------------


def test_defaults_without_file():
    assert load_config(Pipeline) == Pipeline()


def test_empty_file_means_defaults(tmp_path):
    assert load_config(Pipeline, write(tmp_path, "")) == Pipeline()


def test_nested_yaml_and_dotted_overrides(tmp_path):
    path = write(tmp_path, "seed: 3\nsft:\n  epochs: 2\nppo:\n  kl_coef: 0.1\n")
    cfg = load_config(Pipeline, path, overrides=["ppo.lr=3e-6", "sft.packing=true", "ppo.stop=[a, b]"])
    assert cfg.seed == 3
    assert cfg.sft == SFTSection(epochs=2, packing=True)  # untouched sft.lr keeps its default
    assert cfg.ppo.lr == 3e-6 and cfg.ppo.kl_coef == 0.1 and cfg.ppo.stop == ["a", "b"]


def test_override_beats_file_beats_base(tmp_path):
    path = write(tmp_path, "seed: 2\nsft: {epochs: 5}\n")
    base = {"seed": 1, "model": "base-model", "sft": {"lr": 1e-4, "epochs": 4}}
    cfg = load_config(Pipeline, path, overrides=["seed=3"], base=base)
    assert cfg.seed == 3 and cfg.model == "base-model"
    assert cfg.sft.lr == 1e-4 and cfg.sft.epochs == 5  # sections merge key by key


def test_override_null_and_empty_section(tmp_path):
    cfg = load_config(Pipeline, write(tmp_path, "sft:\nrun_name: r1\n"), overrides=["run_name=null"])
    assert cfg.run_name is None and cfg.sft == SFTSection()


def test_partial_section_keeps_the_fields_own_default():
    # Pipeline.ppo defaults to PPOSection(lr=3e-6), which --help shows; setting another key keeps it
    assert "ppo.lr (float, default 3e-06)" in describe_config(Pipeline)
    assert load_config(Pipeline, overrides=["ppo.kl_coef=0.1"]).ppo == PPOSection(lr=3e-6, kl_coef=0.1)
    assert load_config(Pipeline, overrides=["ppo="]).ppo == PPOSection(lr=3e-6)  # null: all its defaults


def test_str_override_keeps_raw_text():
    cfg = load_config(Pipeline, overrides=["run_name=001", "model=true"])
    assert cfg.run_name == "001" and cfg.model == "true"


@pytest.mark.parametrize(
    "override, attr, expected",
    [
        ("ppo.lr=1e-5", ("ppo", "lr"), 1e-5),  # PyYAML reads 1e-5 as the *string* "1e-5"
        ("ppo.lr=1", ("ppo", "lr"), 1.0),  # int accepted for float
        ("seed=7.0", ("seed",), 7),  # integral float accepted for int
        ("seed=1e3", ("seed",), 1000),  # "1e3" string, integral
        ("ppo.max_new_tokens=64", ("ppo", "max_new_tokens"), 64),
        ("ppo.max_new_tokens=null", ("ppo", "max_new_tokens"), None),
        ("layers=[3, 4.0]", ("layers",), [3, 4]),
        ("ppo.kl_estimator=k3", ("ppo", "kl_estimator"), "k3"),
    ],
)
def test_type_coercion(override, attr, expected):
    cfg = load_config(Pipeline, overrides=[override])
    value = cfg
    for name in attr:
        value = getattr(value, name)
    assert value == expected and type(value) is type(expected)


def test_float_from_quoted_yaml_string(tmp_path):
    cfg = load_config(Pipeline, write(tmp_path, "ppo:\n  lr: '5e-7'\n"))
    assert cfg.ppo.lr == 5e-7 and isinstance(cfg.ppo.lr, float)


# --- errors -------------------------------------------------------------------------------


def test_unknown_key_names_file_and_suggests(tmp_path):
    path = write(tmp_path, "ppo:\n  kl_coeff: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Pipeline, path)
    msg = str(err.value)
    assert "ppo.kl_coeff" in msg and str(path) in msg and "did you mean 'ppo.kl_coef'" in msg


def test_unknown_top_level_key_without_close_match_lists_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'zzz'.*valid keys: model, seed"):
        load_config(Pipeline, write(tmp_path, "zzz: 1\n"))


def test_unknown_override_key_suggests():
    with pytest.raises(ConfigError, match=r"override 'sft\.epoch=2'.*did you mean 'sft\.epochs'"):
        load_config(Pipeline, overrides=["sft.epoch=2"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("seed=true", "int"),  # bool is not an int
        ("seed=1.5", "int"),  # non-integral float
        ("ppo.lr=abc", "float"),
        ("ppo.lr=false", "float"),
        ("sft.packing=1", "bool"),
        ("layers=[1, x]", "int"),
        ("ppo.stop=oops", "list[str]"),
        ("sft=3", "section SFTSection"),
    ],
)
def test_bad_type_names_key_type_and_value(override, expected):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as err:
        load_config(Pipeline, overrides=[override])
    msg = str(err.value)
    assert expected in msg and value.split(", ")[-1].rstrip("]") in msg
    assert key.split(".")[-1] in msg and f"override {override!r}" in msg


def test_bad_type_in_file_names_dotted_key_and_file(tmp_path):
    path = write(tmp_path, "sft:\n  epochs: two\n")
    with pytest.raises(ConfigError) as err:
        load_config(Pipeline, path)
    assert str(err.value) == f"{path}: 'sft.epochs' expects int, got 'two' (str)"


def test_str_field_rejects_number_in_yaml(tmp_path):
    with pytest.raises(ConfigError, match="'model' expects str, got 123"):
        load_config(Pipeline, write(tmp_path, "model: 123\n"))


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config(Pipeline, overrides=["ppo.kl_estimator=k2"])
    assert "'ppo.kl_estimator' expects one of 'k1', 'k3', got 'k2'" in str(err.value)


@pytest.mark.parametrize("override", ["seed", "=3", "ppo..lr=1"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="malformed override"):
        load_config(Pipeline, overrides=[override])


def test_override_into_a_value_is_rejected():
    with pytest.raises(ConfigError, match="'seed' is a value, not a section"):
        load_config(Pipeline, overrides=["seed.x=1"])


def test_post_init_value_error_is_wrapped(tmp_path):
    path = write(tmp_path, "ppo:\n  kl_coef: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Pipeline, path)
    msg = str(err.value)
    assert str(path) in msg and "PPOSection" in msg and "kl_coef must be >= 0" in msg
    assert isinstance(err.value.__cause__, ValueError)


def test_missing_required_key_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        load_config(Required, write(tmp_path, "steps: 3\n"))
    assert load_config(Required, overrides=["data=x.jsonl"]).data == "x.jsonl"
    with pytest.raises(ConfigError, match="not found"):
        load_config(Pipeline, tmp_path / "nope.yaml")


def test_top_level_must_be_mapping_and_valid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Pipeline, write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Pipeline, write(tmp_path, "a: [1, 2\n", "bad.yaml"))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- saving and describing ----------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(Pipeline, overrides=["ppo.lr=1e-7", "ppo.stop=['\\n\\nHuman:']", "run_name=r"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Pipeline, path) == cfg
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left behind


def test_save_config_replaces_existing_file(tmp_path):
    path = write(tmp_path, "old: content\n", "config.yaml")
    save_config(Pipeline(seed=5), path)
    assert load_config(Pipeline, path).seed == 5
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_config_to_dict_is_plain_nested():
    d = config_to_dict(Pipeline())
    assert d["sft"] == {"lr": 2e-5, "epochs": 1, "packing": False}
    assert d["ppo"]["lr"] == 3e-6 and d["layers"] == [0, 1]


def test_describe_config_lists_keys_types_defaults_and_help():
    text = describe_config(Pipeline)
    assert "The whole SFT -> PPO recipe." in text
    assert "ppo.kl_estimator (one of 'k1', 'k3', default 'k1')" in text
    assert "per-token KL estimator" in text
    assert "ppo.lr (float, default 3e-06)" in text  # default from the section's factory
    assert "sft.epochs (int, default 1)" in text and "passes over the data" in text
    assert "run_name (str | None, default None)" in text
    assert "required" in describe_config(Required)


# --- less common annotations and error order ----------------------------------------------


@dataclass
class Reward:
    kind: Literal["model", "length"] = option("model", "reward kind")
    weight: float = option(1.0, "weight in the sum")


@dataclass
class Odd:
    pair: tuple[int, str] = option((1, "a"), "a fixed-size tuple")
    scales: tuple[float, ...] = option((), "any number of floats")
    folder: Path = option(Path("out"), "a path")
    either: int | str = option(0, "an int or a string")
    widths: dict[str, int] = option({}, "named ints")
    level: Literal[1, 2] = option(1, "an int literal")
    rewards: list[Reward] = option([], "a list of sections")
    extra: Optional[Reward] = option(None, "an optional section")  # noqa: UP045


def test_less_common_types_load():
    cfg = load_config(
        Odd,
        overrides=["pair=[2, b]", "scales=[1, '2e-1']", "folder=runs/x", "either=5", "widths={a: 3.0}"],
        base={"rewards": [{"kind": "length"}, Reward(weight=2.0)], "extra": {}},
    )
    assert cfg.pair == (2, "b") and cfg.scales == (1.0, 0.2) and cfg.folder == Path("runs/x")
    assert cfg.either == 5 and cfg.widths == {"a": 3} and type(cfg.widths["a"]) is int
    assert cfg.rewards == [Reward(kind="length"), Reward(weight=2.0)] and cfg.extra == Reward()
    assert load_config(Odd, overrides=["either='5'"]).either == "5"  # an exact type match wins


@pytest.mark.parametrize(
    "override, message",
    [
        ("pair=[1, a, 2]", "'pair' expects tuple[int, str], got [1, 'a', 2] (list); needs exactly 2 items"),
        ("scales=[1, x]", "'scales[1]' expects float, got 'x' (str)"),
        ("folder=3", "'folder' expects path, got 3 (int)"),
        ("either=1.5", "'either' expects int | str, got 1.5 (float)"),
        ("widths={a: x}", "'widths.a' expects int, got 'x' (str)"),
        ("level=true", "'level' expects one of 1, 2, got True (bool)"),  # True is not 1
        (
            "rewards=[{kind: length}, {weigth: 2}]",
            "unknown key 'rewards[1].weigth'; did you mean 'rewards[1].weight'?",
        ),
        ("rewards=[{kind: x}]", "'rewards[0].kind' expects one of 'model', 'length', got 'x' (str)"),
        ("extra=3", "'extra' expects Reward | None, got 3 (int)"),
    ],
)
def test_less_common_type_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(Odd, overrides=[override])
    assert str(err.value) == f"override {override!r}: {message}"


def test_first_error_in_walk_order_is_reported(tmp_path):
    # a section's unknown keys come before its values; sections and fields go in declaration order
    path = write(tmp_path, "seed: x\nsft: {epoch: 1}\nzz: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'zz'"):
        load_config(Pipeline, path)
    with pytest.raises(ConfigError, match="'seed' expects int"):
        load_config(Pipeline, write(tmp_path, "seed: x\nsft: {epoch: 1}\n"))


def test_dataclass_instances_in_base_load():
    sft = SFTSection(epochs=4)
    assert (
        load_config(Pipeline, base={"sft": sft}).sft == sft and sft.epochs == 4
    )  # base is copied, not changed
    assert load_config(Pipeline, base={"sft": sft}, overrides=["sft.lr=1"]).sft == SFTSection(
        lr=1.0, epochs=4
    )
