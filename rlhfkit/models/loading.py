"""Loading policies, references, reward and value models through transformers.

A model is named by a built-in name (see :mod:`rlhfkit.models.builtin`), a local folder, or a hub id.
Hub ids go through ``from_pretrained`` as usual and therefore work only where the hub (or its local cache)
is reachable; nothing in rlhfkit needs the hub.

Every loaded model has dropout switched off (Huang et al. 2024, "The N+ implementation details of RLHF
with PPO", detail 1): RL needs the same logprobs in rollout and training passes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhfkit.data.templates import set_system_prompt
from rlhfkit.errors import ModelNotFoundError
from rlhfkit.models.builtin import BUILTIN_MODELS, builtin_model_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model(name: str | Path) -> str:
    """Turn a built-in name, a local folder or a hub id into what ``from_pretrained`` takes.

    Raises:
        ModelNotFoundError: ``name`` is none of the three, or its hub lookup failed; the message says
            what was tried (built-in names, the absolute local path, the hub id and the hub's error).
    """
    name = str(name)
    if name in BUILTIN_MODELS:
        try:
            return str(builtin_model_dir(name))
        except FileNotFoundError as err:
            raise ModelNotFoundError(f"built-in model {name!r}: {err}") from err
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model folder {path.resolve()} has no config.json")
        return str(path)
    tried = [f"built-in names {', '.join(BUILTIN_MODELS)}", f"local folder {path.resolve()} (not found)"]
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        try:
            AutoConfig.from_pretrained(name)
        except OSError as err:
            tried.append(f"hub id {name!r} ({str(err).splitlines()[0]})")
        else:
            return name
    raise ModelNotFoundError(f"cannot find model {name!r}; tried: " + "; ".join(tried))


def load_tokenizer(
    name: str | Path, padding_side: str = "right", system_prompt: str | None = None
) -> PreTrainedTokenizerBase:
    """Tokenizer of a model, with a pad token guaranteed (the EOS token if it had none), and with
    `system_prompt` (a run's ``data.system_prompt``) written into its chat template
    (:func:`rlhfkit.data.templates.set_system_prompt`; None keeps the one the model was saved with).

    Raises:
        ModelNotFoundError: see :func:`resolve_model`.
        ValueError: the tokenizer has neither a pad nor an EOS token; a `system_prompt` for a tokenizer
            without a chat template.
    """
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    set_system_prompt(tokenizer, system_prompt)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer of {name!r} has no pad and no EOS token; add one to its folder")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _config_without_dropout(path: str, **overrides) -> AutoConfig:
    """The model's config with every ``*dropout*`` probability set to 0."""
    config = AutoConfig.from_pretrained(path, **overrides)
    for key, value in config.to_dict().items():
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, 0.0)
    return config


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set p = 0 in every ``nn.Dropout`` of ``model`` (in place) and return it."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def load_policy(name: str | Path, dtype: str = "float32", trainable: bool = True) -> PreTrainedModel:
    """A causal LM to train (policy) or to keep frozen (reference, ``trainable=False``).

    Raises:
        ModelNotFoundError: see :func:`resolve_model`.
        KeyError: ``dtype`` is not one of ``float32``, ``bfloat16``, ``float16``.
    """
    path = resolve_model(name)
    model = AutoModelForCausalLM.from_pretrained(
        path, config=_config_without_dropout(path), dtype=DTYPES[dtype]
    )
    return _finish(model, trainable)


def load_reward_model(
    name: str | Path, dtype: str = "float32", trainable: bool = False, causal: bool = False
) -> PreTrainedModel:
    """A sequence classifier with one label: backbone + scalar head; its logit is the reward.

    A causal LM or an encoder folder gets a freshly initialised head, announced in one ``[rlhfkit]`` line
    instead of transformers' load report; that report still appears when anything besides the head is
    missing, left over or of the wrong shape. ``causal=True`` loads it with a causal attention mask
    (``is_decoder``) so that the state at token t sees tokens <= t only: that is how a value model is
    initialised from a reward model (see :class:`rlhfkit.models.value.ValueModel`).

    Raises:
        ModelNotFoundError: see :func:`resolve_model`.
    """
    path = resolve_model(name)
    overrides = {"num_labels": 1}
    if causal:
        overrides["is_decoder"] = True
    config = _config_without_dropout(path, **overrides)
    if config.pad_token_id is None:
        tokenizer = load_tokenizer(path)
        config.pad_token_id = tokenizer.pad_token_id
    with _load_report_held() as held:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, dtype=DTYPES[dtype], output_loading_info=True
        )
        fresh = _fresh_head(model, info)
        if fresh is None:  # not (only) a fresh head: transformers' report says what is amiss
            held.release()
    if fresh is not None:
        print(f"[rlhfkit] {_fresh_head_line(name, *fresh, trainable, causal)}", flush=True)
    return _finish(model, trainable)


