"""The human-feedback app: annotators label model responses in the browser; the labels become preference
pairs for ``rlhfkit reward`` and ``rlhfkit dpo``.

Modules, in the order data flows:

    items.py       item records (a prompt with K >= 2 responses) and reading them from JSONL
    generate.py    items sampled from a policy with the rollout code (the only place torch is used,
                   imported lazily)
    tables.py      the SQLAlchemy tables; db.py: engines, Alembic migrations, the schema version
    store.py       projects, annotators, items, reading labels back; queue.py: claim, submit, skip
    judgements.py  labels (A/B better, tie, both bad, rankings), strengths, pairwise outcomes
    api.py         the FastAPI app and the page in static/ (plain HTML/CSS/JS)
    agreement.py   pairwise agreement, Krippendorff's alpha, position bias
    export.py      majority-vote preference pairs (TRL JSONL) and raw records
    cli.py         ``rlhfkit annotate ...``

Nothing here imports torch. The names below are imported on first use, so ``import rlhfkit.feedback``
stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Store": "rlhfkit.feedback.store",
    "create_app": "rlhfkit.feedback.api",
    "ItemRecord": "rlhfkit.feedback.items",
    "ResponseRecord": "rlhfkit.feedback.items",
    "read_items": "rlhfkit.feedback.items",
    "Judgement": "rlhfkit.feedback.judgements",
    "majority_pairs": "rlhfkit.feedback.export",
    "project_stats": "rlhfkit.feedback.agreement",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlhfkit.feedback' has no attribute {name!r}")
