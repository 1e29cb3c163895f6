"""Loading preference, prompt-only and SFT records from files, with a validation error for every bad record.

Formats (see ARCHITECTURE.md, "Data formats we speak"):

- ``trl``: ``{"prompt", "chosen", "rejected"[, "margin"]}``. The prompt is a string or a list of chat
  messages; chosen/rejected are strings or lists of messages whose last one is the assistant reply (the
  messages before it, if any, must equal the prompt). Without a ``prompt`` key, chosen and rejected must
  be whole conversations that share all but their last message, which becomes the prompt.
- ``hh``: ``{"chosen", "rejected"}`` full HH-RLHF dialogues, split by `split_hh_dialogue`. An empty final
  assistant turn is kept (in HH-harmless, silence is a real, annotated reply); elsewhere an empty
  response is an error.
- ``tldr``: OpenAI's summarize-from-feedback comparisons (Reddit TL;DR and CNN/DM; Stiennon et al. 2020),
  ``{"info", "summaries", "choice", "worker", "extra"}``, read by :mod:`rlhfkit.data.tldr` with the
  `TLDROptions` given as ``tldr=`` (default: the paper's query format cut to 2000 characters, no margin,
  the preferred summary as the SFT target); each record's ``group`` is its post id, so that the split
  keeps every post on one side. `load_prompts` gives each post's query once.
- ``kto``: ``{"prompt", "completion", "label"}`` unpaired feedback (TRL's unpaired preference format),
  read by `load_unpaired`: the completion is a string or messages like chosen above; ``label`` is
  ``true`` (desirable) or ``false`` (undesirable). `load_unpaired` reads pair files too (see
  :mod:`rlhfkit.data.unpaired` for taking pairs apart into unpaired examples).

A CSV/TSV table, or any file whose keys are not these names, is read through a `Columns` mapping
(``columns=``: field -> column, and a row filter; see :mod:`rlhfkit.data.tables`); a table's prompt
cell is one user message.

Every problem is a `DataError` naming the path, line and field (for a table: the row and column). With
``skip_invalid=False`` the first one is raised; with ``skip_invalid=True`` each is recorded in
`LoadReport.skipped` and loading goes on.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rlhfkit.data.errors import InvalidRecord as _Invalid
from rlhfkit.data.errors import LoadReport
from rlhfkit.data.hh import HHFormatError, split_hh_dialogue
from rlhfkit.data.reading import load_report, read_records
from rlhfkit.data.records import PreferencePair, Prompt, PromptOnly, SFTExample, UnpairedExample
from rlhfkit.data.tables import Columns
from rlhfkit.data.tldr import TLDROptions, is_tldr_row, pair_parser, prompt_parser, sft_parser

__all__ = [
    "load_preferences",
    "load_prompts",
    "load_sft",
    "load_unpaired",
    "read_records",
    "train_eval_split",
]

_FORMATS = ("auto", "trl", "hh", "tldr")
UNPAIRED_FORMATS = ("auto", "kto", "trl", "hh", "tldr")
_ROLES = ("system", "user", "assistant")
T = TypeVar("T")
_TLDR = TLDROptions()  # the defaults: the query cut to 2000 characters, no margin, preferred summaries
_COLUMNS = Columns()  # no mapping, no filter


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _required(record: dict, field: str) -> Any:
    value = record.get(field)
    if value is None:
        raise _Invalid(field, "missing field")
    return value


def _messages(value: list, field: str) -> list[dict[str, str]]:
    """Validated chat messages, normalised to ``{"role", "content"}``."""
    out = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or message.get("role") not in _ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise _Invalid(
                field,
                f"bad message: item {i} should be {{'role': 'user'|'assistant'|'system', 'content': str}},"
                f" got {str(message)[:60]}",
            )
        out.append({"role": message["role"], "content": message["content"]})
    return out


def _prompt(record: dict) -> Prompt:
    value = _required(record, "prompt")
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid("prompt", "empty prompt")
        return value
    if isinstance(value, list):
        if not value:
            raise _Invalid("prompt", "empty prompt")
        return _messages(value, "prompt")
    raise _Invalid("prompt", f"wrong type: expected a string or a list of messages, got {_type_name(value)}")


def _response(record: dict, field: str) -> tuple[list[dict[str, str]] | None, str]:
    """``(messages before the reply or None, reply text)`` of a string or conversational response."""
    value = _required(record, field)
    if isinstance(value, str):
        prefix, text = None, value
    elif isinstance(value, list) and value:
        messages = _messages(value, field)
        if messages[-1]["role"] != "assistant":
            raise _Invalid(field, "bad message: the last message should be the assistant's reply")
        prefix, text = messages[:-1], messages[-1]["content"]
    else:
        raise _Invalid(field, f"wrong type: expected a string or a list of messages, got {_type_name(value)}")
    if not text.strip():
        raise _Invalid(field, "empty response")
    return prefix, text


def _check_prefix(field: str, prefix: list | None, prompt: Prompt) -> None:
    if prefix and prefix != prompt:
        raise _Invalid(field, "conversation does not match prompt: all messages but the last must equal it")


def _margin(record: dict) -> float | None:
    value = record.get("margin")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Invalid("margin", f"not a finite number: {str(value)[:40]!r}")
    return float(value)


def _hh_text(record: dict, field: str) -> str:
    value = _required(record, field)
    if not isinstance(value, str):
        raise _Invalid(field, f"wrong type: expected an HH dialogue string, got {_type_name(value)}")
    return value


def _split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    try:
        return split_hh_dialogue(chosen, rejected)
    except HHFormatError as e:
        raise _Invalid(e.field, str(e)) from None


def _preference_trl(record: dict) -> PreferencePair:
    chosen_prefix, chosen = _response(record, "chosen")
    rejected_prefix, rejected = _response(record, "rejected")
    if record.get("prompt") is not None:
        prompt = _prompt(record)
        _check_prefix("chosen", chosen_prefix, prompt)
        _check_prefix("rejected", rejected_prefix, prompt)
    elif chosen_prefix:  # implicit prompt: two whole conversations
        if rejected_prefix != chosen_prefix:
            raise _Invalid("rejected", "conversations differ: all messages but the last must be shared")
        prompt = chosen_prefix
    else:
        raise _Invalid("prompt", "missing field")
    return PreferencePair(prompt, chosen, rejected, _margin(record))


def _preference_hh(record: dict) -> PreferencePair:
    prompt, chosen, rejected = _split_hh(_hh_text(record, "chosen"), _hh_text(record, "rejected"))
    return PreferencePair(prompt, chosen, rejected, _margin(record))


def _preference_any(record: dict, tldr: TLDROptions) -> PreferencePair:
    """A preference record of any format, told apart per record like ``format="auto"``."""
    if is_tldr_row(record):
        return pair_parser(tldr)(record)
    trl = record.get("prompt") is not None or isinstance(record.get("chosen"), list)
    return _preference_trl(record) if trl else _preference_hh(record)


def _prompt_only(tldr: TLDROptions) -> Callable[[dict], PromptOnly | None]:
    tldr_prompt = prompt_parser(tldr)  # one prompt per post

    def parse(record: dict) -> PromptOnly | None:
        if is_tldr_row(record):
            return tldr_prompt(record)
        if record.get("chosen") is None:
            return PromptOnly(_prompt(record))
        return PromptOnly(_preference_any(record, tldr).prompt)

    return parse


def _sft(tldr: TLDROptions) -> Callable[[dict], SFTExample | None]:
    tldr_sft = sft_parser(tldr)

    def parse(record: dict) -> SFTExample | None:
        if is_tldr_row(record):
            return tldr_sft(record)
        field = next((f for f in ("response", "completion") if record.get(f) is not None), None)
        if field is None:
            if record.get("chosen") is None:
                raise _Invalid("response", "missing field (expected 'response', 'completion' or 'chosen')")
            pair = _preference_any(record, tldr)
            return SFTExample(pair.prompt, pair.chosen)
        if record.get("label") is not None and record["label"] is not True:
            # an unpaired (KTO) record: imitating an undesirable completion would train the opposite
            raise _Invalid(
                "label",
                "SFT imitates every completion, and this one is not labelled desirable (label true): train "
                "KTO on the file (`rlhfkit kto`), or keep only label-true records for SFT",
            )
        prompt = _prompt(record)
        prefix, text = _response(record, field)
        _check_prefix(field, prefix, prompt)
        return SFTExample(prompt, text)

    return parse


def _unpaired(record: dict) -> UnpairedExample:
    prompt = _prompt(record)
    prefix, completion = _response(record, "completion")
    _check_prefix("completion", prefix, prompt)
    label = record.get("label")
    if label is None:
        raise _Invalid("label", "missing field (true: desirable, false: undesirable)")
    if not isinstance(label, bool):
        raise _Invalid(
            "label", f"wrong type: expected true or false, got {_type_name(label)} {str(label)[:20]!r}"
        )
    return UnpairedExample(prompt, completion, label)


def _unpaired_or_pair(tldr: TLDROptions) -> Callable[[dict], UnpairedExample | PreferencePair]:
    """A record told apart per record: one with ``label`` (or ``completion`` and no ``chosen``) is
    unpaired, any other a preference pair as ``format="auto"`` reads it."""

    def parse(record: dict) -> UnpairedExample | PreferencePair:
        if "label" in record or ("completion" in record and "chosen" not in record):
            return _unpaired(record)
        return _preference_any(record, tldr)

    return parse


def load_preferences(
    path: str | os.PathLike,
    format: str = "auto",
    skip_invalid: bool = False,
    tldr: TLDROptions = _TLDR,
    columns: Columns = _COLUMNS,
) -> LoadReport:
    """Load `PreferencePair` records from a ``trl``, ``hh`` or ``tldr`` file (see the module docstring).

    ``format="auto"`` decides from the first record: ``tldr`` if it has ``info`` or ``summaries`` (and
    neither ``prompt`` nor ``chosen``), ``trl`` if it has a ``prompt`` or its ``chosen`` is a list of
    messages, else ``hh``.

    Raises:
        DataError: (with path, line and field) for a malformed JSON line or a line that is not an object;
            a missing ``'prompt'``/``'chosen'``/``'rejected'`` field; a field of the wrong type or a bad
            chat message; an empty or whitespace-only ``'chosen'``/``'rejected'`` response (not for HH,
            see above); an HH pair whose prompts differ (field ``'rejected'``, reason
            ``"HH prompts differ: ..."``) or a dialogue without ``"\\n\\nAssistant:"``; a ``'margin'``
            that is not a finite number; a bad ``tldr`` row (see `rlhfkit.data.tldr`). Unless
            `skip_invalid`, in which case they are counted in ``report.skipped``. Also raised (always)
            for a file with no records, or no valid ones.
        FileNotFoundError: see `read_records`.
        ValueError: for an unknown `format`.
    """
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {_FORMATS}, got {format!r}")

    def choose(first: dict) -> Callable[[dict], PreferencePair]:
        fmt = format
        if fmt == "auto" and is_tldr_row(first):
            fmt = "tldr"
        elif fmt == "auto":
            fmt = "trl" if "prompt" in first or isinstance(first.get("chosen"), list) else "hh"
        return {"trl": _preference_trl, "hh": _preference_hh, "tldr": pair_parser(tldr)}[fmt]

    return load_report(path, choose, skip_invalid, columns=columns)


def load_prompts(
    path: str | os.PathLike,
    skip_invalid: bool = False,
    tldr: TLDROptions = _TLDR,
    columns: Columns = _COLUMNS,
) -> LoadReport:
    """Load `PromptOnly` records: ``{"prompt"}`` records, or the prompt of preference records (``tldr``
    rows included: the query, once per post, its later comparisons still validated).

    A preference record (one with ``chosen``) is validated as a whole pair, exactly as
    `load_preferences` does, and gives its prompt: an HH file feeds PPO as is, and the records kept (and
    so any `train_eval_split` of them) are the same as for reward or DPO training on that file.

    Raises:
        DataError: for a malformed or non-object line, a missing, empty or wrongly typed ``'prompt'``, or
            a ``'chosen'`` that is not an HH dialogue or conversation (skipped instead if `skip_invalid`);
            for a file with no (valid) records.
        FileNotFoundError: see `read_records`.
    """
    return load_report(path, lambda first: _prompt_only(tldr), skip_invalid, columns=columns)


def load_sft(
    path: str | os.PathLike,
    skip_invalid: bool = False,
    tldr: TLDROptions = _TLDR,
    columns: Columns = _COLUMNS,
) -> LoadReport:
    """Load `SFTExample` records: ``{prompt, response}``, ``{prompt, completion}``, or preference records
    (``trl``, ``hh`` or ``tldr``, validated as whole pairs like `load_preferences`) with the chosen reply
    as the response (for ``tldr`` the preferred summary, one per comparison, or with
    ``tldr.sft_target="ref"`` the human reference, one per post that has one).

    Raises:
        DataError: for a malformed or non-object line, a missing, empty or wrongly typed ``'prompt'`` or
            response field (``'response'``, ``'completion'`` or ``'chosen'``), a ``'chosen'`` that is
            not an HH dialogue, or an unpaired (KTO) record whose ``'label'`` is not ``true`` (SFT would
            imitate an undesirable completion) (skipped instead if `skip_invalid`); for a file with no
            (valid) records.
        FileNotFoundError: see `read_records`.
    """
    return load_report(path, lambda first: _sft(tldr), skip_invalid, columns=columns)


def load_unpaired(
    path: str | os.PathLike,
    format: str = "auto",
    skip_invalid: bool = False,
    tldr: TLDROptions = _TLDR,
    columns: Columns = _COLUMNS,
) -> LoadReport:
    """Load KTO's records: `UnpairedExample` from a ``kto`` file, `PreferencePair` from a ``trl``, ``hh``
    or ``tldr`` one (pairs stay whole, so that a split of them is the split reward or DPO training makes
    on the same file; :func:`rlhfkit.data.unpaired.unpaired_examples` takes them apart after it).
    ``format="auto"`` decides per record: one with ``label`` (or ``completion`` and no ``chosen``) is
    ``kto``, any other is read like ``load_preferences(format="auto")``.

    Raises:
        DataError: (with path, line and field) for a malformed line; a missing, empty or wrongly typed
            ``'prompt'`` or ``'completion'``; a completion conversation whose messages before the reply
            differ from the prompt; a ``'label'`` that is missing or not ``true``/``false``; anything
            `load_preferences` raises for a pair. Unless `skip_invalid`, in which case they are counted
            in ``report.skipped``. Always for a file with no (valid) records.
        FileNotFoundError: see `read_records`.
        ValueError: for an unknown `format`.
    """
    if format not in UNPAIRED_FORMATS:
        raise ValueError(f"format must be one of {UNPAIRED_FORMATS}, got {format!r}")
    if format in _FORMATS[1:]:
        return load_preferences(path, format, skip_invalid, tldr, columns)
    parse = _unpaired if format == "kto" else _unpaired_or_pair(tldr)
    return load_report(path, lambda first: parse, skip_invalid, columns=columns)


def train_eval_split(records: Sequence[T], eval_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Split `records` into ``(train, eval)`` after a deterministic shuffle with ``random.Random(seed)``.

    ``eval`` is the first ``round(n * eval_fraction)`` shuffled records, at least 1 when
    ``eval_fraction > 0`` and ``n >= 2``, and at most ``n - 1`` so that train is never emptied by
    rounding; ``train`` is the rest. Both keep the shuffled order; `records` is not modified.

    Raises:
        ValueError: if `eval_fraction` is not in ``[0, 1)``.
    """
    if isinstance(eval_fraction, bool) or not 0 <= eval_fraction < 1:  # also rejects NaN
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    n = len(shuffled)
    n_eval = round(n * eval_fraction)
    if eval_fraction > 0 and n >= 2:
        n_eval = max(1, n_eval)
    n_eval = min(n_eval, max(n - 1, 0))
    return shuffled[n_eval:], shuffled[:n_eval]
