"""How a prompt and a response become the text a policy reads.

With ``use_chat_template`` and a tokenizer that has a chat template (SmolLM2's ChatML), an HH prompt is
parsed into turns and rendered by the template; otherwise the prompt text is used as is (an HH prompt
already ends with ``"\\n\\nAssistant:"``). Reward models always read the HH-style dialogue string from
:func:`rlhfkit.data.hh.join_prompt_response`, whatever the policy's template.
"""

from __future__ import annotations

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
