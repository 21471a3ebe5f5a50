"""`make run`'s devstack: user-service on embedded backends answers, and data survives a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BACKEND_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL")


@contextmanager
def devstack(state_dir: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_VARIABLES}
    env["BCRYPT_ROUNDS"] = "10"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--state-dir", str(state_dir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    urls_file = state_dir / "urls.json"
    try:
        deadline = time.monotonic() + 120
        while not urls_file.exists():
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "devstack did not become ready"
            time.sleep(0.2)
        yield json.loads(urls_file.read_text())
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert process.wait(60) == 0
        assert not urls_file.exists()


def test_devstack_serves_user_service_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    user = {
        "email": f"dev{suffix}@example.com",
        "username": f"dev{suffix}",
        "display_name": "Dev",
        "password": "Restart-proof-42",
    }
    with devstack(tmp_path) as urls:
        base = urls["user-service"]
        assert urls["postgres"].startswith("postgresql://") and urls["redis"].startswith("redis://")
        for path in ("/docs", "/health", "/ready", "/metrics"):
            assert httpx.get(base + path, timeout=10).status_code == 200, path
        assert httpx.post(f"{base}/api/v1/auth/register", json=user, timeout=10).status_code == 201

    with devstack(tmp_path) as urls:
        login = httpx.post(
            f"{urls['user-service']}/api/v1/auth/token",
            data={"username": user["username"], "password": user["password"]},
            timeout=10,
        )
        assert login.status_code == 200
