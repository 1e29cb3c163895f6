"""The data section of every stage's config, and the train/eval split all stages share.

A stage reads its records with a loader of :mod:`rlhfkit.data.loaders`, splits them with
:func:`~rlhfkit.data.loaders.train_eval_split` (the same ``split_seed``, the same split in every stage)
and keeps the part its config asks for. Records that carry a ``group`` (the post id of a
summarize-from-feedback comparison, format ``tldr``) are split by group instead, with
:func:`group_train_eval_split`, so that no post has records on both sides. Imports no model code.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from rlhfkit.config import option
from rlhfkit.data.errors import DataError, LoadReport
from rlhfkit.data.loaders import train_eval_split
from rlhfkit.data.tables import Columns
from rlhfkit.data.tldr import DEFAULT_MAX_QUERY_CHARS, TLDROptions

HH_DATA = "../shared/data/hh-rlhf/harmless-base-2000.jsonl.gz"
T = TypeVar("T")


@dataclass
class DataConfig:
    """Where the records come from and how they are split."""

    path: str = option(
        HH_DATA, "JSONL / JSON / parquet / CSV / TSV file (each gzipped or not), or a hub dataset id"
    )
    format: Literal["auto", "trl", "hh", "tldr"] = option(
        "auto",
        "record format: trl {prompt,chosen,rejected}, hh, tldr (summarize-from-feedback comparisons, split "
        "by post)",
    )
    skip_invalid: bool = option(False, "count and report bad records instead of stopping at the first")
    eval_fraction: float = option(0.1, "share of records (of posts, for tldr) held out for evaluation")
    split_seed: int = option(0, "seed of the train/eval split (same seed, same split in every stage)")
    train_part: Literal["all", "first_half", "second_half"] = option(
        "all",
        "which part of the training split to use: the two halves are disjoint (a proxy reward model on "
        "one, a judge on the other)",
    )
    max_train: int | None = option(None, "use at most this many training records (after the split)")
    max_eval: int | None = option(None, "use at most this many held-out records")
    max_query_chars: int = option(
        DEFAULT_MAX_QUERY_CHARS,
        "tldr: longest query in characters; a longer post is cut at a word boundary to fit (never a summary)",
    )
    margin_from_confidence: bool = option(
        False, "tldr: margin |confidence - 5| / 4 from the labeler's 1-9 confidence (reward training)"
    )
    sft_target: Literal["preferred", "ref"] = option(
        "preferred",
        "tldr: SFT on the preferred summary of every comparison, or on each post's human reference (ref)",
    )

    fields: dict[str, str] = option(
        {},
        "which column holds each field: prompt, response (or completion), chosen, rejected, system, "
        "margin; e.g. data.fields.prompt=instruction (a CSV/TSV prompt cell is one user message)",
    )
    filter: dict[str, str | list[str]] = option(
        {}, "keep only rows whose column has this value (or one of a list): data.filter.intent=track_order"
    )
    system_prompt: str | None = option(
        None,
        "system message of every prompt (the assistant's persona and rules): rendered by the policy's chat "
        "template in SFT, sampling, RL and eval, and saved in the trained model's chat template",
    )

    def __post_init__(self) -> None:
        self.tldr_options()  # a bad max_query_chars fails when the config is read
        self.columns()  # and an unknown field name

    def columns(self) -> Columns:
        """The field mapping and row filter of this section, as the loaders take them."""
        return Columns(dict(self.fields), dict(self.filter))

    def tldr_options(self) -> TLDROptions:
        """The ``tldr`` options of this section, as the loaders take them."""
        return TLDROptions(self.max_query_chars, self.margin_from_confidence, self.sft_target)


def _unit_hash(seed: int, group: Hashable) -> float:
    """A number in [0, 1) fixed by ``(seed, group)``: the first 8 bytes of ``sha256(f"{seed}:{group}")``."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_train_eval_split(
    records: Sequence[T], eval_fraction: float, seed: int, key: Callable[[T], Hashable] | None = None
) -> tuple[list[T], list[T]]:
    """Split `records` into ``(train, eval)`` by group: all records of a group (``key(record)``, by
    default ``record.group``) fall on the same side.

    A group goes to eval when ``sha256(f"{seed}:{group}")``, read as a number in [0, 1), is below
    `eval_fraction`. Each group's side depends on the seed and the group alone, so the split is
    deterministic and the same for every file or stage that holds that group (an SFT set of reference
    summaries, a subset of the posts, puts each post where the pairs of that post are), and eval holds
    `eval_fraction` of the groups in expectation rather than exactly (861 posts at 0.1: about 86 ± 9).
    Like `train_eval_split`, with ``eval_fraction > 0`` and at least 2 groups eval gets at least one
    group (the lowest hash) and train keeps at least one (the highest).

    Both sides list their groups in hash order, each group's records together in input order (so that a
    cut at a group boundary, as `load_split` makes for ``train_part``, splits by group too); `records` is
    not modified.

    Raises:
        ValueError: if `eval_fraction` is not in ``[0, 1)``.
    """
    if isinstance(eval_fraction, bool) or not 0 <= eval_fraction < 1:  # also rejects NaN
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    key = key or (lambda record: record.group)
    members: dict[Hashable, list[T]] = {}
    for record in records:
        members.setdefault(key(record), []).append(record)
    ranked = sorted(members, key=lambda g: (_unit_hash(seed, g), str(g)))
    n_eval = sum(_unit_hash(seed, g) < eval_fraction for g in ranked)  # the lowest hashes go to eval
    if eval_fraction > 0 and len(ranked) >= 2:
        n_eval = min(max(n_eval, 1), len(ranked) - 1)
    train = [r for g in ranked[n_eval:] for r in members[g]]
    held_out = [r for g in ranked[:n_eval] for r in members[g]]
    return train, held_out


