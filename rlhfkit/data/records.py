"""The record schema shared by the trainers and the feedback app.

These are plain frozen dataclasses with no dependency beyond the standard library: the feedback app
imports them without torch, and the trainers turn them into tensors elsewhere (collators).

A `Prompt` is either a plain string (for example an HH-RLHF prompt ``"\\n\\nHuman: hi\\n\\nAssistant:"``)
or a list of chat messages ``[{"role": "user" | "assistant" | "system", "content": str}, ...]``.
Responses are always plain strings, kept exactly as in the data (HH responses start with a space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Prompt = str | list[dict[str, str]]


def _prompt_to_json(prompt: Prompt) -> str | list[dict[str, str]]:
    """A copy of `prompt` that shares no mutable state with the record."""
    if isinstance(prompt, str):
        return prompt
    return [dict(message) for message in prompt]


@dataclass(frozen=True)
class PreferencePair:
    """One human (or AI) judgement: `chosen` was preferred over `rejected` as a reply to `prompt`.

    `margin` is an optional strength of preference (e.g. a rating difference); None when unknown.
    """

    prompt: Prompt
    chosen: str
    rejected: str
    margin: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict in TRL's preference format; `margin` is left out when None."""
        out: dict[str, Any] = {
            "prompt": _prompt_to_json(self.prompt),
            "chosen": self.chosen,
            "rejected": self.rejected,
        }
        if self.margin is not None:
            out["margin"] = self.margin
        return out


@dataclass(frozen=True)
class PromptOnly:
    """A prompt to sample responses for (PPO, GRPO, evaluation)."""

    prompt: Prompt

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict ``{"prompt": ...}``."""
        return {"prompt": _prompt_to_json(self.prompt)}


@dataclass(frozen=True)
class SFTExample:
    """A demonstration: `response` is the target reply to `prompt`."""

    prompt: Prompt
    response: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict ``{"prompt": ..., "response": ...}``."""
        return {"prompt": _prompt_to_json(self.prompt), "response": self.response}
