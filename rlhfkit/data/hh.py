"""Anthropic HH-RLHF dialogues: splitting pairs into prompt + responses, and converting to chat messages.

An HH record is ``{"chosen": DIALOGUE, "rejected": DIALOGUE}`` where a dialogue reads
``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: ..."``. The two dialogues of a pair
share everything up to (and including) their last ``"\\n\\nAssistant:"``; that shared text is the prompt
and what follows are the two responses, kept byte for byte (they usually start with a space), so that
``join_prompt_response(prompt, response)`` gives back the original dialogue.
"""

from __future__ import annotations

import re

from rlhfkit.data.records import Prompt

ASSISTANT_TAG = "\n\nAssistant:"
HUMAN_TAG = "\n\nHuman:"

_ROLE_OF_TAG = {"Human": "user", "Assistant": "assistant"}
_TAG_OF_ROLE = {"user": HUMAN_TAG, "assistant": ASSISTANT_TAG}
# A turn tag: "\n\nHuman:" / "\n\nAssistant:", or the same without the newlines at the very start.
_TAG_RE = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_SNIPPET = 24


class HHFormatError(ValueError):
    """A `ValueError` raised by `split_hh_dialogue`; `field` is ``'chosen'`` or ``'rejected'``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _split_one(text: str, field: str) -> tuple[str, str]:
    cut = text.rfind(ASSISTANT_TAG)
    if cut < 0:
        raise HHFormatError(field, f"not an HH dialogue: the {field} text has no {ASSISTANT_TAG!r} tag")
    cut += len(ASSISTANT_TAG)
    return text[:cut], text[cut:]


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _excerpt(text: str, i: int) -> str:
    """A short excerpt of `text` around position `i`, marking where it ends."""
    lo = max(0, i - _SNIPPET // 2)
    return repr(text[lo : i + _SNIPPET]) + (" <end>" if i + _SNIPPET >= len(text) else "")


def split_hh_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split an HH pair into ``(prompt, chosen_response, rejected_response)``.

    The prompt is the text up to and including the last ``"\\n\\nAssistant:"`` of each dialogue; the
    responses are the rest, unchanged (an empty reply, as some HH-harmless dialogues have, stays ``" "``).

    Raises:
        ValueError (an `HHFormatError`, whose `field` names the dialogue at fault): if either dialogue
            has no ``"\\n\\nAssistant:"`` tag, or if the two prompts differ. The latter message starts
            with ``"HH prompts differ:"`` and shows a short excerpt of each at the first difference.
    """
    prompt, chosen_response = _split_one(chosen, "chosen")
    rejected_prompt, rejected_response = _split_one(rejected, "rejected")
    if prompt != rejected_prompt:
        i = _first_difference(prompt, rejected_prompt)
        raise HHFormatError(
            "rejected",
            f"HH prompts differ: the text up to the last {ASSISTANT_TAG!r} first differs at character {i}"
            f" (chosen {_excerpt(prompt, i)}, rejected {_excerpt(rejected_prompt, i)})",
        )
    return prompt, chosen_response, rejected_response


def hh_to_messages(prompt: str) -> list[dict[str, str]]:
    """Parse an HH prompt into chat messages.

    ``"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:"`` becomes
    ``[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
    {"role": "user", "content": "c"}]``: contents are stripped of surrounding whitespace and a final
    empty assistant turn is dropped. Text before the first tag becomes a leading system message
    (the inverse of `messages_to_hh`). A string with no HH tag at all becomes one user message.

    Raises:
        TypeError: if `prompt` is not a string.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"hh_to_messages expects a string, got {type(prompt).__name__}")
    tags = list(_TAG_RE.finditer(prompt))
    if not tags:
        return [{"role": "user", "content": prompt.strip()}]
    messages: list[dict[str, str]] = []
    preamble = prompt[: tags[0].start()].strip()
    if preamble:
        messages.append({"role": "system", "content": preamble})
    for k, tag in enumerate(tags):
        end = tags[k + 1].start() if k + 1 < len(tags) else len(prompt)
        messages.append({"role": _ROLE_OF_TAG[tag.group(1)], "content": prompt[tag.end() : end].strip()})
    if messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


def messages_to_hh(messages: list[dict[str, str]], response: str | None = None) -> str:
    """Render chat messages as HH text, ending with ``"\\n\\nAssistant:"`` (+ ``" " + response``).

    User turns become ``"\\n\\nHuman: ..."``, assistant turns ``"\\n\\nAssistant: ..."``; a system message
    is rendered as a plain paragraph (at the start, where `hh_to_messages` reads it back as system).

    Raises:
        ValueError: if a message is not a dict with a known ``role`` and a string ``content``.
    """
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is not a dict: {message!r}")
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            raise ValueError(f"message {i} has no string 'content'")
        if role == "system":
            parts.append(content.strip() if not parts else "\n\n" + content.strip())
        elif role in _TAG_OF_ROLE:
            content = content.strip()
            parts.append(f"{_TAG_OF_ROLE[role]} {content}" if content else _TAG_OF_ROLE[role])
        else:
            raise ValueError(f"message {i} has unknown role {role!r} (expected user, assistant or system)")
    parts.append(ASSISTANT_TAG)
    if response is not None:
        parts.append(" " + response)
    return "".join(parts)


def join_prompt_response(prompt: Prompt, response: str) -> str:
    """The full dialogue text that a reward model scores.

    For a string prompt: ``prompt + response``, with one space put in between when the prompt ends with
    ``":"`` and the response does not start with whitespace (HH responses already start with a space,
    so ``join_prompt_response(*split_hh_dialogue(c, r)[:2]) == c``). For a messages prompt:
    ``messages_to_hh(prompt, response.strip())``.

    Raises:
        ValueError: from `messages_to_hh` for malformed messages.
        TypeError: if `prompt` is neither a string nor a list.
    """
    if isinstance(prompt, str):
        if prompt.endswith(":") and response and not response[0].isspace():
            return prompt + " " + response
        return prompt + response
    if isinstance(prompt, list):
        return messages_to_hh(prompt, response.strip())
    raise TypeError(f"a prompt is a string or a list of messages, got {type(prompt).__name__}")