def _group_of(record: Any) -> Hashable | None:
    return getattr(record, "group", None)


def _halves_by_group(train: list) -> tuple[list, list]:
    """The two halves of a group-ordered training split, cut at the first group boundary at or after
    ``ceil(n / 2)`` records: no group in both."""
    cut = (len(train) + 1) // 2
    while 0 < cut < len(train) and _group_of(train[cut]) == _group_of(train[cut - 1]):
        cut += 1
    return train[:cut], train[cut:]


def load_split(data: DataConfig, loader: Callable[..., LoadReport]) -> tuple[list, list]:
    """Load records with ``loader(path, skip_invalid=..., tldr=..., columns=data.columns())`` and split them
    into (train, eval), both capped; ``data.train_part`` keeps the first or second half of the training split
    (the first half holds ``ceil(n / 2)`` records).

    Records with a ``group`` (``tldr`` data: the post id) are split by `group_train_eval_split`
    instead: ``eval_fraction`` of the posts (in expectation) are held out, no post is on both sides,
    the halves of ``train_part`` are cut at a post boundary (the first holds ``ceil(n / 2)`` records or
    the few more that finish its last post), and each part is then shuffled with ``split_seed``, so
    that ``max_train`` / ``max_eval`` keep a sample of the records, not of the posts. Records without a
    group (every other format) are split exactly as before.

    Skipped records, and rows that ``data.filter`` left out, are reported on stdout, never dropped
    silently.

    Raises:
        rlhfkit.data.DataError: bad input (file, line, field), unless ``data.skip_invalid``; also when
            some records have a group and others not (a file that mixes ``tldr`` rows with others).
    """
    report = loader(
        data.path, skip_invalid=data.skip_invalid, tldr=data.tldr_options(), columns=data.columns()
    )
    if report.skipped or report.filtered:
        print(f"[rlhfkit] {report.summary()}", flush=True)
    grouped = [_group_of(r) is not None for r in report.records]
    if any(grouped) and not all(grouped):
        raise DataError(
            data.path, None, None, "mixed formats: some records have a group (post id) and others not"
        )
    if not any(grouped):
        train, held_out = train_eval_split(report.records, data.eval_fraction, data.split_seed)
        half = (len(train) + 1) // 2
        train = {"all": train, "first_half": train[:half], "second_half": train[half:]}[data.train_part]
        return train[: data.max_train], held_out[: data.max_eval]
    train, held_out = group_train_eval_split(report.records, data.eval_fraction, data.split_seed)
    if data.train_part != "all":
        train = _halves_by_group(train)[data.train_part == "second_half"]
    rng = random.Random(data.split_seed)
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train[: data.max_train], held_out[: data.max_eval]
