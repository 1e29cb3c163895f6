"""The record schema shared by the trainers and the feedback app.

These are plain frozen dataclasses with no dependency beyond the standard library: the feedback app
imports them without torch, and the trainers turn them into tensors elsewhere (collators).

A `Prompt` is either a plain string (for example an HH-RLHF prompt ``"\\n\\nHuman: hi\\n\\nAssistant:"``)
or a list of chat messages ``[{"role": "user" | "assistant" | "system", "content": str}, ...]``.
Responses are always plain strings, kept exactly as in the data (HH responses start with a space).

Every record may carry a `group`: records that share one (e.g. the comparisons of one Reddit post in the
summarize-from-feedback data) stay on the same side of the train/eval split
(:func:`rlhfkit.data.split.group_train_eval_split`). Preference pairs and SFT examples may also carry
`meta`, a dict of facts about the record (labeler id, confidence, ...) that no trainer reads. Both are
None unless the format has them, and are left out of `to_dict` when None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Prompt = str | list[dict[str, str]]


def _prompt_to_json(prompt: Prompt) -> str | list[dict[str, str]]:
    """A copy of `prompt` that shares no mutable state with the record."""
    if isinstance(prompt, str):
        return prompt
    return [dict(message) for message in prompt]


def _extras(out: dict[str, Any], group: str | None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """`out` with ``"group"`` and ``"meta"`` (a copy) added where they are not None."""
    if group is not None:
        out["group"] = group
    if meta is not None:
        out["meta"] = dict(meta)
    return out


@dataclass(frozen=True)
class PreferencePair:
    """One human (or AI) judgement: `chosen` was preferred over `rejected` as a reply to `prompt`.

    `margin` is an optional strength of preference (e.g. a rating difference); None when unknown.
    `group` and `meta`: see the module docstring (`meta` takes no part in the hash).
    """

    prompt: Prompt
    chosen: str
    rejected: str
    margin: float | None = None
    group: str | None = None
    meta: dict[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict in TRL's preference format; `margin`, `group` and `meta` are left out
        when None."""
        out: dict[str, Any] = {
            "prompt": _prompt_to_json(self.prompt),
            "chosen": self.chosen,
            "rejected": self.rejected,
        }
        if self.margin is not None:
            out["margin"] = self.margin
        return _extras(out, self.group, self.meta)


@dataclass(frozen=True)
class UnpairedExample:
    """One unpaired judgement (KTO): `completion` as a reply to `prompt` is desirable (`label` True) or
    undesirable (False). `group` and `meta`: see the module docstring (`meta` takes no part in the hash)."""

    prompt: Prompt
    completion: str
    label: bool
    group: str | None = None
    meta: dict[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict in TRL's unpaired preference format ``{"prompt", "completion",
        "label"}``; `group` and `meta` are left out when None."""
        out = {"prompt": _prompt_to_json(self.prompt), "completion": self.completion, "label": self.label}
        return _extras(out, self.group, self.meta)


@dataclass(frozen=True)
class PromptOnly:
    """A prompt to sample responses for (PPO, GRPO, evaluation); `group`: see the module docstring."""

    prompt: Prompt
    group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict ``{"prompt": ...}`` (plus ``"group"`` when not None)."""
        return _extras({"prompt": _prompt_to_json(self.prompt)}, self.group)


@dataclass(frozen=True)
class SFTExample:
    """A demonstration: `response` is the target reply to `prompt`; `group`, `meta`: see the module
    docstring."""

    prompt: Prompt
    response: str
    group: str | None = None
    meta: dict[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict ``{"prompt": ..., "response": ...}`` (plus ``"group"``/``"meta"`` when
        not None)."""
        out = {"prompt": _prompt_to_json(self.prompt), "response": self.response}
        return _extras(out, self.group, self.meta)
