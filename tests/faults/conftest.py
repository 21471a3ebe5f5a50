"""The fault harness's own fleet: real backends and services it may kill, freeze and restart.

Not the shared e2e fleet (tests/e2e/conftest.py): scenarios here kill processes. Every backend
(PostgreSQL, Redis, nx-27017) lives in its own data directory on a fixed port, and every service on a
fixed port with a fixed environment (its database, its Redis prefix), so each can be killed and
started again as the same server (`Fleet.backends`, `Fleet.services`). Timeouts, leases and sweeps
are short so that every fault runs out in seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat_common.embedded import (
    EmbeddedServer,
    distinct_free_ports,
    free_port,
    start_mongodb,
    start_postgres,
    start_redis,
)
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
from chat_common.testing.invariants import FleetDatabases, Violation, check_invariants
from lmstudio_client.testing import StandinProcess, run_standin

SERVICES = ("user-service", "character-service", "conversation-service", "message-service", "llm-service")
INITIAL_CREDITS = 1000
MAX_TOKENS = 20  # every reply reserves 1 + 20 credits and is charged 1 + its tokens
# The timeouts every fault runs into: llm-service's own, and message-service's wait for llm-service.
LLM_TIMEOUTS = {
    "CONNECT_TIMEOUT_SECONDS": "1",
    "FIRST_TOKEN_TIMEOUT_SECONDS": "2",
    "IDLE_TIMEOUT_SECONDS": "2",
    "TOTAL_TIMEOUT_SECONDS": "5",
}
MESSAGE_SERVICE_LLM_IDLE_SECONDS = 4  # above llm-service's first-token timeout, as in production
JOB_LEASE_SECONDS = 3
SWEEP_INTERVAL_SECONDS = 0.5
# A reservation made for a reply its process was killed before storing is released this long after
# (the default TTL of an hour stays: the books must settle long before it).
ORPHANED_RESERVATION_GRACE_SECONDS = 15


class Backend:
    """An embedded server on a fixed port and data directory: killed and started again as itself."""

    def __init__(self, name: str, start: Callable[[Path, int], EmbeddedServer], data_dir: Path) -> None:
        self.name = name
        self._start = start
        self.data_dir = data_dir
        self.port = free_port()
        self.server = self._start(self.data_dir, self.port)

    @property
    def url(self) -> str:
        return self.server.url

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.server.process is not None and self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait(30)

    def start(self) -> None:
        self.server = self._start(self.data_dir, self.port)

    def stop(self) -> None:
        self.server.stop()


class Service:
    """One service process on a fixed port and environment: stopped, killed, frozen, started again."""

    def __init__(self, name: str, start: Callable[[], AbstractContextManager[ServiceProcess]]) -> None:
        self.name = name
        self._start = start
        self._stack = contextlib.ExitStack()
        self.process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.url

    def start(self) -> ServiceProcess:
        self.process = self._stack.enter_context(self._start())
        return self.process

    def stop(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        os.kill(self.process.process.pid, sig)
        if sig == signal.SIGKILL:
            self.process.process.wait(30)
            self.stop()

    def freeze(self) -> None:
        """SIGSTOP: it holds its connections and answers nothing, as a hung process does (`thaw`)."""
        self.kill(signal.SIGSTOP)

    def thaw(self) -> None:
        self.kill(signal.SIGCONT)

    def log(self) -> str:
        return self.process.log_tail(20_000) if self.process else ""


class Standin:
    """The LM Studio stand-in on a fixed port: killed and started again as itself."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stack = contextlib.ExitStack()
        self.process = self.start()

    def start(self) -> StandinProcess:
        self.process = self._stack.enter_context(run_standin(port=self.port))
        return self.process

    def stop(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()

    def kill(self) -> None:
        """Gone: connections refused, as when LM Studio is not running (`start` brings it back)."""
        self.process.kill()
        self.stop()


class Fleet:
    """The running fleet: backends, services, the LM Studio stand-in, and what the invariants read."""

    def __init__(
        self,
        backends: dict[str, Backend],
        services: dict[str, Service],
        lmstudio: Standin,
        databases: FleetDatabases,
    ) -> None:
        self.backends = backends
        self.services = services
        self.lmstudio = lmstudio
        self.databases = databases
        self.http = httpx.Client(timeout=30)
        self.test_started = time.time()

    @property
    def standin(self) -> StandinProcess:
        return self.lmstudio.process

    def url(self, service: str) -> str:
        return self.services[service].url

    def register(self, prefix: str = "fault") -> FleetUser:
        return register_user(self.url("user-service"), prefix)

    def character(self, owner: FleetUser) -> dict[str, Any]:
        return create_character(self.http, self.url("character-service"), owner)

    def conversation(self, owner: FleetUser, character_id: str) -> dict[str, Any]:
        return create_conversation(self.http, self.url("conversation-service"), owner, character_id)

    def violations(
        self, user_ids: list[str], accepted: list[str], *, settled: bool = True
    ) -> list[Violation]:
        return run_sync(
            check_invariants(
                self.databases, user_ids=user_ids, accepted_user_messages=accepted, settled=settled
            )
        )

    def wait_for_invariants(
        self, user_ids: list[str], accepted: list[str], *, within: float = 60
    ) -> tuple[float, list[Violation]]:
        """Check the invariants until they hold (the sweepers settling what the fault left pending) or
        `within` seconds pass: (seconds it took, the violations left)."""
        started = time.monotonic()
        while True:
            violations = self.violations(user_ids, accepted)
            if not violations or time.monotonic() - started > within:
                return time.monotonic() - started, violations
            time.sleep(0.25)


def _start_together(starts: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    with ThreadPoolExecutor(len(starts)) as pool:
        futures = {name: pool.submit(start) for name, start in starts.items()}
    return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="session")
def fault_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root: Path = tmp_path_factory.mktemp("faults")
    backends = {
        "postgres": Backend("postgres", start_postgres, root / "postgres"),
        "redis": Backend("redis", lambda d, p: start_redis(d, p, persist=True), root / "redis"),
        "mongodb": Backend("mongodb", start_mongodb, root / "mongodb"),
    }
    postgres, redis, mongodb = (backends[n].url for n in ("postgres", "redis", "mongodb"))
    ports = dict(zip(SERVICES, distinct_free_ports(len(SERVICES)), strict=True))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    jwks_url = f"{urls['user-service']}/.well-known/jwks.json"
    users_db = run_sync(create_database(postgres, "users"))
    characters_db = run_sync(create_database(postgres, "characters"))
    messages_db, conversations_db = (
        f"{kind}_{uuid.uuid4().hex[:8]}" for kind in ("messages", "conversations")
    )
    downstream = MessageServiceDownstream(
        user_service=urls["user-service"],
        character_service=urls["character-service"],
        conversation_service=urls["conversation-service"],
        llm_service=urls["llm-service"],
    )
    lmstudio = Standin()
    starts: dict[str, Callable[[], AbstractContextManager[ServiceProcess]]] = {
        "user-service": lambda: run_user_service(
            postgres,
            redis,
            root,
            database_url=users_db,
            port=ports["user-service"],
            INITIAL_CREDITS=str(INITIAL_CREDITS),
            REDIS_PREFIX="faults-users",
            RESERVATION_SWEEP_SECONDS="1",
        ),
        "character-service": lambda: run_character_service(
            postgres, jwks_url, root, database_url=characters_db, port=ports["character-service"]
        ),
        "conversation-service": lambda: run_conversation_service(
            mongodb,
            urls["user-service"],
            urls["character-service"],
            root,
            port=ports["conversation-service"],
            MONGODB_DATABASE=conversations_db,
            DOWNSTREAM_TIMEOUT_SECONDS="3",
        ),
        "message-service": lambda: run_message_service(
            mongodb,
            redis,
            downstream,
            root,
            port=ports["message-service"],
            MONGODB_DATABASE=messages_db,
            REDIS_PREFIX="faults-messages",
            COST_PER_MESSAGE="1",
            COST_PER_1K_TOKENS="1000",
            DEFAULT_MAX_TOKENS=str(MAX_TOKENS),
            MESSAGES_PER_MINUTE="100000",
            MAX_CONCURRENT_GENERATIONS="10",
            CONVERSATION_CACHE_SECONDS="0",
            CHARACTER_CACHE_SECONDS="0",
            DOWNSTREAM_TIMEOUT_SECONDS="3",
            LLM_IDLE_TIMEOUT_SECONDS=str(MESSAGE_SERVICE_LLM_IDLE_SECONDS),
            JOB_LEASE_SECONDS=str(JOB_LEASE_SECONDS),
            SWEEP_INTERVAL_SECONDS=str(SWEEP_INTERVAL_SECONDS),
            ORPHANED_RESERVATION_GRACE_SECONDS=str(ORPHANED_RESERVATION_GRACE_SECONDS),
        ),
        "llm-service": lambda: run_llm_service(
            lmstudio.url, urls["user-service"], root, port=ports["llm-service"], **LLM_TIMEOUTS
        ),
    }
    services = {name: Service(name, start) for name, start in starts.items()}
    databases = FleetDatabases(users_db, mongodb, messages_db, conversations_db)
    fleet = Fleet(backends, services, lmstudio, databases)
    try:
        _start_together({name: service.start for name, service in services.items()})
        yield fleet
    finally:
        fleet.http.close()
        for service in services.values():
            service.stop()
        lmstudio.stop()
        for backend in backends.values():
            backend.stop()


@pytest.fixture
def fleet(fault_fleet: Fleet) -> Iterator[Fleet]:
    """The fault fleet, every service running and the stand-in back to its defaults after the test."""
    fault_fleet.test_started = time.time()
    yield fault_fleet
    fault_fleet.standin.reset()
    for service in fault_fleet.services.values():
        if service.process is None or service.process.process.poll() is not None:
            service.stop()
            service.start()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Each fault scenario's measurements (the numbers of docs/reliability.md)."""
    from tests.faults.traffic import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("fault scenarios: what the clients saw, and recovery")
    for report in RESULTS:
        terminalreporter.write_line(
            f"{report.name}: lifted in {report.lifting:.1f}s, then served again {report.served_again:.1f}s "
            f"and books settled {report.settled:.1f}s later; {len(report.accepted)} messages accepted, "
            f"{len(report.violations)} violations"
        )
        for seen in report.seen()[:4]:
            terminalreporter.write_line(f"    {seen}")
