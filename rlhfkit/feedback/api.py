"""The annotation app's HTTP API (FastAPI) and the page it serves.

Authentication: every ``/api`` route but ``/api/health`` takes ``Authorization: Bearer <token>``; a
missing or unknown token gets 401. Annotator tokens reach only the annotator routes, which are scoped to
the annotator's own project and queue; admin tokens reach only ``/api/admin``. Using the other role's
routes gets 403.

Annotator routes::

    GET  /api/me                  who am I: project, guidelines, progress
    POST /api/next                my current item (claimed now if I hold none); 204 when none is left
    POST /api/annotations         label an item I was given; 200 once committed ("created": false on a
                                  resubmission of the same answer, 409 for a different one)
    POST /api/skip                skip an item I was given
    GET  /api/my/annotations      my own labels

Admin routes (``{name}`` is a project)::

    GET  /api/admin/projects
    GET  /api/admin/projects/{name}/stats
    GET  /api/admin/projects/{name}/export?format=trl|raw[&include_ties=true&include_both_bad=true]
    POST /api/admin/projects/{name}/annotators   {"name": ...} -> {"token": ...}
    POST /api/admin/projects/{name}/items        [item records, as in a JSONL file]

Errors are JSON ``{"detail": message}``: 404 unknown project or item not in your queue, 409 conflict,
422 invalid input, 503 too busy (retry).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from rlhfkit.data.hh import hh_to_messages
from rlhfkit.feedback.agreement import project_stats
from rlhfkit.feedback.db import HEAD
from rlhfkit.feedback.export import FORMATS, majority_pairs, raw_records
from rlhfkit.feedback.items import InvalidItem, parse_item
from rlhfkit.feedback.judgements import LETTERS, InvalidJudgement, Judgement
from rlhfkit.feedback.store import Store
from rlhfkit.feedback.views import Busy, Conflict, NotFound, Principal, Task

STATIC = Path(__file__).resolve().parent / "static"
SECURITY_HEADERS = {
    # Model text is untrusted: the page puts it in the DOM as text only, and this policy is the second
    # line of defence (no inline script, no script or image from elsewhere).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: int
    label: str = Field(max_length=16)
    strength: str | None = Field(default=None, max_length=16)
    ranking: list[str] | None = Field(default=None, max_length=len(LETTERS))
    note: str = Field(default="", max_length=5000)
    duration_ms: int | None = Field(default=None, ge=0, le=86_400_000)


class SkipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: int


class AnnotatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)


_bearer = HTTPBearer(auto_error=False)


def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The admin or annotator of the request's bearer token.

    Raises:
        HTTPException: 401 for a missing or unknown token.
    """
    found = request.app.state.store.authenticate(credentials.credentials) if credentials else None
    if found is None:
        why = "missing bearer token" if credentials is None else "unknown token"
        raise HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})
    return found


