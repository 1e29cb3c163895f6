"""Running the app: in the foreground (``rlhfkit annotate serve``) or on a background thread (tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from rlhfkit.feedback.api import MAX_BODY_BYTES, create_app
from rlhfkit.feedback.store import Store


def serve(
    store: Store,
    host: str = "127.0.0.1",
    port: int = 8000,
    root_path: str = "",
    max_body_bytes: int = MAX_BODY_BYTES,
) -> None:
    """Serve the app until interrupted (``root_path`` and ``max_body_bytes``: see `create_app`).

    Raises:
        OSError: the address is taken (uvicorn reports it and exits).
        ValueError: a malformed ``root_path``.
    """
    app = create_app(store, root_path, max_body_bytes)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@contextmanager
def serving(
    store: Store, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0, root_path: str = ""
) -> Iterator[str]:
    """Serve the app on a background thread for the duration of the ``with`` block; yields its base URL.

    ``port=0`` takes a free port. With ``root_path`` the app answers under that prefix itself, as it does
    behind a reverse proxy that forwards the prefix (the yielded URL includes it).

    Raises:
        RuntimeError: the server did not start within `timeout` seconds.
    """
    config = uvicorn.Config(
        create_app(store, root_path),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="rlhfkit-annotate", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the annotation server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}{root_path}"
    finally:
        server.should_exit = True
        thread.join(timeout)
