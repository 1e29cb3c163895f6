"""OpenAI's summarize-from-feedback comparisons (Reddit TL;DR and CNN/DM) as preference pairs and SFT records.

Source: the human feedback data of Stiennon et al. 2020, "Learning to summarize from human feedback"
(NeurIPS 2020; github:openai/summarize-from-feedback). Its comparison files hold one JSON object a line::

    {"info": {"id": "t3_4ne9lx", "subreddit": "relationships", "title": "...", "post": "..."},
     "summaries": [{"text": " Started dating ...", "policy": "sup4_ppo_rm4_t.7", "note": "ok"},
                   {"text": " Dating a girl ...", "policy": "ref", "note": "ok"}],
     "choice": 0, "worker": "M4bd...", "batch": "batch13", "split": "valid2", "extra": {"confidence": 3}}

CNN/DM rows have ``info.article`` (and ``info.site``) in place of ``info.post`` and ``info.subreddit``.
``choice`` is the index of the summary the labeler preferred; ``extra.confidence`` (optional) is on a
1-9 scale from "summary 0 is definitely better" (1) to "summary 1 is definitely better" (9); ``policy``
names the system that wrote a summary, ``"ref"`` being the human-written reference (the post's own
TL;DR, or the CNN/DM highlights); ``worker`` is the labeler's anonymous id. ``batch``, ``split`` and
``note`` are not used.

**The query** (the prompt of every record) is the paper's format for TL;DR::

    SUBREDDIT: r/{subreddit}
    TITLE: {title}
    POST: {post}
    TL;DR:

and, for CNN/DM (which has no subreddit; the headline in ``info.title`` is left out, as in the usual
CNN/DM task, because it is itself close to a summary)::

    ARTICLE: {article}

    TL;DR:

The post or article is stripped of surrounding whitespace and, if the query would be longer than
``max_query_chars`` characters (default 2000, about 512 GPT-2 tokens of English, the paper's context),
cut from its end at a word boundary (`truncate_words`) so that the whole query fits; the summaries are
never cut. Summaries are kept byte for byte (they usually start with a space), so that
``join_prompt_response(query, summary)`` is the query followed by the summary. An empty summary is kept
in a pair (some CNN/DM rows compare a model's empty output, which lost, with a real summary: a real
judgement), but is never an SFT target.

**Records.** A comparison gives a `PreferencePair`: the chosen summary is ``summaries[choice]``, the
rejected one the other. With ``margin_from_confidence=True`` its margin is the labeler's strength of
preference ``|confidence - 5| / 4``: 1.0 for "definitely better" (1 or 9), 0.75, 0.5, and 0.25 for
"slightly better" (4 or 6); else the margin is None (the reward loss then uses no margin). A comparison
also gives an `SFTExample` of the query and either the preferred summary (``target="preferred"``, one
per comparison) or the human reference (``target="ref"``, one per post that has a ``"ref"`` summary).
Every record's `group` is the post (or article) id ``info.id``, so that a train/eval split by group
(:func:`rlhfkit.data.split.group_train_eval_split`) keeps each post on one side; `meta` keeps the
labeler ``worker``, the ``confidence``, the post id and the summaries' policies.

**Errors.** A bad row is a `TLDRFormatError` (a ValueError naming the field), turned into a
`DataError` (path, line, field) by the loaders: a missing or non-object ``info``; a missing or empty
``info.id``; no ``info.post`` nor ``info.article``, or an empty one; a missing ``info.subreddit`` or
``info.title`` (TL;DR); a query header that alone exceeds ``max_query_chars`` (field ``info.title``);
``summaries`` missing or not a list of two objects; a missing ``summaries[i].text``, two empty ones
(field ``summaries``), or an empty one as the SFT target; a missing
``choice`` or one other than 0 or 1; an ``extra.confidence`` that is not an integer 1-9 or that
contradicts ``choice`` (1-4 go with choice 0, 6-9 with choice 1, 5 with either), or a missing one with
``margin_from_confidence``; a ``worker`` that is not a string.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from rlhfkit.data.errors import InvalidRecord, LoadReport
from rlhfkit.data.reading import load_report
from rlhfkit.data.records import PreferencePair, PromptOnly, SFTExample

__all__ = [
    "DEFAULT_MAX_QUERY_CHARS",
    "MIN_QUERY_CHARS",
    "TLDRFormatError",
    "TLDROptions",
    "confidence_margin",
    "is_tldr_row",
    "load_tldr",
    "load_tldr_sft",
    "pair_parser",
    "prompt_parser",
    "render_query",
    "sft_parser",
    "tldr_pair",
    "tldr_sft",
    "truncate_words",
]

DEFAULT_MAX_QUERY_CHARS = 2000
MIN_QUERY_CHARS = 64
REF_POLICY = "ref"
_TLDR_QUERY = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {text}\nTL;DR:"
_CNNDM_QUERY = "ARTICLE: {text}\n\nTL;DR:"
SFTTarget = Literal["preferred", "ref"]
T = TypeVar("T")


class TLDRFormatError(InvalidRecord):
    """A summarize-from-feedback row that cannot be used; `field` names the offending field
    (``"info.post"``, ``"summaries[1].text"``, ``"choice"``, ...)."""


def is_tldr_row(row: dict) -> bool:
    """Whether `row` looks like a summarize-from-feedback comparison: it has ``info`` or ``summaries``
    and neither ``prompt`` nor ``chosen`` (so that a row missing one of the two is still read, and
    reported, as this format, while a TRL record with an ``info`` column is not)."""
    return ("info" in row or "summaries" in row) and "prompt" not in row and "chosen" not in row


def truncate_words(text: str, max_chars: int) -> str:
    """`text` if it has at most `max_chars` characters, else its longest start of at most `max_chars`
    characters that ends at a word boundary, trailing whitespace removed. A first word longer than
    `max_chars` is cut inside the word (nothing else would fit). ``max_chars <= 0`` gives ``""``."""
    if len(text) <= max_chars:
        return text
    if max_chars <= 0:
        return ""
    cut = text[:max_chars]
    if not text[max_chars].isspace():  # the cut falls inside a word: drop that word
        last_space = max(cut.rfind(c) for c in " \t\n\r\f\v")
        if last_space > 0 and cut[:last_space].strip():
            cut = cut[:last_space]
    return cut.rstrip()


def _string(mapping: dict, key: str, field: str, *, nonempty: bool) -> str:
    value = mapping.get(key)
    if value is None:
        raise TLDRFormatError(field, "missing field")
    if not isinstance(value, str):
        raise TLDRFormatError(field, f"wrong type: expected a string, got {type(value).__name__}")
    if nonempty and not value.strip():
        raise TLDRFormatError(field, f"empty {key}")
    return value


def _info(row: dict) -> dict:
    info = row.get("info")
    if info is None:
        raise TLDRFormatError("info", "missing field")
    if not isinstance(info, dict):
        raise TLDRFormatError("info", f"wrong type: expected an object, got {type(info).__name__}")
    return info


def _check_max_query_chars(max_query_chars: int) -> None:
    if (
        isinstance(max_query_chars, bool)
        or not isinstance(max_query_chars, int)
        or max_query_chars < MIN_QUERY_CHARS
    ):
        raise ValueError(f"max_query_chars must be an integer >= {MIN_QUERY_CHARS}, got {max_query_chars!r}")


def render_query(info: dict, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> str:
    """The query of a row's ``info`` (see the module docstring), the post or article cut at a word
    boundary so that the query has at most `max_query_chars` characters.

    Raises:
        TLDRFormatError: for a missing or empty post/article, a missing subreddit or title (TL;DR), or a
            header (everything but the post) that alone has `max_query_chars` characters or more.
        ValueError: if `max_query_chars` is not an integer of at least `MIN_QUERY_CHARS` (64).
    """
    _check_max_query_chars(max_query_chars)
    if info.get("post") is None and info.get("article") is None:
        raise TLDRFormatError(
            "info.post", "missing field (expected 'post' for TL;DR or 'article' for CNN/DM)"
        )
    if info.get("post") is not None:
        text = _string(info, "post", "info.post", nonempty=True).strip()
        fields = {
            "subreddit": _string(info, "subreddit", "info.subreddit", nonempty=True).strip(),
            "title": _string(info, "title", "info.title", nonempty=False).strip(),
        }
        template = _TLDR_QUERY
    else:
        text = _string(info, "article", "info.article", nonempty=True).strip()
        fields, template = {}, _CNNDM_QUERY
    room = max_query_chars - len(template.format(text="", **fields))
    if room <= 0:
        raise TLDRFormatError(
            "info.title",
            f"query too long: without the post it has {max_query_chars - room} characters, "
            f"max_query_chars is {max_query_chars}",
        )
    return template.format(text=truncate_words(text, room), **fields)


def confidence_margin(confidence: int) -> float:
    """The margin of a 1-9 confidence: ``|confidence - 5| / 4`` (1 and 9 give 1.0, 4 and 6 give 0.25)."""
    return abs(confidence - 5) / 4


def _summaries(row: dict) -> list[dict]:
    summaries = row.get("summaries")
    if summaries is None:
        raise TLDRFormatError("summaries", "missing field")
    if not isinstance(summaries, list) or len(summaries) != 2:
        got = f"{len(summaries)} items" if isinstance(summaries, list) else type(summaries).__name__
        raise TLDRFormatError("summaries", f"not two summaries: expected a list of 2 objects, got {got}")
    for i, summary in enumerate(summaries):
        if not isinstance(summary, dict):
            raise TLDRFormatError(
                f"summaries[{i}]", f"wrong type: expected an object, got {type(summary).__name__}"
            )
        _string(summary, "text", f"summaries[{i}].text", nonempty=False)
        if summary.get("policy") is not None and not isinstance(summary["policy"], str):
            raise TLDRFormatError(f"summaries[{i}].policy", "wrong type: expected a string")
    if not any(summary["text"].strip() for summary in summaries):
        raise TLDRFormatError("summaries", "empty summaries: both texts are empty")
    return summaries


def _choice(row: dict) -> int:
    choice = row.get("choice")
    if choice is None:
        raise TLDRFormatError("choice", "missing field")
    if isinstance(choice, bool) or choice not in (0, 1):
        raise TLDRFormatError("choice", f"out of range: expected 0 or 1, got {str(choice)[:40]!r}")
    return int(choice)


def _confidence(row: dict, choice: int, required: bool) -> int | None:
    extra = row.get("extra")
    value = extra.get("confidence") if isinstance(extra, dict) else None
    if value is None:
        if required:
            raise TLDRFormatError("extra.confidence", "missing field (needed for margin_from_confidence)")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 9:
        raise TLDRFormatError(
            "extra.confidence", f"out of range: expected an integer 1-9, got {str(value)[:40]!r}"
        )
    if (choice == 0 and value > 5) or (choice == 1 and value < 5):
        raise TLDRFormatError(
            "extra.confidence",
            f"contradicts choice: confidence {value} favours summary {1 - choice}, choice is {choice}",
        )
    return value


def _worker(row: dict) -> str | None:
    worker = row.get("worker")
    if worker is not None and not isinstance(worker, str):
        raise TLDRFormatError("worker", f"wrong type: expected a string, got {type(worker).__name__}")
    return worker


def _parse(
    row: dict, max_query_chars: int, confidence_required: bool
) -> tuple[str, str, list[dict], int, dict]:
    """``(query, post id, summaries, choice, meta)`` of a fully validated row."""
    info = _info(row)
    post_id = _string(info, "id", "info.id", nonempty=True)
    query = render_query(info, max_query_chars)
    summaries = _summaries(row)
    choice = _choice(row)
    meta = {
        "post_id": post_id,
        "worker": _worker(row),
        "confidence": _confidence(row, choice, confidence_required),
    }
    return query, post_id, summaries, choice, meta


def tldr_pair(
    row: dict, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS, margin_from_confidence: bool = False
) -> PreferencePair:
    """The `PreferencePair` of one comparison row (see the module docstring): prompt the query, chosen
    ``summaries[choice]``, group the post id, meta ``{post_id, worker, confidence, chosen_policy,
    rejected_policy}``; margin ``|confidence - 5| / 4`` with `margin_from_confidence`, else None.

    Raises:
        TLDRFormatError: for a bad row (module docstring, "Errors").
        ValueError: for a bad `max_query_chars`.
    """
    query, post_id, summaries, choice, meta = _parse(row, max_query_chars, margin_from_confidence)
    chosen, rejected = summaries[choice], summaries[1 - choice]
    meta["chosen_policy"], meta["rejected_policy"] = chosen.get("policy"), rejected.get("policy")
    margin = confidence_margin(meta["confidence"]) if margin_from_confidence else None
    return PreferencePair(query, chosen["text"], rejected["text"], margin, group=post_id, meta=meta)


def tldr_sft(
    row: dict, target: SFTTarget = "preferred", max_query_chars: int = DEFAULT_MAX_QUERY_CHARS
) -> SFTExample | None:
    """The `SFTExample` of one comparison row: the query and the preferred summary
    (``target="preferred"``), or the human reference, the summary whose policy is ``"ref"``
    (``target="ref"``; None when neither summary is the reference). Group the post id; meta
    ``{post_id, worker, confidence, policy}``. The whole row is validated either way.

    Raises:
        TLDRFormatError: for a bad row (module docstring, "Errors").
        ValueError: for an unknown `target` or a bad `max_query_chars`.
    """
    if target not in ("preferred", "ref"):
        raise ValueError(f"target must be 'preferred' or 'ref', got {target!r}")
    query, post_id, summaries, choice, meta = _parse(row, max_query_chars, False)
    if target == "preferred":
        summary = summaries[choice]
    else:
        summary = next((s for s in summaries if s.get("policy") == REF_POLICY), None)
        if summary is None:
            return None
    if not summary["text"].strip():
        raise TLDRFormatError(f"summaries[{summaries.index(summary)}].text", "empty summary: no SFT target")
    meta["policy"] = summary.get("policy")
    return SFTExample(query, summary["text"], group=post_id, meta=meta)


@dataclass(frozen=True)
class TLDROptions:
    """How comparison rows become records: the options of `load_tldr` and `load_tldr_sft`, and of
    :mod:`rlhfkit.data.loaders` (``data.max_query_chars``, ``data.margin_from_confidence`` and
    ``data.sft_target`` of a stage config)."""

    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS
    margin_from_confidence: bool = False
    sft_target: SFTTarget = "preferred"

    def __post_init__(self) -> None:
        _check_max_query_chars(self.max_query_chars)
        if self.sft_target not in ("preferred", "ref"):
            raise ValueError(f"sft_target must be 'preferred' or 'ref', got {self.sft_target!r}")


def pair_parser(options: TLDROptions) -> Callable[[dict], PreferencePair]:
    """A row -> `PreferencePair` function (`tldr_pair` with `options`)."""

    def parse(row: dict) -> PreferencePair:
        return tldr_pair(row, options.max_query_chars, options.margin_from_confidence)

    return parse


def _first_per_post(make: Callable[[dict], T | None]) -> Callable[[dict], T | None]:
    """``make`` with every record after the first of its post (its `group`) replaced by None."""
    seen: set[str] = set()

    def parse(row: dict) -> T | None:
        record = make(row)
        if record is None or record.group in seen:
            return None
        seen.add(record.group)
        return record

    return parse


def sft_parser(options: TLDROptions) -> Callable[[dict], SFTExample | None]:
    """A row -> `SFTExample` function: the preferred summary of every row (``sft_target="preferred"``),
    or the human reference once per post (``"ref"``: None for a row without one or a later row of a post
    already given). Stateful: make a new one for each file."""

    def parse(row: dict) -> SFTExample | None:
        return tldr_sft(row, options.sft_target, options.max_query_chars)

    return parse if options.sft_target == "preferred" else _first_per_post(parse)


def prompt_parser(options: TLDROptions) -> Callable[[dict], PromptOnly | None]:
    """A row -> `PromptOnly` function giving each post's query once (None for its later rows, which are
    still validated as whole pairs): a post judged in several comparisons is one prompt to sample for,
    not several. Stateful: make a new one for each file."""

    def parse(row: dict) -> PromptOnly:
        pair = tldr_pair(row, options.max_query_chars)
        return PromptOnly(pair.prompt, group=pair.group)

    return _first_per_post(parse)


def load_tldr(
    path: str | os.PathLike,
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
    margin_from_confidence: bool = False,
    skip_invalid: bool = False,
) -> LoadReport:
    """Load a comparison file (JSONL, JSONL.gz, ...; see `rlhfkit.data.read_records`) as `PreferencePair`
    records, one per row, by `tldr_pair`.

    Raises:
        DataError: (path, line, field) for a malformed line or a bad row (module docstring, "Errors"),
            unless `skip_invalid`, in which case each is counted in ``report.skipped``; always for a
            file with no (valid) records.
        FileNotFoundError: see `rlhfkit.data.read_records`.
        ValueError: for a bad `max_query_chars`.
    """
    parse = pair_parser(TLDROptions(max_query_chars, margin_from_confidence))  # fails before any row does
    return load_report(path, lambda first: parse, skip_invalid, "no records")


def load_tldr_sft(
    path: str | os.PathLike,
    target: SFTTarget = "preferred",
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
    skip_invalid: bool = False,
) -> LoadReport:
    """Load a comparison file as `SFTExample` records by `tldr_sft`: with ``target="preferred"`` one per
    row (the preferred summary; what `rlhfkit.data.load_sft` gives for these files too), with
    ``target="ref"`` one per post that has a ``"ref"`` summary (its first row; rows without a reference
    give nothing, and are still validated).

    Raises:
        DataError: as `load_tldr`; also when no row has a reference summary (``target="ref"``).
        FileNotFoundError: see `rlhfkit.data.read_records`.
        ValueError: for an unknown `target` or a bad `max_query_chars`.
    """
    parse = sft_parser(TLDROptions(max_query_chars, sft_target=target))
    return load_report(
        path,
        lambda first: parse,
        skip_invalid,
        f"no records: no row has a summary with policy {REF_POLICY!r}",
    )
