"""Start embedded backends, then every service; wait for `/ready`, print URLs, stream logs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from dotenv import dotenv_values

from chat_common.embedded import (
    EmbeddedServer,
    free_port,
    port_is_free,
    spawn,
    start_mongodb,
    start_postgres,
    start_redis,
    wait_for_port,
)
from devstack.services import SERVICES, ServiceSpec, Urls

ROOT = Path(__file__).resolve().parent.parent
Starter = Callable[[Path, int], EmbeddedServer]
BACKENDS: dict[str, tuple[str, int, Starter]] = {
    "postgres": ("DATABASE_URL", 5431, start_postgres),
    "redis": ("REDIS_URL", 6379, start_redis),
    "mongodb": ("MONGODB_URL", 27017, start_mongodb),
}


def log(message: str) -> None:
    print(f"[devstack] {message}", flush=True)


def start_lmstudio(
    state_dir: Path, config: dict[str, str | None], port: int
) -> tuple[str, EmbeddedServer | None]:
    """A running LM Studio wins; otherwise the stand-in takes its port."""
    if configured := config.get("LMSTUDIO_BASE_URL"):
        log(f"lmstudio: using LMSTUDIO_BASE_URL {configured}")
        return configured, None
    url = f"http://127.0.0.1:{port}"
    if not port_is_free(port):
        log(f"lmstudio: something listens on {port}; using it as LM Studio")
        return url, None
    (state_dir / "lmstudio").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lmstudio_client.standin", "--port", str(port)]
    process = spawn(command, state_dir / "lmstudio" / "standin.log")
    wait_for_port(port)
    log(f"lmstudio: no LM Studio on {port}; started the STAND-IN there (echo replies, lmstudio-standin/*)")
    return url, EmbeddedServer(name="lmstudio-standin", url=url, port=port, process=process)


def start_backends(
    state_dir: Path, config: dict[str, str | None], needed: set[str]
) -> tuple[Urls, list[EmbeddedServer]]:
    """Use a backend URL from the environment or .env when given, else start an embedded one."""
    urls: Urls = {}
    servers: list[EmbeddedServer] = []
    for name, (variable, preferred, start) in BACKENDS.items():
        if name not in needed:
            continue
        if configured := config.get(variable):
            urls[name] = configured
            log(f"{name}: using {variable} from the environment")
            continue
        port = free_port(preferred)
        server = start(state_dir / name, port)
        servers.append(server)
        urls[name] = server.url
        log(f"{name}: embedded at {server.url}" + ("" if port == preferred else f" ({preferred} was busy)"))
    return urls, servers


def pipe_logs(name: str, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    width = max(len(s.name) for s in SERVICES)
    for line in process.stdout:
        print(f"{name:<{width}} | {line.rstrip()}", flush=True)


def start_service(
    spec: ServiceSpec, urls: Urls, state_dir: Path, config: dict[str, str | None]
) -> subprocess.Popen[str]:
    env = {k: v for k, v in config.items() if v is not None}
    env.update(os.environ)
    env.update(spec.env(urls))
    env.update(
        {
            "PORT": urls[spec.name].rsplit(":", 1)[1],
            "HOST": "127.0.0.1",
            "DATA_DIR": str(state_dir / spec.name),
            "JSON_LOGS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "run.py"],
        cwd=ROOT / spec.name,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    threading.Thread(target=pipe_logs, args=(spec.name, process), daemon=True).start()
    return process


def wait_ready(name: str, url: str, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{name} was not ready after {timeout:.0f}s")


def stop(processes: dict[str, subprocess.Popen[str]], servers: list[EmbeddedServer]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    for server in reversed(servers):
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=ROOT / ".devstack",
        help="where embedded data lives between runs (default: .devstack/)",
    )
    parser.add_argument(
        "--lmstudio-port",
        type=int,
        default=1234,
        help="where LM Studio is looked for, and the stand-in started if none answers",
    )
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    config = {**dotenv_values(ROOT / ".env"), **os.environ}
    needed = {backend for spec in SERVICES for backend in spec.needs}

    processes: dict[str, subprocess.Popen[str]] = {}
    servers: list[EmbeddedServer] = []
    # Ctrl-C and SIGTERM both stop the fleet, even when started in the background (where a shell
    # starts Python with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        urls, servers = start_backends(state_dir, config, needed)
        if "lmstudio" in needed:
            urls["lmstudio"], standin = start_lmstudio(state_dir, config, args.lmstudio_port)
            servers += [standin] if standin else []
        for spec in SERVICES:
            urls[spec.name] = f"http://127.0.0.1:{free_port(spec.port)}"
        for spec in SERVICES:
            processes[spec.name] = start_service(spec, urls, state_dir, config)
        for spec in SERVICES:
            wait_ready(spec.name, urls[spec.name], processes[spec.name])
        (state_dir / "urls.json").write_text(json.dumps(urls, indent=2))
        log("the fleet is ready:")
        for spec in SERVICES:
            log(f"  {spec.name:<22} {urls[spec.name]}/docs")
        log("Ctrl-C stops everything")
        while True:
            if any(p.poll() is not None for p in processes.values()):
                dead = [n for n, p in processes.items() if p.poll() is not None]
                log(f"stopping: {', '.join(dead)} exited")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        log("stopping")
        (state_dir / "urls.json").unlink(missing_ok=True)
        stop(processes, servers)


if __name__ == "__main__":
    sys.exit(main())
