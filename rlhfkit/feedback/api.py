"""The annotation app's HTTP API (FastAPI) and the page it serves.

Authentication: every ``/api`` route but ``/api/health`` takes ``Authorization: Bearer <token>``; a
missing or unknown token gets 401, and an address that sent too many unknown tokens gets 429 for a
while. Annotator tokens reach only the annotator routes, which are scoped to the annotator's own project
and queue; admin tokens reach only ``/api/admin``. Using the other role's routes gets 403.

Annotator routes::

    GET  /api/me                  who am I: project, guidelines, progress
    POST /api/next                my current item (claimed now if I hold none); 204 when none is left
                                  (`task_json`: turns, the document if any, lettered responses)
    POST /api/annotations         label an item I was given; 200 once committed ("created": false on a
                                  resubmission of the same answer, 409 for a different one)
    POST /api/skip                skip an item I was given
    GET  /api/my/annotations      my own labels

Admin routes (``{name}`` is a project; a name may contain ``/``)::

    GET  /api/admin/projects
    GET  /api/admin/projects/{name:path}/stats    (`quality.project_report`: `agreement.project_stats`
                                  with "original_labels", and per-annotator "quality")
    GET  /api/admin/projects/{name:path}/export?format=trl|raw|kto[&include_ties=true&include_both_bad=true]
                                  (kto: [&kto_axis=overall&kto_desirable=5&kto_undesirable=3])
    POST /api/admin/projects/{name:path}/annotators   {"name": ...} -> {"token": ...}
    POST /api/admin/projects/{name:path}/annotators/rotate-token   {"name": ...} -> {"token": ...}
    POST /api/admin/projects/{name:path}/annotators/deactivate     {"name": ...} -> {"released": n}
    POST /api/admin/projects/{name:path}/annotators/reactivate     {"name": ...}
    POST /api/admin/projects/{name:path}/items        [item records, as in a JSONL file]
    GET  /api/admin/overview, POST .../annotators/revoke, and the admin page at /admin: `admin`

Every export takes ``exclude_flagged=true`` (leave out flagged annotators' labels, `quality`); its reply
then says how many it left out, in ``X-Flagged-Labels-Left-Out`` (and ``X-Flagged-Annotators``, always).

Errors are JSON ``{"detail": message}``: 404 unknown project or item not in your queue, 409 conflict,
413 a request body over the limit (refused before it is read whole, authenticated or not), 422 invalid
input (the message names the field; the input is never echoed back), 503 too busy (retry).

Behind a reverse proxy that serves the app under a path prefix (``/annotate/``), ``create_app``'s
``root_path`` (``serve --root-path``) is that prefix: the page asks for its files and the API under it.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rlhfkit.data.hh import hh_to_messages
from rlhfkit.data.items import InvalidItem, parse_item, text_problem
from rlhfkit.data.questions import MAX_AXES
from rlhfkit.feedback.admin import admin_router
from rlhfkit.feedback.db import HEAD
from rlhfkit.feedback.export import FORMATS, majority_pairs, raw_records
from rlhfkit.feedback.export_kto import kto_records
from rlhfkit.feedback.judgements import LETTERS, InvalidJudgement, Judgement
from rlhfkit.feedback.quality import export_annotations, project_report
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


MAX_BODY_BYTES = 4 * 1024 * 1024  # default request-body limit (`create_app(max_body_bytes=...)`)
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL: a larger one is no item, on either database


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("a name cannot be only spaces")
    return value.strip()


Text = Annotated[str, AfterValidator(_storable)]
ProjectName = Text  # a project name in a path: text no database can store is 422, never a 500
ItemId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]  # strict: `true` is not 1


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: ItemId
    label: Text | None = Field(default=None, max_length=16)  # a comparison's; a rating item takes `rating`
    rating: dict[str, Any] | None = Field(default=None, max_length=MAX_AXES)  # checked: ratings.check_answer
    strength: Text | None = Field(default=None, max_length=16)
    ranking: list[Text] | None = Field(default=None, max_length=len(LETTERS))
    note: Text = Field(default="", max_length=5000)
    duration_ms: int | None = Field(default=None, strict=True, ge=0, le=86_400_000)


class SkipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: ItemId


class AnnotatorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[Text, AfterValidator(_named)] = Field(min_length=1, max_length=100)


_bearer = HTTPBearer(auto_error=False)


class FailedAuthLimit:
    """At most ``max_failures`` unknown tokens per client address in ``window`` seconds; past that the
    address gets 429 until its oldest failure leaves the window, without a database look-up, so that a
    flood of wrong tokens cannot slow the annotators down. Behind a reverse proxy on this machine the
    address is the real client's (uvicorn reads ``X-Forwarded-For`` from a proxy on 127.0.0.1). Memory
    stays bounded: at most ``max_clients`` addresses are tracked (the stalest are forgotten)."""

    def __init__(
        self,
        max_failures: int = 30,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window, self.max_clients, self.clock = (
            max_failures,
            window,
            max_clients,
            clock,
        )
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        times = self._failures.get(client)
        if not times:
            return 0.0
        now = self.clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.max_failures:
            return 0.0
        return times[0] + self.window - now

    def failed(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= self.max_clients:
            del self._failures[next(iter(self._failures))]  # the longest tracked
        self._failures.setdefault(client, deque()).append(self.clock())


def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The admin or annotator of the request's bearer token.

    Raises:
        HTTPException: 401 for a missing or unknown token; 429 for a client past its failed-token limit
            (`FailedAuthLimit`).
    """
    limit: FailedAuthLimit = request.app.state.auth_limit
    client = request.client.host if request.client else "?"
    wait = limit.retry_after(client)
    if wait > 0:
        raise HTTPException(
            429,
            "too many unknown tokens from this address; try again later",
            {"Retry-After": str(math.ceil(wait))},
        )
    found = request.app.state.store.authenticate(credentials.credentials) if credentials else None
    if found is None:
        if credentials is not None:
            limit.failed(client)
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
    """What the page gets for one item: ``{"item_id": int, "turns": [{"role", "content"}, ...],
    "document": {"text", "title"?, "source"?} | None, "responses": [{"letter", "text"}, ...]}``, the
    responses lettered in display order, and for a rating item (one response) its ``"question"``:
    ``{"type": "thumbs"}`` or ``{"type": "likert", "axes", "scale"}``. Nothing else: not the item's
    kind, its original labels, its metadata or its responses' stored positions."""
    return {
        "item_id": task.item_id,
        "turns": prompt_turns(task.prompt),
        "document": task.document,
        "responses": [{"letter": LETTERS[n], "text": t} for n, t in enumerate(task.responses)],
        **({"question": task.question} if task.question is not None else {}),
    }


