"""HTTP plumbing for generation: SSE framing and cancelling upstream work when the client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.services.llm import ChunkStream

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The caller went away before the answer was ready."""


async def _wait_for_disconnect(receive: Receive) -> None:
    """Returns once the client has gone (the request body was already read by then)."""
    while True:
        if (await receive())["type"] == "http.disconnect":
            return


async def unless_disconnected(
    request: Request, work: Awaitable[T], *, abandon: Callable[[T], Awaitable[None]] | None = None
) -> T:
    """Run `work`, cancelling it (and so the upstream request) if the client disconnects first.

    Should the work finish anyway (it may have completed just as it was cancelled), `abandon` is
    given its result, e.g. to close a stream nobody will read."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            result = await task
            if abandon is not None:
                await abandon(result)
        raise ClientDisconnected
    return task.result()


def _sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {text}\n\n".encode()


class SSEResponse(StreamingResponse):
    """Streams a ChunkStream as OpenAI SSE, ending in `data: [DONE]` (or an error event), and always
    closes the upstream stream: on completion, on error, and as soon as the client disconnects."""

    def __init__(self, stream: ChunkStream) -> None:
        self.stream = stream
        super().__init__(
            self._frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _frames(self) -> Any:
        failed = False
        async for event in self.stream.events():
            failed = "error" in event
            yield _sse(event)
        if not failed:
            yield _sse("[DONE]")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    with contextlib.suppress(OSError):  # the client went away while we were writing
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                async def watch() -> None:
                    await _wait_for_disconnect(receive)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                group.start_soon(watch)
        finally:
            await self.stream.aclose()
