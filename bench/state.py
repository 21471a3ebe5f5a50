"""A bench's own state: embedded backends and services in a temporary directory, removed at the end.

A bench never writes to the development data that `make run` serves (`.devstack/`): what it seeds
(10,000 characters, hundreds of users) would otherwise stay in the developer's catalogue.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from chat_common.embedded import free_port, start_postgres, start_redis
from chat_common.testing import ServiceProcess
from chat_common.testing.fleet import run_character_service, run_user_service

QUIET = {"LOG_LEVEL": "WARNING"}


@dataclass
class OwnFleet:
    data_dir: Path
    users: ServiceProcess
    characters: ServiceProcess | None


@contextmanager
def own_fleet(prefix: str, *, characters: bool = False, **user_env: str) -> Iterator[OwnFleet]:
    """user-service (and character-service) on a PostgreSQL and a Redis of their own, in a temporary
    directory; `user_env` overrides user-service's settings."""
    with tempfile.TemporaryDirectory(prefix=prefix) as temp, ExitStack() as stack:
        data_dir = Path(temp)
        postgres = start_postgres(data_dir / "postgres", free_port())
        stack.callback(postgres.stop)
        redis = start_redis(data_dir / "redis", free_port(), persist=False)
        stack.callback(redis.stop)
        users = stack.enter_context(
            run_user_service(postgres.url, redis.url, data_dir, **{**QUIET, **user_env})
        )
        catalogue = None
        if characters:
            catalogue = stack.enter_context(
                run_character_service(postgres.url, f"{users.url}/.well-known/jwks.json", data_dir, **QUIET)
            )
        yield OwnFleet(data_dir, users, catalogue)
