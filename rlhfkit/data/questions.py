"""What annotators are asked about an item: compare its responses, or rate a single one.

An item's ``question`` is None (the default: annotators compare the K >= 2 responses) or a *rating* of
its one response:

    ``{"type": "thumbs"}``                                     thumbs up or down
    ``{"type": "likert", "axes": ["overall", ...], "scale": 7}``   a score 1..scale on each named axis

Axis names are 1 to 40 characters of letters, digits, ``_`` and ``-`` (summarize-from-feedback's axes
are ``overall``, ``accuracy``, ``coverage``, ``coherence``; Stiennon et al. 2020, Appendix C.5); at most
`MAX_AXES`, each once. ``scale`` is 2 to 10 (default 7).

The answer to a rating, an annotation's *rating*, is ``{"thumbs": "up" | "down"}`` or ``{axis: score}``
with every axis of the question and an integer score in 1..scale (`check_rating`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

THUMBS, LIKERT = "thumbs", "likert"
QUESTION_TYPES = (THUMBS, LIKERT)
THUMB_VALUES = ("up", "down")
DEFAULT_SCALE = 7
MAX_SCALE = 10
MAX_AXES = 12
_AXIS = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class InvalidQuestion(ValueError):
    """A question or a rating that cannot be used; `field` names the part at fault (``"question.axes"``,
    ``"rating.coverage"``, ...) and `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"field {field!r}: {reason}")


def _shown(value: Any) -> str:
    """A value for an error message, never long (messages go back to the client; the input is not
    echoed whole)."""
    if isinstance(value, str) and len(value) <= 20:
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**6:
        return str(value)
    return f"a {type(value).__name__}"


def parse_question(value: Any, field: str = "question") -> dict[str, Any] | None:
    """Validate a question (see the module docstring) and return its canonical form: None for a
    comparison, ``{"type": "thumbs"}``, or ``{"type": "likert", "axes": [...], "scale": n}``.

    Raises:
        InvalidQuestion: naming ``field`` (or ``field.type``, ``field.axes``, ``field.scale``) for a
            value that is not an object, an unknown type or key, axes missing, empty, repeated, badly
            named or more than `MAX_AXES`, or a scale that is not an integer in 2..`MAX_SCALE`.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidQuestion(field, f"wrong type: expected an object, got {type(value).__name__}")
    kind = value.get("type")
    if kind not in QUESTION_TYPES:
        raise InvalidQuestion(
            f"{field}.type", f"expected one of {', '.join(QUESTION_TYPES)}, got {_shown(kind)}"
        )
    allowed = {"type"} if kind == THUMBS else {"type", "axes", "scale"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidQuestion(field, f"unknown key {str(unknown[0])[:40]!r} for a {kind} question")
    if kind == THUMBS:
        return {"type": THUMBS}
    axes = value.get("axes")
    if not isinstance(axes, list) or not axes:
        raise InvalidQuestion(f"{field}.axes", "a likert question names 1 or more axes, as a list")
    if len(axes) > MAX_AXES:
        raise InvalidQuestion(f"{field}.axes", f"at most {MAX_AXES} axes, got {len(axes)}")
    for axis in axes:
        if not isinstance(axis, str) or not _AXIS.match(axis):
            raise InvalidQuestion(
                f"{field}.axes", f"bad axis name {str(axis)[:40]!r}: 1 to 40 letters, digits, '_' or '-'"
            )
    if len(set(axes)) != len(axes):
        raise InvalidQuestion(f"{field}.axes", "an axis is named twice")
    scale = value.get("scale", DEFAULT_SCALE)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 2 <= scale <= MAX_SCALE:
        raise InvalidQuestion(f"{field}.scale", f"an integer from 2 to {MAX_SCALE}, got {_shown(scale)}")
    return {"type": LIKERT, "axes": list(axes), "scale": scale}


def describe(question: Mapping[str, Any] | None) -> str:
    """A short name for a question: ``"comparison"``, ``"thumbs"`` or ``"likert 1-7: overall, accuracy"``."""
    if question is None:
        return "comparison"
    if question["type"] == THUMBS:
        return THUMBS
    return f"likert 1-{question['scale']}: {', '.join(question['axes'])}"


def check_rating(rating: Any, question: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an annotation's rating against the item's (canonical) question; returns a clean copy.

    Raises:
        InvalidQuestion: ``field`` ``"rating"`` for a missing rating or one that is not an object,
            ``"rating.<key>"`` for an unknown key, a missing axis, a thumbs value other than up/down, or a
            score that is not an integer in 1..scale (``true`` and ``5.0`` are not scores).
    """
    if rating is None:
        raise InvalidQuestion("rating", f"missing: this item asks for a {describe(question)} rating")
    if not isinstance(rating, Mapping):
        raise InvalidQuestion("rating", f"wrong type: expected an object, got {type(rating).__name__}")
    expected = ["thumbs"] if question["type"] == THUMBS else list(question["axes"])
    for key in rating:
        if key not in expected:
            raise InvalidQuestion(
                f"rating.{str(key)[:40]}", f"unknown key; this item asks for {', '.join(expected)}"
            )
    for key in expected:
        if key not in rating:
            raise InvalidQuestion(f"rating.{key}", f"missing: this item asks for {', '.join(expected)}")
    if question["type"] == THUMBS:
        if rating["thumbs"] not in THUMB_VALUES:
            raise InvalidQuestion("rating.thumbs", f"'up' or 'down', got {_shown(rating['thumbs'])}")
        return {"thumbs": rating["thumbs"]}
    scale = question["scale"]
    for axis in expected:
        score = rating[axis]
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= scale:
            raise InvalidQuestion(f"rating.{axis}", f"an integer from 1 to {scale}, got {_shown(score)}")
    return {axis: rating[axis] for axis in expected}
