"""Every service's /docs and /redoc work offline: each page and everything it loads (Swagger UI's and
ReDoc's scripts and style, the OpenAPI document, the OAuth2 redirect page) comes from the service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_common.testing.docs import offline_problems
from devstack.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent
# Each service has its own `app` package, so each is imported in a process of its own.
CRAWL = (
    "import asyncio, json; from app.main import app; from chat_common.testing.docs import crawl_docs; "
    "print(json.dumps(asyncio.run(crawl_docs(app))))"
)


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_service_docs_and_redoc_load_everything_from_the_service(name: str) -> None:
    environment = {**os.environ, "ENVIRONMENT": "development", "LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-c", CRAWL]
    result = subprocess.run(
        command, cwd=ROOT / name, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert offline_problems(report) == []
    assert report["fetched"]["http://service.test/openapi.json"]["status"] == 200
