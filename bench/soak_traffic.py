"""The soak run's traffic (bench/soak.py): virtual users doing what people do with the fleet.

Each virtual user is one closed loop (no think time) over its own keep-alive connections (the lean
client of bench/loadgen.py): it signs up and logs in, then picks each next operation by `WEIGHTS`:
logins, character browsing (list, search, get), new conversations, their list, the message path and
single messages, and chats: streamed (to `message.completed`); streamed with a disconnect after
`message.created` (before any text) or after the first `delta`, then a reattach
(`GET /messages/{id}/stream` with `Last-Event-ID`) whose text must complete and equal the stored
reply; and plain (201). A plain send's exchange is sometimes deleted after it (`DELETE_SHARE`): its
reply alone, or its user message with the reply (a leaf then: nothing below it), which the
invariants then no longer expect stored, and whose conversation's count must drop. Now and then it
signs up again (a new user, as new people arrive) and goes on as them. It chats only in its own
user's conversations, one request at a time, so the per-conversation lock should never refuse it: a
409 `generation_in_progress` means the lock of a reply whose end the client already read was not yet
freed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bench.loadgen import Connection, build_request

PASSWORD = "Sturdy-pass-2024"
TIMEOUT = 60.0  # seconds one request (a whole stream) may take before it counts as an error
IDLE = 3.0  # a connection unused this long is reopened (uvicorn closes idle ones after 5 s)
WEIGHTS = {
    "signup": 2,
    "login": 4,
    "characters.list": 10,
    "characters.search": 8,
    "characters.get": 8,
    "conversation.create": 5,
    "conversations.list": 4,
    "messages.read": 12,
    "message.get": 4,
    "chat.stream": 23,
    "chat.reattach": 10,
    "chat.send": 10,
}
DELETE_SHARE = 0.25  # of plain sends whose exchange is deleted after it (half of them, only the reply)
WORDS = [
    *("harbour", "ship", "storm", "lantern", "captain", "map", "island", "tide", "compass", "river"),
    *("castle", "dragon", "forest", "library", "potion", "market", "train", "station", "moon"),
    *("garden", "letter", "secret", "festival", "bridge", "tower"),
]


class RequestFailed(Exception):
    """A request that did not succeed: its status (0: no HTTP answer) and error code."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status, self.code = status, code


@dataclass
class Stats:
    """What one phase of the run saw (the warm-up's are kept apart)."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[tuple[str, int, str]] = field(default_factory=Counter)  # (operation, status, code)
    exchanges: int = 0  # replies read to their end (streamed, reattached or plain)
    reattached: int = 0  # reattaches whose text matched the stored reply
    resumed_text: int = 0  # of which the reattached stream still carried text (not only the end)
    mismatched: list[str] = field(default_factory=list)  # reattaches that did not: what differed

    def record(self, operation: str, seconds: float) -> None:
        self.latencies.setdefault(operation, []).append(seconds)


@dataclass
class Shared:
    """What every virtual user reads or adds to: the services' URLs, the catalogue, the current
    phase's stats, and (for the invariants) the users and the accepted user messages."""

    urls: dict[str, str]  # users, characters, conversations, messages
    character_ids: list[str]
    stats: Stats = field(default_factory=Stats)
    user_ids: set[str] = field(default_factory=set)
    accepted: list[str] = field(default_factory=list)


def error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "-"


def sentence(count: int) -> str:
    return " ".join(random.choices(WORDS, k=count))


class Pool:
    """One keep-alive connection per service, reopened after an error or when idle."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[Connection, float]] = {}

    def get(self, base: str) -> Connection:
        conn, used = self.open.get(base, (None, 0.0))
        if conn is None or time.monotonic() - used > IDLE:
            if conn is not None:
                conn.close()
            conn = Connection(base)
        self.open[base] = (conn, time.monotonic())
        return conn

    def drop(self, base: str) -> None:
        conn, _ = self.open.pop(base, (None, 0.0))
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for base in list(self.open):
            self.drop(base)


async def read_head(conn: Connection) -> tuple[int, bool, int]:
    """The status line and headers of a response: (status, chunked, content length)."""
    assert conn.reader is not None
    line = await conn.reader.readline()
    if not line:
        raise ConnectionError("connection closed before the response")
    status, chunked, length = int(line.split()[1]), False, 0
    while (line := await conn.reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name.lower() == b"content-length":
            length = int(value)
    return status, chunked, length


async def sse_events(conn: Connection) -> AsyncGenerator[tuple[str, str, Any], None]:
    """The events of a chunked `text/event-stream` body: (id, event, parsed data), to the body's end."""
    assert conn.reader is not None
    buffer = b""
    while (size := int((await conn.reader.readline()).strip(), 16)) > 0:
        buffer = (buffer + (await conn.reader.readexactly(size + 2))[:-2]).replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            event_id, event, data = "", "message", []
            for line in block.decode().split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event_id = value
                elif name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
            if data:
                yield event_id, event, json.loads("\n".join(data))
    await conn.reader.readline()


