"""The containers' HEALTHCHECK command: healthy only while the service's /ready says so."""

from __future__ import annotations

import subprocess
import sys

from chat_common.app import create_service_app
from chat_common.embedded import free_port
from chat_common.settings import CommonSettings
from chat_common.testing import serve_app


def healthcheck(url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "chat_common.healthcheck", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_healthy_when_ready_and_unhealthy_naming_the_failed_check_when_not() -> None:
    app = create_service_app(CommonSettings(service_name="demo"), title="demo", description="demo")
    state = {"up": True}

    async def database() -> None:
        if not state["up"]:
            raise ConnectionError("database down")

    app.state.readiness_checks = {"database": database}
    with serve_app(app) as base_url:
        ready = healthcheck(f"{base_url}/ready")
        state["up"] = False
        not_ready = healthcheck(f"{base_url}/ready")

    assert (ready.returncode, ready.stderr) == (0, "")
    assert not_ready.returncode == 1
    assert "answered 503" in not_ready.stderr and "database" in not_ready.stderr


def test_unhealthy_when_nothing_listens() -> None:
    result = healthcheck(f"http://127.0.0.1:{free_port()}/ready")

    assert result.returncode == 1
    assert "unreachable" in result.stderr
