"""What an annotator can say about an item, and how it reads as pairwise outcomes.

Notation: an item has K responses at *positions* 0..K-1 (the order they were loaded in). Each annotator
sees them in their own random *display order*, left to right, lettered A, B, C, ...; the page and the
API speak in letters, the store and the exports in positions.

Labels:
    ``a_better`` / ``b_better``  (K = 2) the left / right response is better
    ``ranking``                  (any K) a full ranking, best first, as letters (``["C", "A", "B"]``)
    ``tie``                      the responses are about as good as each other
    ``both_bad``                 none is acceptable (for K > 2: all bad)

A strength (``slight`` / ``clear`` / ``strong``) goes with every strict preference (``a_better``,
``b_better``, ``ranking``) and with nothing else.

For agreement and export every annotation is read as one *outcome* per pair of positions ``i < j``:
``">"`` (i better), ``"<"`` (j better), ``"tie"`` or ``"both_bad"``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from itertools import combinations
from typing import Any

LABELS = ("a_better", "b_better", "ranking", "tie", "both_bad")
PREFERENCES = ("a_better", "b_better", "ranking")
STRENGTHS = ("slight", "clear", "strong")
# Strength -> margin of the Bradley-Terry loss, as Llama 2's "small" margin scale (Touvron et al. 2023,
# Table 28: significantly better 1, better 2/3, slightly better 1/3).
MARGINS = {"slight": 1 / 3, "clear": 2 / 3, "strong": 1.0}
MAX_NOTE = 5000
LETTERS = string.ascii_uppercase


class InvalidJudgement(ValueError):
    """A judgement that does not fit the item it is about (wrong label for K, bad ranking, ...)."""


@dataclass(frozen=True)
class Judgement:
    """One annotator's answer about one item, in display letters (see the module docstring); a rating
    item's answer is its `rating` instead (`rlhfkit.feedback.ratings.check_answer`)."""

    label: str | None
    strength: str | None = None
    ranking: tuple[str, ...] | None = None
    note: str = ""
    rating: dict[str, Any] | None = None


def clean_note(note: str | None) -> str:
    """The note stripped.

    Raises:
        InvalidJudgement: a note over `MAX_NOTE` characters.
    """
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise InvalidJudgement(f"note is {len(note)} characters long; the limit is {MAX_NOTE}")
    return note


def normalise(judgement: Judgement, k: int) -> Judgement:
    """Check `judgement` against an item with `k` responses and return its canonical form.

    ``a_better`` / ``b_better`` become a two-letter ``ranking`` only in `ranking_positions`; here they
    keep their label, with ``ranking`` set to the letters best first. The note is stripped.

    Raises:
        InvalidJudgement: an unknown label or strength; ``a_better``/``b_better`` with K > 2; a ranking
            that is not every letter of the item exactly once; a preference without a strength, or a
            strength or ranking given with ``tie``/``both_bad``; a note over `MAX_NOTE` characters.
    """
    label, strength = judgement.label, judgement.strength
    if label not in LABELS:
        raise InvalidJudgement(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    note = clean_note(judgement.note)
    letters = tuple(LETTERS[:k])
    if label not in PREFERENCES:
        if strength is not None or judgement.ranking:
            raise InvalidJudgement(f"{label!r} takes no strength and no ranking")
        return Judgement(label, None, None, note)
    if strength not in STRENGTHS:
        raise InvalidJudgement(
            f"a preference needs a strength, one of {', '.join(STRENGTHS)}; got {strength!r}"
        )
    if label in ("a_better", "b_better"):
        if k != 2:
            raise InvalidJudgement(f"{label!r} is for two responses; this item has {k}: send a ranking")
        ranking = ("A", "B") if label == "a_better" else ("B", "A")
        if judgement.ranking and tuple(judgement.ranking) != ranking:
            raise InvalidJudgement(f"ranking {list(judgement.ranking)} contradicts {label!r}")
        return Judgement(label, strength, ranking, note)
    ranking = tuple(judgement.ranking or ())
    if sorted(ranking) != sorted(letters):
        raise InvalidJudgement(
            f"a ranking lists every response once, best first: {list(letters)} in some order"
        )
    return Judgement(label, strength, ranking, note)


def ranking_positions(judgement: Judgement, display_order: list[int]) -> list[int] | None:
    """The response positions, best first, of a normalised judgement (None for tie / both_bad)."""
    if judgement.ranking is None:
        return None
    return [display_order[LETTERS.index(letter)] for letter in judgement.ranking]


def letters_of(ranking: list[int] | None, display_order: list[int]) -> tuple[str, ...] | None:
    """The inverse of `ranking_positions`: positions best first -> display letters best first."""
    if ranking is None:
        return None
    return tuple(LETTERS[display_order.index(position)] for position in ranking)


def pair_outcomes(label: str, ranking: list[int] | None, k: int) -> dict[tuple[int, int], str]:
    """One outcome per pair of positions ``(i, j)``, ``i < j``: ``">"``, ``"<"``, ``"tie"`` or ``"both_bad"``.

    `ranking` is the stored ranking (positions, best first); it must be set for a preference label.
    """
    if label not in PREFERENCES:
        return {pair: label for pair in combinations(range(k), 2)}
    rank = {position: r for r, position in enumerate(ranking)}
    return {(i, j): ">" if rank[i] < rank[j] else "<" for i, j in combinations(range(k), 2)}


def left_won(ranking: list[int], display_order: list[int]) -> list[bool]:
    """For each pair of responses, whether the one shown further left was ranked higher (position bias)."""
    shown_at = {position: column for column, position in enumerate(display_order)}
    rank = {position: r for r, position in enumerate(ranking)}
    out = []
    for i, j in combinations(range(len(display_order)), 2):
        left, right = (i, j) if shown_at[i] < shown_at[j] else (j, i)
        out.append(rank[left] < rank[right])
    return out
