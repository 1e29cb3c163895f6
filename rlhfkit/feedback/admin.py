"""The admin page (``/admin``) and the admin routes it needs beyond `rlhfkit.feedback.api`'s.

Routes (admin token only: an annotator's token gets 403, none or an unknown one 401)::

    GET  /admin                                   the page (static/admin.html, admin.js)
    GET  /api/admin/overview                      every project with its progress, and the export formats
    POST /api/admin/projects/{name:path}/annotators/revoke   {"name": ...} -> {"released": n}

The page also uses ``/api/admin/projects/{name}/stats`` (its ``"quality"`` block,
`quality.project_report`), ``.../export`` (with ``exclude_flagged``), and the annotator routes
(``rotate-token``, ``deactivate``, ``reactivate``).

A project's progress (`project_progress`): ``items``; ``controls`` (items with a known answer) and
whether they are ``mixed_in`` (`controls.mixed_in`); ``labels``; ``complete`` (ordinary items with
``overlap`` labels or more) and ``open`` (ordinary items with fewer: still to be labelled; a mixed-in
control is neither, since every annotator gets it); ``annotators`` and ``active_annotators``.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (local names) as objects.
import html
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from rlhfkit.feedback.controls import CONTROL, mixed_in
from rlhfkit.feedback.export import FORMATS
from rlhfkit.feedback.store import Store

STATIC = Path(__file__).resolve().parent / "static"


def project_progress(store: Store, name: str) -> dict[str, Any]:
    """One project's counts (see the module docstring), JSON-ready.

    Raises:
        NotFound: no such project.
    """
    project = store.project(name)
    items, annotations = store.items(name), store.annotations(name)
    labels = Counter(a.item_id for a in annotations)
    controls = {i.id for i in items if i.original is not None and i.original.kind == CONTROL}
    ordinary = [i.id for i in items if not (mixed_in(project.control_rate) and i.id in controls)]
    people = store.annotators(name)
    return {
        "name": project.name,
        "overlap": project.overlap,
        "control_rate": project.control_rate,
        "min_control_accuracy": project.min_control_accuracy,
        "items": len(items),
        "controls": len(controls),
        "controls_mixed_in": mixed_in(project.control_rate),
        "labels": len(annotations),
        "complete": sum(1 for i in ordinary if labels[i] >= project.overlap),
        "open": sum(1 for i in ordinary if labels[i] < project.overlap),
        "annotators": len(people),
        "active_annotators": sum(1 for _, _, active in people if active),
        "created_at": project.created_at.isoformat() + "Z",
    }


def admin_router(
    store: Store, root_path: str, admin_dep: Any, annotator_body: Any, project_name: Any
) -> APIRouter:
    """The routes above, for `api.create_app` to include (`admin_dep`: its admin dependency;
    `annotator_body`: its ``{"name"}`` body model; `project_name`: its type of a project name in a path,
    422 for text no database can store)."""
    router = APIRouter()
    page = (STATIC / "admin.html").read_text().replace("__ROOT__", html.escape(root_path))

    @router.get("/admin", include_in_schema=False)
    def admin_page() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/api/admin/overview")
    def overview(_: admin_dep) -> dict:
        return {"projects": [project_progress(store, p.name) for p in store.projects()], "formats": FORMATS}

    @router.post("/api/admin/projects/{name:path}/annotators/revoke")
    def revoke(name: project_name, body: annotator_body, _: admin_dep) -> dict:
        return {"annotator": body.name, "revoked": True, "released": store.revoke_token(name, body.name)}

    return router
