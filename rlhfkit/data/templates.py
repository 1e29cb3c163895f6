"""How a prompt and a response become the text a policy reads.

With ``use_chat_template`` and a tokenizer that has a chat template (SmolLM2's ChatML), an HH prompt is
parsed into turns and rendered by the template; otherwise the prompt text is used as is (an HH prompt
already ends with ``"\\n\\nAssistant:"``). Reward models always read the HH-style dialogue string from
:func:`rlhfkit.data.hh.join_prompt_response`, whatever the policy's template.

A run's ``system_prompt`` (``data.system_prompt``) is written into the tokenizer's chat template by
:func:`set_system_prompt`, so that every rendering (SFT, sampling, RL, eval) starts with it and the
trained model's saved tokenizer keeps it: plain ``transformers`` renders it too.
"""

from __future__ import annotations

import json
from typing import Any

from rlhfkit.data.hh import hh_to_messages, messages_to_hh
from rlhfkit.data.records import Prompt


def uses_chat_template(tokenizer: Any, use_chat_template: bool) -> bool:
    """True if prompts will be rendered with the tokenizer's chat template."""
    return bool(use_chat_template and getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, prompt: Prompt, use_chat_template: bool) -> str:
    """The policy-side text of ``prompt``, ending where the assistant's response begins."""
    if uses_chat_template(tokenizer, use_chat_template):
        messages = prompt if isinstance(prompt, list) else hh_to_messages(prompt)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt if isinstance(prompt, str) else messages_to_hh(prompt)


def render_response(tokenizer: Any, response: str, use_chat_template: bool) -> str:
    """The policy-side text of a response to train on (SFT): the text followed by the EOS token.

    Under a chat template the leading space of HH responses is dropped, as the template puts the
    response on its own line.
    """
    text = response.strip() if uses_chat_template(tokenizer, use_chat_template) else response
    return text + tokenizer.eos_token


_SYSTEM_START = "{#- rlhfkit system_prompt: "
_SYSTEM_END = " end rlhfkit system_prompt -#}"


def _escaped_json(text: str) -> str:
    """`text` as a JSON string in which no ``{``, ``}``, ``%`` or ``#`` appears (each a ``\\u`` escape):
    safe inside a Jinja comment and as a Jinja string literal, whose escapes are JSON's."""
    literal = json.dumps(text, ensure_ascii=False)
    for char in "{}%#":
        literal = literal.replace(char, f"\\u{ord(char):04x}")
    return literal


def system_prompt_of(tokenizer: Any) -> str | None:
    """The system prompt that :func:`set_system_prompt` wrote into `tokenizer`'s chat template, if any."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template.startswith(_SYSTEM_START):
        return None
    return json.loads(template[len(_SYSTEM_START) :].split(" -#}", 1)[0])


def set_system_prompt(tokenizer: Any, system_prompt: str | None) -> None:
    """Make `tokenizer`'s chat template start every conversation that has no system message with
    `system_prompt` (None: leave the template as it is). A system prompt set before is replaced, not
    stacked; a conversation that has its own system message keeps it. The prompt is also kept, as
    JSON, in a comment on the template's first line (:func:`system_prompt_of` reads it).

    Raises:
        ValueError: `tokenizer` has no chat template (a system message cannot be rendered), or
            `system_prompt` is empty.
    """
    if system_prompt is None:
        return
    if not system_prompt.strip():
        raise ValueError("system_prompt is empty: leave it out (null) for no system message")
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        raise ValueError(
            "system_prompt needs a tokenizer with a chat template, and this one has none: use a chat "
            "model (e.g. smollm2-135m-instruct) or leave system_prompt out"
        )
    if template.startswith(_SYSTEM_START):
        template = template.split(_SYSTEM_END, 1)[1]
    literal = _escaped_json(system_prompt)
    tokenizer.chat_template = (
        f"{_SYSTEM_START}{literal} -#}}\n"
        f"{{%- if not messages or messages[0]['role'] != 'system' %}}"
        f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}"
        f"{{%- endif %}}{{#-{_SYSTEM_END}{template}"
    )
