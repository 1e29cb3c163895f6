"""Label records, one line each of ``round-XX/labels.jsonl``, and the trainable pairs they give::

    {"round", "prompt", "response_a", "response_b", "label": "a"|"b"|"tie"|"both_bad",
     "annotator": "simulated" or the person's name, "gold_prob_a": float|null, "flipped": bool|null}

``gold_prob_a`` and ``flipped`` are set by the simulated labeler only (``rlhfkit.loop.labeler``).
Imports no torch: the human labeler (``rlhfkit.loop.human``) uses it beside the feedback app.
"""

from __future__ import annotations

from typing import Any

from rlhfkit.data import PreferencePair

LABELS = ("a", "b", "tie", "both_bad")


def label_record(
    round_no: int,
    pair: dict[str, Any],
    label: str,
    annotator: str,
    gold_prob_a: float | None = None,
    flipped: bool | None = None,
) -> dict[str, Any]:
    """One ``labels.jsonl`` record for a selected ``pair`` ({"prompt", "response_a", "response_b", ...})."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    return {
        "round": round_no,
        "prompt": pair["prompt"],
        "response_a": pair["response_a"],
        "response_b": pair["response_b"],
        "label": label,
        "annotator": annotator,
        "gold_prob_a": gold_prob_a,
        "flipped": flipped,
    }


def preference_pairs(labels: list[dict[str, Any]]) -> list[PreferencePair]:
    """The trainable pairs of label records: "a" and "b" become (chosen, rejected); ties and both-bad are
    left out, as ``rlhfkit annotate export`` leaves them out by default. With several annotators on one
    pair every vote is a pair, so the Bradley-Terry loss sees the annotators' share of votes."""
    out = []
    for r in labels:
        if r["label"] in ("a", "b"):
            chosen, rejected = (r["response_a"], r["response_b"])[:: 1 if r["label"] == "a" else -1]
            out.append(PreferencePair(r["prompt"], chosen, rejected))
    return out