_LOAD_REPORT_LOGGER = "transformers.modeling_utils"  # where from_pretrained logs its LOAD REPORT


class _HeldLoadReport(logging.Filter):
    """Holds back the load report ``from_pretrained`` logs (only it); :meth:`release` logs it after all."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.records.append(record)
            return False
        return True

    def release(self) -> None:
        logger = logging.getLogger(_LOAD_REPORT_LOGGER)
        logger.removeFilter(self)
        for record in self.records:
            logger.handle(record)
        self.records.clear()


@contextmanager
def _load_report_held() -> Iterator[_HeldLoadReport]:
    """Within the block transformers' load report is held back; it is dropped at the end unless released,
    and released when the block raises (a size mismatch, say, whose error points at the report)."""
    held = _HeldLoadReport()
    logger = logging.getLogger(_LOAD_REPORT_LOGGER)
    logger.addFilter(held)
    try:
        yield held
    except BaseException:
        held.release()
        raise
    finally:
        logger.removeFilter(held)


def _fresh_head(model: PreTrainedModel, info: dict) -> tuple[list[str], list[str]] | None:
    """From ``from_pretrained``'s loading info, when the checkpoint lacked exactly the model's head (every
    parameter outside the backbone, e.g. ``score``) and nothing else of the backbone: the head's modules,
    initialised at random, and the checkpoint's modules outside the backbone that went unused (a causal
    LM's ``lm_head``). None otherwise: nothing amiss, or more than the expected fresh head."""
    if not model.base_model_prefix:
        return None
    backbone = f"{model.base_model_prefix}."
    missing, unexpected = set(info["missing_keys"]), set(info["unexpected_keys"])
    heads = {name for name, _ in model.named_parameters() if not name.startswith(backbone)}
    if not missing or missing != heads or info["mismatched_keys"]:
        return None
    if any(key.startswith(backbone) for key in unexpected):
        return None
    return _modules(missing), _modules(unexpected)


def _modules(keys: set[str]) -> list[str]:
    """The top-level modules of parameter names: ``{"score.weight"}`` -> ``["score"]``."""
    return sorted({key.split(".")[0] for key in keys})


def _fresh_head_line(
    name: str | Path, fresh: list[str], unused: list[str], trainable: bool, causal: bool
) -> str:
    """The one line that replaces transformers' load report when the only news is a fresh scalar head."""
    what = "value head" if causal else "reward head"
    line = f"{what}: a new scalar head ({', '.join(fresh)}) on {name}, initialised at random"
    if unused:
        line += f" (the checkpoint's {', '.join(unused)} is not used)"
    if causal:
        return line + "; PPO trains it as the value function"
    if not trainable:
        return line + ", so its scores mean nothing yet; train it with rlhfkit reward"
    return line + "; train it with rlhfkit reward"


def _finish(model: PreTrainedModel, trainable: bool) -> PreTrainedModel:
    disable_dropout(model)
    model.train(trainable)
    model.requires_grad_(trainable)
    return model
