"""Test helpers for the fleet: real backends (embedded unless TEST_*_URL is set) and RSA keys.

The pytest fixtures live in `chat_common.testing.plugin`, registered as a pytest plugin, so every
service's suite can ask for `postgres_url`, `redis_url`, `mongodb_url` and `rsa_private_key_pem`.
"""

from chat_common.testing.keys import generate_rsa_private_key_pem
from chat_common.testing.postgres import create_database
from chat_common.testing.processes import ServiceProcess, serve_service
from chat_common.testing.servers import serve_app
from chat_common.testing.tokens import TokenMint

__all__ = [
    "ServiceProcess",
    "TokenMint",
    "create_database",
    "generate_rsa_private_key_pem",
    "serve_app",
    "serve_service",
]
