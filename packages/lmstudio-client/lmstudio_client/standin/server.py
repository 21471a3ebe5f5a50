"""The stand-in's HTTP server (Starlette): LM Studio's endpoints, shapes, SSE framing and errors.

The endpoints live by family: `chat` (chat, completions, embeddings), `models` (lists, load and
unload) and `control` (the `/__standin` routes tests steer it with); the state is in `state`.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from lmstudio_client.standin import behaviour as b
from lmstudio_client.standin import chat, control, models
from lmstudio_client.standin.http import error, record_request
from lmstudio_client.standin.state import FAILURES, Standin, StandinConfig, StandinModel, Stats

__all__ = ["FAILURES", "Standin", "StandinConfig", "StandinModel", "Stats", "create_app"]


def create_app(config: StandinConfig | None = None) -> Starlette:
    standin = Standin(config or StandinConfig())
    routes = [*models.ROUTES, *chat.ROUTES, *control.ROUTES]
    app = Starlette(routes=routes)
    app.state.standin = standin

    async def lmstudio_quirks(scope: Any, receive: Any, send: Any) -> None:
        """LM Studio answers unknown paths and methods with a 200 carrying only `error`. Every request
        but the control ones is logged for `/__standin/requests`."""
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        control = scope["path"].startswith("/__standin")
        if not control:
            receive = await record_request(standin, scope, receive)
        request = Request(scope, receive)
        key = standin.config.api_key
        if key and not control and request.headers.get("authorization") != f"Bearer {key}":
            await error((401, {"error": "Invalid or missing API key"}))(scope, receive, send)
            return
        for route in routes:
            match, _ = route.matches(scope)
            native = route.path.startswith("/api/v1/")  # type: ignore[attr-defined]
            if match.name == "FULL" and (standin.config.native_api or not native):
                await app(scope, receive, send)
                return
        await error(b.unexpected_endpoint(scope["method"], scope["path"]))(scope, receive, send)

    lmstudio_quirks.state = app.state  # type: ignore[attr-defined]
    return lmstudio_quirks  # type: ignore[return-value]
