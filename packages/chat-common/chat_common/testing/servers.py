"""Real HTTP servers for tests: an ASGI app on a loopback port, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from chat_common.embedded import free_port
from chat_common.serving import uvicorn_options
from chat_common.settings import CommonSettings


@contextmanager
def serve_app(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 until the block ends; yields its base URL.

    uvicorn is configured as a service's run.py configures it, from the app's settings
    (`app.state.settings`, defaults for an app without them); only the address differs."""
    settings = getattr(getattr(app, "state", None), "settings", None)
    if not isinstance(settings, CommonSettings):
        settings = CommonSettings.model_construct()  # the defaults, not the environment of the test run
    options = {**uvicorn_options(settings), "host": "127.0.0.1", "port": port or free_port()}
    config = uvicorn.Config(app, **options, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
