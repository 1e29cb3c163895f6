"""Reward sources: each scores a batch of (prompt, completion) pairs with one float per pair.

Notation:
    N  number of completions in a batch (for GRPO/RLOO: prompts x group size)

Every source follows :class:`RewardSource`: ``source(prompts, completions) -> (N,)`` float32 tensor,
and has a ``name`` (what the logs call it). The sources:

- :class:`ModelReward`: a reward model folder; it reads prompt + completion as one dialogue string,
  exactly as PPO and ``rlhfkit eval`` score responses.
- :class:`FunctionReward`: any Python ``fn(prompts, completions, **options) -> list[float]``, named
  in a config as ``"package.module:function"`` or ``"path/to/file.py:function"``. What it returns is
  checked: an exception, a wrong number of scores, a non-number or a NaN/inf stops the run with a
  :class:`RewardError` naming the function and the offending prompt index.
- :class:`LengthReward` and :class:`FormatReward`: built-in rules on the completion text.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from rlhfkit.data.hh import join_prompt_response
from rlhfkit.data.records import Prompt
from rlhfkit.errors import RewardError
from rlhfkit.models.loading import load_reward_model
from rlhfkit.models.reward import load_reward_tokenizer, score_texts

RewardFn = Callable[..., Sequence[float]]


@runtime_checkable
class RewardSource(Protocol):
    """Scores ``N`` completions of ``N`` prompts: returns an ``(N,)`` float32 tensor."""

    name: str

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> torch.Tensor: ...


def _show(prompt: Prompt, width: int = 60) -> str:
    text = prompt if isinstance(prompt, str) else str(prompt[-1].get("content", "")) if prompt else ""
    text = " ".join(text.split())
    return repr(text if len(text) <= width else "..." + text[-width:])


def check_scores(name: str, values: Any, prompts: list[Prompt]) -> torch.Tensor:
    """``values`` as an ``(N,)`` float32 tensor, after checking there is one finite number per prompt.

    Raises:
        RewardError: not a sequence, a wrong count, a non-number, NaN or infinity; the message names
            the source and the first offending prompt index.
    """
    n = len(prompts)
    if hasattr(values, "ndim") and hasattr(values, "tolist"):  # a torch tensor or a numpy array
        if values.ndim != 1:
            shape = tuple(values.shape)
            raise RewardError(f"reward {name!r} returned an array of shape {shape}, expected ({n},)")
        values = values.tolist()
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise RewardError(f"reward {name!r} returned {type(values).__name__}, expected a list of {n} floats")
    values = list(values)
    if len(values) != n:
        where = (
            f"prompt index {len(values)} has no score"
            if len(values) < n
            else f"index {n} and beyond match no prompt"
        )
        raise RewardError(f"reward {name!r} returned {len(values)} scores for {n} completions; {where}")
    out = []
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RewardError(
                f"reward {name!r} returned {value!r} ({type(value).__name__}) for prompt index {i} "
                f"({_show(prompts[i])}): not a number"
            ) from None
        if isinstance(value, bool) or not math.isfinite(number):
            what = "a bool" if isinstance(value, bool) else "not finite"
            raise RewardError(
                f"reward {name!r} returned {value!r} for prompt index {i} ({_show(prompts[i])}): {what}"
            )
        out.append(number)
    return torch.tensor(out, dtype=torch.float32)


def load_function(target: str) -> Callable:
    """The callable named by ``"package.module:function"`` or ``"path/to/file.py:function"``.

    Raises:
        RewardError: the module or file cannot be imported, or has no such callable.
    """
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise RewardError(f"reward function {target!r}: expected 'module:function' or 'file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            spec = importlib.util.spec_from_file_location(f"rlhfkit_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as err:
        raise RewardError(f"reward function {target!r}: cannot import {module_name!r}: {err!r}") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise RewardError(f"reward function {target!r}: {module_name!r} has no callable {attr!r}")
    return fn


class FunctionReward:
    """A Python function ``fn(prompts, completions, **kwargs) -> list[float]`` as a reward source."""

    def __init__(self, fn: RewardFn, name: str | None = None, kwargs: dict[str, Any] | None = None):
        self.fn = fn
        fn_name = getattr(fn, "__name__", "reward_fn")
        self.name = name or (fn_name if fn_name != "<lambda>" else "reward_fn")
        self.kwargs = dict(kwargs or {})

    @classmethod
    def from_path(cls, target: str, name: str | None = None, kwargs: dict[str, Any] | None = None):
        """Load ``"module:function"`` or ``"file.py:function"`` (see :func:`load_function`)."""
        return cls(load_function(target), name or target.rpartition(":")[2], kwargs)

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> torch.Tensor:
        try:
            values = self.fn(list(prompts), list(completions), **self.kwargs)
        except Exception as err:
            index = self._first_failing(prompts, completions)
            where = (
                f"at prompt index {index} ({_show(prompts[index])})"
                if index is not None
                else f"on the batch of {len(prompts)} (no single prompt reproduces it)"
            )
            raise RewardError(
                f"reward function {self.name!r} raised {type(err).__name__}: {err} {where}"
            ) from err
        return check_scores(f"function {self.name}", values, prompts)

    def _first_failing(self, prompts: list[Prompt], completions: list[str]) -> int | None:
        """Index of the first (prompt, completion) on which the function raises when called alone."""
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            try:
                self.fn([prompt], [completion], **self.kwargs)
            except Exception:
                return i
        return None


class ModelReward:
    """A reward model (one-label sequence classifier) scoring prompt + completion dialogues.

    Raises (at construction):
        rlhfkit.models.loading.ModelNotFoundError: the folder or name cannot be found.
    """

    def __init__(
        self,
        path: str,
        dtype: str = "float32",
        max_length: int = 256,
        batch_size: int = 32,
        name: str = "model",
    ):
        self.name = name
        self.model = load_reward_model(path, dtype)
        self.tokenizer = load_reward_tokenizer(path)
        self.max_length = max_length
        self.batch_size = batch_size

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> torch.Tensor:
        texts = [join_prompt_response(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores = score_texts(self.model, self.tokenizer, texts, self.max_length, self.batch_size)
        return check_scores(f"model {self.name}", scores, prompts)


class LengthReward:
    """``-|n - target| / target`` with ``n`` the completion's length in characters or words:
    0 at the target length, -1 for an empty completion, falling linearly beyond the target."""

    def __init__(self, target: int = 200, unit: str = "chars", name: str = "length"):
        if target <= 0:
            raise ValueError(f"length reward: target must be > 0, got {target}")
        if unit not in ("chars", "words"):
            raise ValueError(f"length reward: unit must be chars or words, got {unit!r}")
        self.name, self.target, self.unit = name, target, unit

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> torch.Tensor:
        lengths = [len(c) if self.unit == "chars" else len(c.split()) for c in completions]
        return torch.tensor([-abs(n - self.target) / self.target for n in lengths], dtype=torch.float32)


class FormatReward:
    """1.0 when the completion matches a regular expression, else 0.0 (``re.search``, or
    ``re.fullmatch`` with ``fullmatch=True``; ``re.DOTALL`` so that ``.`` crosses lines)."""

    def __init__(self, pattern: str, fullmatch: bool = False, name: str = "format"):
        self.name = name
        self.regex = re.compile(pattern, re.DOTALL)
        self.match = self.regex.fullmatch if fullmatch else self.regex.search

    def __call__(self, prompts: list[Prompt], completions: list[str]) -> torch.Tensor:
        return torch.tensor([float(self.match(c) is not None) for c in completions], dtype=torch.float32)