def annotator(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The request's annotator.

    Raises:
        HTTPException: 401 (see `principal`), 403 for an admin token.
    """
    if who.role != "annotator":
        raise HTTPException(403, "this route is for annotators")
    return who


def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The request's admin.

    Raises:
        HTTPException: 401 (see `principal`), 403 for an annotator token.
    """
    if who.role != "admin":
        raise HTTPException(403, "this route is for admins")
    return who


AnnotatorDep = Annotated[Principal, Depends(annotator)]
AdminDep = Annotated[Principal, Depends(admin)]


def prompt_turns(prompt: Any) -> list[dict[str, str]]:
    """A prompt as chat turns: messages as they are, strings through `hh_to_messages` (HH dialogues
    become turns, plain text one user turn)."""
    if isinstance(prompt, list):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    return hh_to_messages(prompt)


def task_json(task: Task) -> dict[str, Any]:
    """What the page gets for one item: turns, and the responses lettered in display order."""
    return {
        "item_id": task.item_id,
        "turns": prompt_turns(task.prompt),
        "responses": [{"letter": LETTERS[n], "text": t} for n, t in enumerate(task.responses)],
    }


def create_app(store: Store) -> FastAPI:
    """The app for one store: the API above plus the page at ``/``."""
    app = FastAPI(title="rlhfkit annotate", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.store = store

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api"):
            response.headers["Cache-Control"] = "no-store"
        return response

    for error, status in ((NotFound, 404), (Conflict, 409), (InvalidJudgement, 422), (InvalidItem, 422)):
        app.add_exception_handler(error, _handler(status))
    app.add_exception_handler(Busy, _handler(503, {"Retry-After": "1"}))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    def health() -> dict:
        return {"ok": True, "schema": HEAD}

    # --- annotators ---------------------------------------------------------------------------------------

    @app.get("/api/me")
    def me(who: AnnotatorDep) -> dict:
        project = store.project_by_id(who.project_id)
        return {
            "annotator": who.name,
            "project": {"name": project.name, "guidelines": project.guidelines, "overlap": project.overlap},
            "progress": store.queue.progress(who.id).__dict__,
        }

    @app.post("/api/next", response_model=None)
    def next_item(who: AnnotatorDep) -> dict | Response:
        task = store.queue.next_task(who.id)
        if task is None:
            return Response(status_code=204)
        return {**task_json(task), "progress": store.queue.progress(who.id).__dict__}

    @app.post("/api/annotations")
    def submit(body: SubmitIn, who: AnnotatorDep) -> dict:
        judgement = Judgement(
            body.label, body.strength, tuple(body.ranking) if body.ranking else None, body.note
        )
        annotation_id, created = store.queue.submit(who.id, body.item_id, judgement, body.duration_ms)
        return {"annotation_id": annotation_id, "created": created}

    @app.post("/api/skip")
    def skip(body: SkipIn, who: AnnotatorDep) -> dict:
        store.queue.skip(who.id, body.item_id)
        return {"skipped": body.item_id}

    @app.get("/api/my/annotations")
    def my_annotations(who: AnnotatorDep) -> list[dict]:
        return store.queue.own_annotations(who.id)

    # --- admins ---------------------------------------------------------------------------------------------

    @app.get("/api/admin/projects")
    def projects(_: AdminDep) -> list[dict]:
        return [
            {"name": p.name, "overlap": p.overlap, "created_at": p.created_at.isoformat() + "Z"}
            for p in store.projects()
        ]

    @app.get("/api/admin/projects/{name}/stats")
    def stats(name: str, _: AdminDep) -> dict:
        project = store.project(name)
        return project_stats(store.items(name), store.annotations(name), store.skips(name), project.overlap)

    @app.get("/api/admin/projects/{name}/export")
    def export(
        name: str,
        _: AdminDep,
        format: str = "trl",
        include_ties: bool = False,
        include_both_bad: bool = False,
    ) -> Response:
        if format not in FORMATS:
            raise HTTPException(422, f"format must be one of {', '.join(FORMATS)}")
        items, annotations = store.items(name), store.annotations(name)
        if format == "trl":
            pairs, _report = majority_pairs(items, annotations, include_ties, include_both_bad)
            records = [p.to_dict() for p in pairs]
        else:
            records = list(raw_records(items, annotations, store.skips(name)))
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return Response(body, media_type="application/x-ndjson")

    @app.post("/api/admin/projects/{name}/annotators")
    def add_annotator(name: str, body: AnnotatorIn, _: AdminDep) -> dict:
        return {"annotator": body.name, "token": store.add_annotator(name, body.name)}

    @app.post("/api/admin/projects/{name}/items")
    def add_items(name: str, body: list[dict[str, Any]], _: AdminDep) -> dict:
        records = []
        for n, raw in enumerate(body):
            try:
                records.append(parse_item(raw))
            except InvalidItem as err:
                raise HTTPException(422, f"item {n}: field {err.field!r}: {err.reason}") from None
        added, existing = store.load_items(name, records)
        return {"added": added, "existing": existing}

    return app


def _handler(status: int, headers: dict[str, str] | None = None):
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    return handle
