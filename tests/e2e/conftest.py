"""The whole fleet for the end-to-end tests: the five services as real `python run.py` processes on
free ports, on the session's embedded PostgreSQL, Redis and nx-27017, with the LM Studio stand-in;
started once per session, in parallel.

Only what a client has is used to talk to it: HTTP, the services' URLs and a user's token. The
exceptions are `Fleet.user_service_stopped()`, which stops and restarts user-service's process for the
outage test, and `Fleet.signing_key_pem`, user-service's key for the access matrix's defective tokens.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from chat_common.embedded import distinct_free_ports
from chat_common.testing import ServiceProcess, create_database
from chat_common.testing.fleet import (
    FleetUser,
    MessageServiceDownstream,
    create_character,
    create_conversation,
    register_user,
    run_character_service,
    run_conversation_service,
    run_llm_service,
    run_message_service,
    run_sync,
    run_user_service,
)
from lmstudio_client.testing import StandinProcess, run_standin

INITIAL_CREDITS = 100
# Every reply costs exactly this: no per-token part, so a test can count replies in credits.
COST_PER_REPLY = 3
SERVICES = ("user-service", "character-service", "conversation-service", "message-service", "llm-service")


class Fleet:
    """The running fleet: each service's base URL, a client, and the scene-setting calls tests share."""

    def __init__(
        self,
        processes: dict[str, ServiceProcess],
        standin: StandinProcess,
        restart_user_service: Callable[[], ServiceProcess],
    ) -> None:
        self.processes = processes
        self.standin = standin
        self._restart_user_service = restart_user_service
        self.http = httpx.Client(timeout=30)

    @property
    def urls(self) -> dict[str, str]:
        return {name: process.url for name, process in self.processes.items()}

    @property
    def users(self) -> str:
        return self.processes["user-service"].url

    @property
    def characters(self) -> str:
        return self.processes["character-service"].url

    @property
    def conversations(self) -> str:
        return self.processes["conversation-service"].url

    @property
    def messages(self) -> str:
        return self.processes["message-service"].url

    @property
    def llm(self) -> str:
        return self.processes["llm-service"].url

    @property
    def signing_key_pem(self) -> str:
        """user-service's private key: made on its first start in its DATA_DIR (the session's fleet
        directory, beside its log), for tokens validly signed but for one defect."""
        return (self.processes["user-service"].log_path.parent / "jwt_private_key.pem").read_text()

    @contextlib.contextmanager
    def user_service_stopped(self) -> Iterator[None]:
        """user-service's process stopped for the block, then started again on the same port, database,
        Redis prefix and signing key, and ready, however the block ends."""
        self.processes["user-service"].stop()
        try:
            yield
        finally:
            self.processes["user-service"] = self._restart_user_service()

    def register(self, prefix: str = "user") -> FleetUser:
        return register_user(self.users, prefix)

    def character(self, owner: FleetUser, **fields: Any) -> dict[str, Any]:
        return create_character(self.http, self.characters, owner, **fields)

    def conversation(self, owner: FleetUser, character_id: str) -> dict[str, Any]:
        return create_conversation(self.http, self.conversations, owner, character_id)

    def send(self, owner: FleetUser, conversation_id: str, content: str) -> dict[str, Any]:
        response = self.http.post(
            f"{self.messages}/api/v1/conversations/{conversation_id}/messages",
            json={"content": content},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def path(self, owner: FleetUser, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's active path, oldest first."""
        response = self.http.get(
            f"{self.messages}/api/v1/conversations/{conversation_id}/messages", headers=owner.headers
        )
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def stream(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> list[tuple[str, Any]]:
        """A streamed request's SSE events, as (event name, parsed data), in order."""
        with connect_sse(self.http, "POST", url, json=body, headers=dict(headers)) as source:
            assert source.response.status_code == 200, source.response.read()
            assert source.response.headers["content-type"].startswith("text/event-stream")
            return [(event.event, event.json()) for event in source.iter_sse()]

    def balance(self, owner: FleetUser) -> int:
        response = self.http.get(f"{self.users}/api/v1/credits", headers=owner.headers)
        assert response.status_code == 200, response.text
        return int(response.json()["balance"])


def _start_together(
    stack: contextlib.ExitStack, starts: dict[str, AbstractContextManager[Any]]
) -> dict[str, Any]:
    """Enter every context at once (each waits for its own process to be ready); all are left with
    `stack`, also when one of them fails to start."""
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = {name: pool.submit(stack.enter_context, start) for name, start in starts.items()}
    return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="session")
def standin() -> Iterator[StandinProcess]:
    with run_standin() as process:
        yield process


@pytest.fixture(scope="session")
def fleet(
    postgres_url: str,
    redis_url: str,
    mongodb_url: str,
    standin: StandinProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    data_dir: Path = tmp_path_factory.mktemp("e2e-fleet")
    ports = dict(zip(SERVICES, distinct_free_ports(len(SERVICES)), strict=True))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    jwks_url = f"{urls['user-service']}/.well-known/jwks.json"
    user_service_database = run_sync(create_database(postgres_url, "users"))
    user_service_env = {
        "INITIAL_CREDITS": str(INITIAL_CREDITS),
        "REDIS_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
    }

    def user_service() -> AbstractContextManager[ServiceProcess]:
        return run_user_service(
            postgres_url,
            redis_url,
            data_dir,
            database_url=user_service_database,
            port=ports["user-service"],
            **user_service_env,
        )

    with contextlib.ExitStack() as stack:
        downstream = MessageServiceDownstream(
            user_service=urls["user-service"],
            character_service=urls["character-service"],
            conversation_service=urls["conversation-service"],
            llm_service=urls["llm-service"],
        )
        processes = _start_together(
            stack,
            {
                "user-service": user_service(),
                "character-service": run_character_service(
                    postgres_url, jwks_url, data_dir, port=ports["character-service"]
                ),
                "conversation-service": run_conversation_service(
                    mongodb_url,
                    urls["user-service"],
                    urls["character-service"],
                    data_dir,
                    port=ports["conversation-service"],
                ),
                "message-service": run_message_service(
                    mongodb_url,
                    redis_url,
                    downstream,
                    data_dir,
                    port=ports["message-service"],
                    COST_PER_MESSAGE=str(COST_PER_REPLY),
                    COST_PER_1K_TOKENS="0",
                    MESSAGES_PER_MINUTE="1000",
                ),
                "llm-service": run_llm_service(
                    standin.url, urls["user-service"], data_dir, port=ports["llm-service"]
                ),
            },
        )
        fleet = Fleet(processes, standin, lambda: stack.enter_context(user_service()))
        stack.callback(fleet.http.close)
        yield fleet
