"""Unpaired feedback for KTO: preference pairs taken apart into unpaired examples, and the mismatched
pairs that estimate KTO's reference point.

Format ``kto`` (TRL's unpaired preference format; what ``rlhfkit annotate export --format kto`` writes):
``{"prompt": str | messages, "completion": str | messages, "label": true | false}``, read by
:func:`rlhfkit.data.loaders.load_unpaired`. ``label`` is a JSON boolean: ``true`` marks the completion
desirable, ``false`` undesirable. Preference pairs (``trl``, ``hh``, ``tldr``) give two examples each:
the chosen reply desirable, the rejected one undesirable. The loader keeps a pair file's records as
`PreferencePair`, so that the train/eval split (and ``data.train_part``) is made over pairs, exactly as
for reward or DPO training on the same file; :func:`unpaired_examples` takes them apart after the
split. :func:`mismatched_partners` picks, for each example, another example's completion to pair with
its prompt: the rows that estimate KTO's reference point. Imports nothing beyond the standard library.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

from rlhfkit.data.records import PreferencePair, UnpairedExample


def unpaired_examples(records: Sequence[UnpairedExample | PreferencePair]) -> list[UnpairedExample]:
    """Unpaired examples in order: an `UnpairedExample` as it is, a `PreferencePair` as two (its chosen
    reply desirable, then its rejected reply undesirable, same prompt, group and meta)."""
    out: list[UnpairedExample] = []
    for r in records:
        if isinstance(r, PreferencePair):
            out.append(UnpairedExample(r.prompt, r.chosen, True, r.group, r.meta))
            out.append(UnpairedExample(r.prompt, r.rejected, False, r.group, r.meta))
        else:
            out.append(r)
    return out


def _prompt_key(example: UnpairedExample) -> str:
    return example.prompt if isinstance(example.prompt, str) else json.dumps(example.prompt, sort_keys=True)


def mismatched_partners(examples: Sequence[UnpairedExample], seed: int) -> list[int]:
    """For each example i, the index j of another example whose prompt differs: KTO scores completion j
    as a reply to prompt i (a mismatched pair) to estimate its reference point.

    The examples are shuffled once with ``random.Random(seed)``; each takes the completion of the next
    example in that order with a different prompt (wrapping around), so the partners are fixed for the
    run and every completion serves about once.

    Raises:
        ValueError: fewer than two distinct prompts (no mismatched pair exists).
    """
    keys = [_prompt_key(e) for e in examples]
    if len(set(keys)) < 2:
        raise ValueError(
            f"KTO needs at least two different prompts to form mismatched pairs, got {len(set(keys))}"
        )
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    partners = [0] * len(examples)
    for position, i in enumerate(order):
        step = 1
        while keys[order[(position + step) % len(order)]] == keys[i]:
            step += 1
        partners[i] = order[(position + step) % len(order)]
    return partners