def create_app(
    store: Store,
    root_path: str = "",
    max_body_bytes: int = MAX_BODY_BYTES,
    auth_limit: FailedAuthLimit | None = None,
) -> FastAPI:
    """The app for one store: the API above plus the page at ``/``.

    Args:
        root_path: the path prefix a reverse proxy serves the app under (``"/annotate"``), or "": the page
            asks for its files and the API under it, and the app answers both with the prefix (a proxy
            that forwards it) and without it (a proxy that strips it).
        max_body_bytes: larger request bodies get 413 before they are read whole.
        auth_limit: the failed-token limit (default: `FailedAuthLimit()`).
    Raises:
        ValueError: a ``root_path`` that does not start with ``/`` or ends with one.
    """
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise ValueError(
            f"root_path must look like /annotate (a leading /, no trailing /), got {root_path!r}"
        )
    app = FastAPI(title="rlhfkit annotate", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.state.store = store
    app.state.auth_limit = auth_limit or FailedAuthLimit()
    page_html = (STATIC / "index.html").read_text().replace("__ROOT__", html.escape(root_path))

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
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if root_path:
        app.add_middleware(StripPrefix, prefix=root_path)

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(page_html)

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
        ranking = tuple(body.ranking) if body.ranking else None
        judgement = Judgement(body.label, body.strength, ranking, body.note, body.rating)
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

    @app.get("/api/admin/projects/{name:path}/stats")
    def stats(name: ProjectName, _: AdminDep) -> dict:
        return project_report(store, name)

    @app.get("/api/admin/projects/{name:path}/export")
    def export(
        name: ProjectName,
        _: AdminDep,
        format: str = "trl",
        include_ties: bool = False,
        include_both_bad: bool = False,
        kto_axis: str | None = None,
        kto_desirable: float | None = None,
        kto_undesirable: float | None = None,
        exclude_flagged: bool = False,
    ) -> Response:
        if format not in FORMATS:
            raise HTTPException(422, f"format must be one of {', '.join(FORMATS)}")
        items, annotations = store.items(name), store.annotations(name)
        annotations, flagged = export_annotations(store, name, items, annotations, exclude_flagged)
        headers = {"X-Flagged-Annotators": str(len(flagged.names))}
        if flagged.excluded:
            headers["X-Flagged-Labels-Left-Out"] = str(flagged.left_out)
        if format == "trl":
            pairs, _report = majority_pairs(items, annotations, include_ties, include_both_bad)
            records = [p.to_dict() for p in pairs]
        elif format == "kto":
            try:
                records, _report = kto_records(items, annotations, kto_axis, kto_desirable, kto_undesirable)
            except ValueError as err:
                raise HTTPException(422, str(err)) from None
        else:
            records = list(raw_records(items, annotations, store.skips(name)))
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return Response(body, media_type="application/x-ndjson", headers=headers)

    @app.post("/api/admin/projects/{name:path}/annotators")
    def add_annotator(name: ProjectName, body: AnnotatorIn, _: AdminDep) -> dict:
        return {"annotator": body.name, "token": store.add_annotator(name, body.name)}

    @app.post("/api/admin/projects/{name:path}/annotators/rotate-token")
    def rotate_token(name: ProjectName, body: AnnotatorIn, _: AdminDep) -> dict:
        return {"annotator": body.name, "token": store.rotate_token(name, body.name)}

    @app.post("/api/admin/projects/{name:path}/annotators/deactivate")
    def deactivate(name: ProjectName, body: AnnotatorIn, _: AdminDep) -> dict:
        return {"annotator": body.name, "active": False, "released": store.set_active(name, body.name, False)}

    @app.post("/api/admin/projects/{name:path}/annotators/reactivate")
    def reactivate(name: ProjectName, body: AnnotatorIn, _: AdminDep) -> dict:
        store.set_active(name, body.name, True)
        return {"annotator": body.name, "active": True}

    @app.post("/api/admin/projects/{name:path}/items")
    def add_items(name: ProjectName, body: list[dict[str, Any]], _: AdminDep) -> dict:
        records = []
        for n, raw in enumerate(body):
            try:
                records.append(parse_item(raw))
            except InvalidItem as err:
                raise HTTPException(422, f"item {n}: field {err.field!r}: {err.reason}") from None
        added, existing = store.load_items(name, records)
        return {"added": added, "existing": existing}

    app.include_router(admin_router(store, root_path, AdminDep, AnnotatorIn, ProjectName))
    return app


async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming the fields at fault and why, without the input (it may be megabytes, or a secret)."""
    problems = []
    for e in error.errors()[:10]:
        where = ".".join(str(part) for part in e.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {str(e.get('msg', 'invalid'))[:200]}")
    return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)


class StripPrefix:
    """ASGI middleware: a request path under ``prefix`` is routed as the path below it."""

    def __init__(self, app, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix or path.startswith(self.prefix + "/")):
            scope = {**scope, "path": path[len(self.prefix) :] or "/"}
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 Payload Too Large, before any route,
    authentication included, reads it whole. A ``Content-Length`` over the limit is refused at once; a
    body without one (chunked) is counted as it arrives and refused once it passes the limit."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(self.max_bytes)(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted():
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # answer now; the route sees the client go away
                    refused = True
                    await _too_large(self.max_bytes)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message) -> None:
            if not refused:  # after the 413 nothing else may be sent
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not refused:  # a disconnect we staged: the 413 is the answer
                raise


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body over {limit} bytes"}, status_code=413, headers={"Connection": "close"}
    )


def _handler(status: int, headers: dict[str, str] | None = None):
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    return handle