class VirtualUser:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.pool = Pool()
        self.username = ""
        self.token = ""
        self.conversations: list[str] = []
        self.messages: list[str] = []  # ids of messages seen, for message.get

    # One request, timed and counted.

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    async def call(
        self,
        operation: str,
        service: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        expect: int = 200,
    ) -> Any:
        """One request; its parsed JSON body (raises RequestFailed, counted, unless `expect`)."""
        base = self.shared.urls[service]
        headers = self.headers() if self.token else {}
        body = b""
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif form is not None:
            body, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
        raw = build_request(f"{base}{path}", method, headers, body)
        start = time.perf_counter()
        try:
            status, answer = await asyncio.wait_for(self.pool.get(base).response(raw), TIMEOUT)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.pool.drop(base)
            raise self.failed(operation, 0, type(exc).__name__) from None
        if status != expect:
            raise self.failed(operation, status, error_code(answer))
        self.shared.stats.record(operation, time.perf_counter() - start)
        return json.loads(answer) if answer else None

    def failed(self, operation: str, status: int, code: str) -> RequestFailed:
        self.shared.stats.errors[(operation, status, code)] += 1
        return RequestFailed(status, code)

    # The loop.

    async def run(self, stop_at: float) -> None:
        try:
            while not self.token and time.monotonic() < stop_at:
                try:
                    await self.signup()
                except RequestFailed:
                    await asyncio.sleep(1.0)
            operations, weights = list(WEIGHTS), list(WEIGHTS.values())
            while time.monotonic() < stop_at:
                operation = random.choices(operations, weights)[0]
                with suppress(RequestFailed):  # counted where it failed
                    await getattr(self, operation.replace(".", "_"))()
        finally:
            self.pool.close()

    # The operations.

    async def signup(self) -> None:
        """A new user (who then logs in, and is who this virtual user is from now on)."""
        username = f"soak{uuid.uuid4().hex[:12]}"
        created = await self.call(
            "signup",
            "users",
            "POST",
            "/api/v1/auth/register",
            json_body={
                "email": f"{username}@example.com",
                "username": username,
                "display_name": username.title(),
                "password": PASSWORD,
            },
            expect=201,
        )
        self.shared.user_ids.add(str(created["id"]))
        self.username, self.conversations, self.messages = username, [], []
        await self.login()

    async def login(self) -> None:
        form = {"username": self.username, "password": PASSWORD}
        tokens = await self.call("login", "users", "POST", "/api/v1/auth/token", form=form)
        self.token = tokens["access_token"]

    async def characters_list(self) -> None:
        sort = random.choice(["newest", "popular", "name"])
        query = urlencode({"limit": 20, "offset": random.randrange(0, 100), "sort": sort})
        await self.call("characters.list", "characters", "GET", f"/api/v1/characters?{query}")

    async def characters_search(self) -> None:
        query = urlencode({"q": random.choice(WORDS), "limit": 20})
        await self.call("characters.search", "characters", "GET", f"/api/v1/characters?{query}")

    async def characters_get(self) -> None:
        character = random.choice(self.shared.character_ids)
        await self.call("characters.get", "characters", "GET", f"/api/v1/characters/{character}")

    async def conversation_create(self) -> str:
        created = await self.call(
            "conversation.create",
            "conversations",
            "POST",
            "/api/v1/conversations",
            json_body={"character_id": random.choice(self.shared.character_ids)},
            expect=201,
        )
        self.conversations.append(str(created["id"]))
        return self.conversations[-1]

    async def conversations_list(self) -> None:
        await self.call("conversations.list", "conversations", "GET", "/api/v1/conversations?limit=20")

    async def conversation(self) -> str:
        """One of this user's conversations (a new one when it has none)."""
        return random.choice(self.conversations) if self.conversations else await self.conversation_create()

    async def messages_read(self) -> None:
        conversation = await self.conversation()
        path = f"/api/v1/conversations/{conversation}/messages?limit=50"
        page = await self.call("messages.read", "messages", "GET", path)
        self.messages = [str(m["id"]) for m in page["items"]][-50:]

    async def message_get(self) -> None:
        if not self.messages:
            return await self.messages_read()
        await self.call("message.get", "messages", "GET", f"/api/v1/messages/{random.choice(self.messages)}")

    async def chat_send(self) -> None:
        conversation = await self.conversation()
        sent = await self.call(
            "chat.send",
            "messages",
            "POST",
            f"/api/v1/conversations/{conversation}/messages",
            json_body={"content": sentence(random.randint(6, 24))},
            expect=201,
        )
        self.shared.accepted.append(str(sent["user_message"]["id"]))
        if sent["reply"]["status"] != "completed":
            raise self.failed("chat.send", 201, f"reply_{sent['reply']['status']}")
        self.shared.stats.exchanges += 1
        if random.random() < DELETE_SHARE:
            await self.message_delete(sent)
            return
        self.messages = [*self.messages[-49:], str(sent["reply"]["id"])]

    async def message_delete(self, sent: dict[str, Any]) -> None:
        """Delete the exchange just sent (a leaf): its reply alone, or its user message with it."""
        whole = random.random() < 0.5
        target = str(sent["user_message" if whole else "reply"]["id"])
        await self.call("message.delete", "messages", "DELETE", f"/api/v1/messages/{target}", expect=204)
        if whole:
            self.shared.accepted.remove(target)

    async def chat_stream(self) -> None:
        await self.stream(disconnect="")

    async def chat_reattach(self) -> None:
        await self.stream(disconnect=random.choice(["message.created", "delta"]))

    async def stream(self, *, disconnect: str) -> None:
        """A streamed send read to its end; with `disconnect` (an event name), read to that event
        (`message.created`: before any text; `delta`: the first piece), drop the connection, reattach
        after that event and check the whole text read against the stored reply."""
        operation = "chat.reattach" if disconnect else "chat.stream"
        conversation = await self.conversation()
        base = self.shared.urls["messages"]
        path = f"/api/v1/conversations/{conversation}/messages"
        body = json.dumps({"content": sentence(random.randint(6, 24)), "stream": True}).encode()
        headers = self.headers({"Content-Type": "application/json"})
        raw = build_request(f"{base}{path}", "POST", headers, body)
        start = time.perf_counter()
        try:
            seen = await asyncio.wait_for(self.read_stream(operation, base, raw, disconnect), TIMEOUT)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.pool.drop(base)
            raise self.failed(operation, 0, type(exc).__name__) from None
        if not disconnect:
            return
        reply_id, last_id, text = seen
        stream = f"{base}/api/v1/messages/{reply_id}/stream"
        raw = build_request(stream, "GET", self.headers({"Last-Event-ID": last_id}))
        try:
            _, _, rest = await asyncio.wait_for(self.read_stream("chat.resume", base, raw, ""), TIMEOUT)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.pool.drop(base)
            raise self.failed("chat.resume", 0, type(exc).__name__) from None
        self.shared.stats.record(operation, time.perf_counter() - start)  # the send to the resumed end
        stored = await self.call("message.get", "messages", "GET", f"/api/v1/messages/{reply_id}")
        if text + rest == stored["content"] and stored["status"] == "completed":
            self.shared.stats.reattached += 1
            self.shared.stats.resumed_text += bool(rest)
        else:
            detail = f"{reply_id}: streamed {text + rest!r}, stored {stored['status']} {stored['content']!r}"
            self.shared.stats.mismatched.append(detail)

    async def read_stream(
        self, operation: str, base: str, raw: bytes, disconnect: str
    ) -> tuple[str, str, str]:
        """Send `raw` and read its events: (reply id, id of the last event read, the text read).
        Records the first `delta` as `<operation>.first_token`. With `disconnect`, stops after the
        first event of that name and closes the connection (a client that went away)."""
        conn = self.pool.get(base)
        if conn.writer is None:
            conn.reader, conn.writer = await asyncio.open_connection(conn.host, conn.port)
        start = time.perf_counter()
        conn.writer.write(raw)
        status, chunked, length = await read_head(conn)
        if status != 200 or not chunked:
            assert conn.reader is not None
            answer = await conn.reader.readexactly(length) if not chunked else b""
            if chunked:
                self.pool.drop(base)
            raise self.failed(operation, status, error_code(answer))
        reply_id, last_id, text, first, outcome = "", "", "", 0.0, "stream_ended_early"
        async with aclosing(sse_events(conn)) as events:
            async for event_id, event, data in events:
                last_id = event_id or last_id
                if event == "message.created":
                    reply_id = str(data["reply_id"])
                    if data.get("user_message"):
                        self.shared.accepted.append(str(data["user_message"]["id"]))
                elif event == "delta":
                    text += data["text"]
                    if not first:
                        first = time.perf_counter() - start
                        self.shared.stats.record(f"{operation}.first_token", first)
                elif event == "message.completed":
                    self.shared.stats.record(operation, time.perf_counter() - start)
                    self.shared.stats.exchanges += 1
                    self.messages = [*self.messages[-49:], str(data["id"])]
                    outcome = ""
                elif event == "error":
                    outcome = f"sse:{data.get('code')}"
                if event == disconnect:
                    self.pool.drop(base)
                    return reply_id, last_id, text
        if outcome:
            raise self.failed(operation, 200, outcome)
        return reply_id, last_id, text
