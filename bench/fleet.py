"""The whole fleet for a bench: embedded backends and the five services as processes, on free ports.

Shared by bench/message_service.py and bench/soak.py. Everything lives in the caller's temporary
`data_dir` and stops when the block ends: embedded PostgreSQL, a Redis for user-service and one for
message-service alone (its INFO commandstats are then its own), nx-27017, real user-, character-,
conversation- and llm-service processes, the LM Studio stand-in at zero delay and message-service
(`python run.py`). Settings default to a fast bench fleet; the caller's `*_env` override them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from chat_common.embedded import EmbeddedServer, free_port, start_mongodb, start_postgres, start_redis
from chat_common.testing import ServiceProcess, serve_service
from chat_common.testing.fleet import (
    REPO_ROOT,
    run_character_service,
    run_conversation_service,
    run_llm_service,
    run_sync,
    run_user_service,
)
from chat_common.testing.postgres import create_database
from lmstudio_client.testing import StandinProcess, run_standin

QUIET = {"LOG_LEVEL": "WARNING"}


@dataclass
class Fleet:
    data_dir: Path
    postgres: EmbeddedServer
    redis: EmbeddedServer  # user-service's
    message_redis: EmbeddedServer  # message-service's own
    mongodb: EmbeddedServer
    users_database_url: str  # user-service's PostgreSQL database
    conversations_database: str  # conversation-service's MongoDB database
    messages_database: str  # message-service's MongoDB database
    users: ServiceProcess
    characters: ServiceProcess
    conversations: ServiceProcess
    standin: StandinProcess
    llm: ServiceProcess
    messages: ServiceProcess

    def services(self) -> dict[str, int]:
        """Each service process (and the stand-in): name -> pid."""
        return {
            "user-service": self.users.process.pid,
            "character-service": self.characters.process.pid,
            "conversation-service": self.conversations.process.pid,
            "message-service": self.messages.process.pid,
            "llm-service": self.llm.process.pid,
            "stand-in": self.standin.process.pid,
        }

    def backends(self) -> dict[str, int]:
        """Each backend server's own process: name -> pid (PostgreSQL's postmaster, whose backends
        are its children)."""
        found = {}
        for name, server in (
            ("postgresql", self.postgres),
            ("redis (user-service)", self.redis),
            ("redis (message-service)", self.message_redis),
            ("nx-27017", self.mongodb),
        ):
            assert server.process is not None
            found[name] = server.process.pid
        return found


@contextmanager
def fleet(
    data_dir: Path,
    *,
    users_env: dict[str, str] | None = None,
    llm_env: dict[str, str] | None = None,
    message_env: dict[str, str] | None = None,
) -> Iterator[Fleet]:
    """The fleet in `data_dir` until the block ends. By default: plenty of credits for every user
    (`INITIAL_CREDITS`), llm-service lets 64 requests reach the stand-in at once (64 more queue), and
    message-service's per-user limits are out of the way (`MESSAGES_PER_MINUTE` 1,000,000,
    `MAX_CONCURRENT_GENERATIONS` 64)."""
    with ExitStack() as stack:
        postgres = start_postgres(data_dir / "postgres", free_port())
        stack.callback(postgres.stop)
        redis = start_redis(data_dir / "redis", free_port(), persist=False)
        stack.callback(redis.stop)
        message_redis = start_redis(data_dir / "redis-messages", free_port(), persist=False)
        stack.callback(message_redis.stop)
        mongodb = start_mongodb(data_dir / "mongodb", free_port())
        stack.callback(mongodb.stop)
        users_database_url = run_sync(create_database(postgres.url, "users"))
        users = stack.enter_context(
            run_user_service(
                postgres.url,
                redis.url,
                data_dir,
                database_url=users_database_url,
                **{"INITIAL_CREDITS": "100000000", **QUIET, **(users_env or {})},
            )
        )
        jwks = f"{users.url}/.well-known/jwks.json"
        characters = stack.enter_context(run_character_service(postgres.url, jwks, data_dir, **QUIET))
        conversations_database = f"conversations_bench_{uuid.uuid4().hex[:8]}"
        conversations = stack.enter_context(
            run_conversation_service(
                mongodb.url,
                users.url,
                characters.url,
                data_dir,
                MONGODB_DATABASE=conversations_database,
                **QUIET,
            )
        )
        standin = stack.enter_context(run_standin())
        llm = stack.enter_context(
            run_llm_service(
                standin.url,
                users.url,
                data_dir,
                **{"MAX_CONCURRENCY": "64", "MAX_QUEUE": "64", **QUIET, **(llm_env or {})},
            )
        )
        messages_database = f"message_bench_{uuid.uuid4().hex[:8]}"
        values = {
            "ENVIRONMENT": "test",
            "MONGODB_URL": mongodb.url,
            "MONGODB_DATABASE": messages_database,
            "REDIS_URL": message_redis.url,
            "REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "JWKS_URL": jwks,
            "USER_SERVICE_URL": users.url,
            "CHARACTER_SERVICE_URL": characters.url,
            "CONVERSATION_SERVICE_URL": conversations.url,
            "LLM_SERVICE_URL": llm.url,
            "MESSAGES_PER_MINUTE": "1000000",
            "MAX_CONCURRENT_GENERATIONS": "64",
            "JSON_LOGS": "false",
            **QUIET,
            **(message_env or {}),
        }
        messages = stack.enter_context(
            serve_service(REPO_ROOT / "message-service", values, log_path=data_dir / "message-service.log")
        )
        yield Fleet(
            data_dir=data_dir,
            postgres=postgres,
            redis=redis,
            message_redis=message_redis,
            mongodb=mongodb,
            users_database_url=users_database_url,
            conversations_database=conversations_database,
            messages_database=messages_database,
            users=users,
            characters=characters,
            conversations=conversations,
            standin=standin,
            llm=llm,
            messages=messages,
        )


def children(pid: int) -> set[int]:
    """Every descendant of `pid` (from /proc: each process's parent)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                parent = int(file.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def rss_bytes(pids: set[int]) -> int:
    """Resident memory of the processes `pids`, summed (VmRSS from /proc; a gone one: 0)."""
    return sum(_proc_kib(f"/proc/{pid}/status", "VmRSS:") for pid in pids) * 1024


def pss_bytes(pids: set[int]) -> int:
    """Proportional resident memory of the processes `pids`, summed (Pss from /proc/<pid>/smaps_rollup):
    memory they share (PostgreSQL's shared buffers) counted once, not once per process."""
    return sum(_proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids) * 1024


def _proc_kib(path: str, key: str) -> int:
    """`key`'s value (KiB) in a /proc status file; 0 when the process is gone."""
    with contextlib.suppress(OSError), open(path) as file:
        for line in file:
            if line.startswith(key):
                return int(line.split()[1])
    return 0
