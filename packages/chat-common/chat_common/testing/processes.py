"""Real service processes for tests: `python run.py` in a service directory, on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from chat_common.embedded import free_port

# Backend and identity variables of the test process that must not leak into the child by accident.
_NOT_INHERITED = (
    "DATABASE_URL",
    "REDIS_URL",
    "MONGODB_URL",
    "JWKS_URL",
    "PORT",
    "HOST",
    "ENVIRONMENT",
    "FORWARDED_ALLOW_IPS",
)


class ServiceProcess:
    """A running service: its base URL, its log file and its process."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def serve_service(
    directory: Path,
    env: Mapping[str, str],
    *,
    log_path: Path,
    port: int | None = None,
    ready_path: str = "/ready",
    timeout: float = 90.0,
) -> Iterator[ServiceProcess]:
    """Start `python run.py` in `directory` with `env` (plus HOST and PORT) and wait until `ready_path`
    answers 200; stopped when the block ends. Its output goes to `log_path`."""
    port = port or free_port()
    child_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    child_env.update({"HOST": "127.0.0.1", "PORT": str(port), **env})
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "run.py"], cwd=directory, env=child_env, stdout=log, stderr=subprocess.STDOUT
        )
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_until_ready(service, ready_path, timeout)
        yield service
    finally:
        service.stop()


def _wait_until_ready(service: ServiceProcess, ready_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):  # not listening yet
            if httpx.get(service.url + ready_path, timeout=2).status_code == 200:
                return
        if service.process.poll() is not None:
            raise RuntimeError(
                f"{service.url} exited with {service.process.returncode}:\n{service.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.url} was not ready after {timeout:g}s:\n{service.log_tail()}")
        time.sleep(0.1)
