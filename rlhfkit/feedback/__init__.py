"""The human-feedback app: annotators label model responses in the browser; the labels become preference
pairs for ``rlhfkit reward`` and ``rlhfkit dpo``.

Modules, in the order data flows:

    (items arrive as item records, rlhfkit.data.items: from JSONL, from `rlhfkit generate`, which
    samples them with the rollout code outside this package, or from the loop)
    tables.py      the SQLAlchemy tables; db.py: engines, Alembic migrations, the schema version
    store.py       projects, annotators, items, reading labels back; queue.py: claim, submit, skip
    judgements.py  labels (A/B better, tie, both bad, rankings), strengths, pairwise outcomes
    imports.py     labelled comparisons (summarize-from-feedback, TRL) as relabel or control items
    controls.py    control items mixed into every queue at a rate; known answers from an annotator's labels
    api.py         the FastAPI app and the page in static/ (plain HTML/CSS/JS)
    agreement.py   pairwise agreement, Krippendorff's alpha, position bias, agreement with original labels
    quality.py     per annotator: control accuracy, agreement with the majority, speed, the flag
    admin.py       the admin page (/admin) and its routes
    export.py      majority-vote preference pairs (TRL JSONL) and raw records
    cli.py         ``rlhfkit annotate ...``

Nothing here imports torch, transformers, the models or the rollout code. The names below are imported
on first use, so ``import rlhfkit.feedback`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Store": "rlhfkit.feedback.store",
    "create_app": "rlhfkit.feedback.api",
    "ItemRecord": "rlhfkit.data.items",
    "ResponseRecord": "rlhfkit.data.items",
    "read_items": "rlhfkit.data.items",
    "Judgement": "rlhfkit.feedback.judgements",
    "majority_pairs": "rlhfkit.feedback.export",
    "project_stats": "rlhfkit.feedback.agreement",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlhfkit.feedback' has no attribute {name!r}")
