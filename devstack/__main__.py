"""Start embedded backends, then every service; wait for `/ready`, print one table, stream logs.

Each service keeps its fixed port (or the one its variable, e.g. USER_SERVICE_PORT, names): a busy
port stops the start, naming the port and its holder, before anything runs. A service that dies is
named with the last lines of its log, and the rest are stopped. One devstack per state directory: a
second one says so and leaves. Every child dies with devstack, even a SIGKILLed one, and a started
shutdown runs to its end whatever signals follow.
"""

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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from dotenv import dotenv_values

from chat_common.embedded import (
    EmbeddedServer,
    die_with_parent,
    free_port,
    port_is_free,
    spawn,
    start_mongodb,
    start_postgres,
    start_redis,
    stopped_on_failure,
    wait_listening,
)
from devstack.lock import AlreadyRunning, single_instance
from devstack.ports import describe_holder, holders, port_busy
from devstack.services import SERVICES, ServiceSpec, Urls
from devstack.table import describe_backend, describe_lmstudio, fleet_table

ROOT = Path(__file__).resolve().parent.parent
Starter = Callable[[Path, int], EmbeddedServer]
BACKENDS: dict[str, tuple[str, int, Starter]] = {
    "postgres": ("DATABASE_URL", 5431, start_postgres),
    "redis": ("REDIS_URL", 6379, start_redis),
    "mongodb": ("MONGODB_URL", 27017, start_mongodb),
}
Config = dict[str, str | None]
TAIL_LINES = 25  # of a service's log, shown when it fails
READY_TIMEOUT = 120.0
OUTPUT = threading.Lock()  # log lines of the services and devstack's own never interleave mid-line


class StartError(Exception):
    """The fleet cannot start; the message says why and what to do."""


def log(message: str) -> None:
    with OUTPUT:
        print("\n".join(f"[devstack] {line}" for line in message.splitlines()), flush=True)


@dataclass
class Fleet:
    """What has been started, registered as soon as it runs so that the shutdown ends all of it."""

    urls: Urls = field(default_factory=dict)
    servers: list[EmbeddedServer] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)  # what each backend is, for the table
    tails: dict[str, deque[str]] = field(default_factory=dict)
    readers: dict[str, threading.Thread] = field(default_factory=dict)
    log_dir: Path = ROOT / ".devstack" / "logs"
    stopping: bool = False

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The first SIGINT/SIGTERM starts the shutdown; later ones cannot cut it short."""
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt
        with contextlib.suppress(OSError):  # not print(): the main thread may be inside one
            note = f"[devstack] {signal.Signals(signum).name} ignored: still stopping every process\n"
            os.write(sys.stdout.fileno(), note.encode())

    def stop(self) -> None:
        self.stopping = True
        if not (self.processes or self.servers):
            return
        log("stopping")
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within 15s: killing it")
                process.kill()
                process.wait()
        for server in reversed(self.servers):
            server.stop()
        log("stopped")

    def exited(self) -> list[str]:
        dead = [name for name, process in self.processes.items() if process.poll() is not None]
        return dead + [s.name for s in self.servers if s.process and s.process.poll() is not None]

    def last_lines(self, name: str) -> str:
        """The end of a service's log, once its reader has taken in everything the process wrote."""
        if reader := self.readers.get(name):
            reader.join(5)
        lines = list(self.tails.get(name, ()))
        where = self.log_dir / f"{name}.log"
        if not lines:
            return f"{name} wrote nothing to its log ({where})"
        return "\n".join([f"the last lines of its log ({where}):", *(f"  | {line}" for line in lines)])


def service_ports(config: Config) -> dict[str, int]:
    """Each service's port: its fixed one, or the one its variable (USER_SERVICE_PORT...) names."""
    ports: dict[str, int] = {}
    for spec in SERVICES:
        raw = config.get(spec.port_variable)
        if not raw:
            ports[spec.name] = spec.port
            continue
        if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
            raise StartError(f"{spec.port_variable}={raw!r} is not a TCP port (1-65535)")
        ports[spec.name] = int(raw)
    if len(set(ports.values())) < len(ports):
        raise StartError(f"two services were given the same port: {ports}")
    return ports


def check_service_ports(ports: dict[str, int]) -> None:
    """Fail, naming every busy service port and its holder, before anything is started."""
    busy = [spec for spec in SERVICES if port_busy(ports[spec.name])]
    if busy:
        lines = [
            f"port {ports[spec.name]} for {spec.name} ({spec.port_variable}) is in use by "
            + describe_holder(ports[spec.name])
            for spec in busy
        ]
        example = f"{busy[0].port_variable}=<a free port> make run"
        lines.append(f"stop that process, or move the service on purpose with its variable: {example}")
        raise StartError("\n".join([*lines, "nothing was started"]))
    log("service ports are free: " + ", ".join(f"{name} {port}" for name, port in ports.items()))


def backend_port(preferred: int, reserved: set[int]) -> int:
    """The backend's usual port when free, else any free port that no service or LM Studio uses."""
    if preferred not in reserved and port_is_free(preferred):
        return preferred
    port: int = free_port()
    while port in reserved:
        port = free_port()
    return port


def start_backends(
    fleet: Fleet, state_dir: Path, config: Config, needed: set[str], reserved: set[int]
) -> None:
    """Use a backend URL from the environment or .env when given, else start an embedded one."""
    for name, (variable, preferred, start) in BACKENDS.items():
        if name not in needed:
            continue
        if configured := config.get(variable):
            fleet.urls[name] = configured
            fleet.backends[name] = describe_backend(name, configured, embedded=False)
            log(f"{name}: using {variable} from the environment")
            continue
        port = backend_port(preferred, reserved)
        server = start(state_dir / name, port)
        fleet.servers.append(server)
        fleet.urls[name] = server.url
        fleet.backends[name] = describe_backend(name, server.url, embedded=True)
        log(f"{name}: embedded at {server.url}" + ("" if port == preferred else f" ({preferred} was busy)"))


def start_lmstudio(fleet: Fleet, state_dir: Path, config: Config, port: int) -> None:
    """A running LM Studio wins; otherwise the stand-in takes its port."""
    if configured := config.get("LMSTUDIO_BASE_URL"):
        log(f"lmstudio: using LMSTUDIO_BASE_URL {configured}")
        fleet.urls["lmstudio"] = configured
        fleet.backends["lmstudio"] = describe_lmstudio(configured, started_standin=False)
        return
    fleet.urls["lmstudio"] = url = f"http://127.0.0.1:{port}"
    if not port_is_free(port):
        log(f"lmstudio: something listens on {port}; using it as LM Studio")
        fleet.backends["lmstudio"] = describe_lmstudio(url, started_standin=False)
        return
    (state_dir / "lmstudio").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lmstudio_client.standin", "--port", str(port)]
    log_path = state_dir / "lmstudio" / "standin.log"
    process = spawn(command, log_path, death_signal=signal.SIGKILL)
    server = EmbeddedServer(name="lmstudio-standin", url=url, port=port, process=process)
    fleet.servers.append(server)
    with stopped_on_failure(server):
        wait_listening(process, port, "the LM Studio stand-in", log_path)
    fleet.backends["lmstudio"] = describe_lmstudio(url, started_standin=True)
    log(f"lmstudio: no LM Studio on {port}; started the STAND-IN there (echo replies, lmstudio-standin/*)")


def pipe_logs(name: str, process: subprocess.Popen[str], tail: deque[str], log_path: Path) -> None:
    """Each line to the terminal with the service's name, to its log file, and to its tail."""
    assert process.stdout is not None
    width = max(len(s.name) for s in SERVICES)
    with log_path.open("w") as file:
        for raw in process.stdout:
            line = raw.rstrip()
            tail.append(line)
            file.write(line + "\n")
            file.flush()
            with OUTPUT:
                print(f"{name:<{width}} | {line}", flush=True)


def start_service(fleet: Fleet, spec: ServiceSpec, state_dir: Path, config: Config) -> None:
    env = {k: v for k, v in config.items() if v is not None}
    env.update(os.environ)
    env.update(spec.env(fleet.urls))
    env.update(
        {
            "PORT": fleet.urls[spec.name].rsplit(":", 1)[1],
            "HOST": "127.0.0.1",
            "DATA_DIR": str(state_dir / spec.name),
            "JSON_LOGS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # A stateless process: killed outright if devstack dies (a graceful stop could wait on a stream).
    fleet.processes[spec.name] = process = subprocess.Popen(
        [sys.executable, "run.py"],
        cwd=ROOT / spec.name,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    fleet.tails[spec.name] = tail
    fleet.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = fleet.log_dir / f"{spec.name}.log"
    reader = threading.Thread(target=pipe_logs, args=(spec.name, process, tail, log_path), daemon=True)
    fleet.readers[spec.name] = reader
    reader.start()


def is_ready(fleet: Fleet, name: str, port: int) -> bool:
    """`/ready` answers 200 from this very service's process (not from whatever else took its port)."""
    process = fleet.processes[name]
    taken = f"{name} could not listen on port {port}: it is in use by "
    if process.poll() is not None:
        if port_busy(port):
            raise StartError(taken + describe_holder(port))
        code = process.returncode
        raise StartError(f"{name} exited with code {code} before it was ready; {fleet.last_lines(name)}")
    with contextlib.suppress(httpx.HTTPError):
        if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0).status_code == 200:
            found = [pid for pid, _ in holders(port)]
            if found and process.pid not in found:
                raise StartError(taken + describe_holder(port))
            return True
    return False


def wait_all_ready(fleet: Fleet, ports: dict[str, int], timeout: float = READY_TIMEOUT) -> None:
    """Every service's `/ready`, watched together: the first to die fails the start at once."""
    waiting = [spec.name for spec in SERVICES]
    deadline = time.monotonic() + timeout
    while waiting:
        waiting = [name for name in waiting if not is_ready(fleet, name, ports[name])]
        if waiting and time.monotonic() > deadline:
            name = waiting[0]
            raise StartError(f"{name} was not ready after {timeout:.0f}s; {fleet.last_lines(name)}")
        if waiting:
            time.sleep(0.3)


def run(fleet: Fleet, state_dir: Path, config: Config, lmstudio_port: int, started: float) -> int:
    ports = service_ports(config)
    check_service_ports(ports)
    needed = {backend for spec in SERVICES for backend in spec.needs}
    start_backends(fleet, state_dir, config, needed, reserved={*ports.values(), lmstudio_port})
    if "lmstudio" in needed:
        start_lmstudio(fleet, state_dir, config, lmstudio_port)
    for spec in SERVICES:
        fleet.urls[spec.name] = f"http://127.0.0.1:{ports[spec.name]}"
    for spec in SERVICES:
        start_service(fleet, spec, state_dir, config)
    wait_all_ready(fleet, ports)
    (state_dir / "urls.json").write_text(json.dumps(fleet.urls, indent=2))
    elapsed = time.monotonic() - started
    table = fleet_table(fleet.urls, fleet.backends)
    log(f"the fleet is ready: all services ready in {elapsed:.1f} s\n{table}")
    log(f"logs: {fleet.log_dir}/<service>.log; try `make demo` in another terminal; Ctrl-C stops everything")
    while not (dead := fleet.exited()):
        time.sleep(0.5)
    log(f"{', '.join(dead)} exited: the whole fleet stops")
    for name in dead:
        if name in fleet.processes:
            log(f"{name}: {fleet.last_lines(name)}")
    return 1


def tcp_port(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a TCP port (1-65535)")
    return int(raw)


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
        type=tcp_port,
        default=1234,
        help="where LM Studio is looked for, and the stand-in started if none answers",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        with single_instance(state_dir):
            return start_and_serve(state_dir, args.lmstudio_port, started)
    except AlreadyRunning as running:
        log(str(running))
        return 1


def start_and_serve(state_dir: Path, lmstudio_port: int, started: float) -> int:
    """Run the fleet until Ctrl-C, SIGTERM or a death; stop everything that was started, always."""
    config: Config = {**dotenv_values(ROOT / ".env"), **os.environ}
    fleet = Fleet(log_dir=state_dir / "logs")
    # Ctrl-C and SIGTERM both stop the fleet, even when started in the background (where a shell
    # starts Python with SIGINT ignored); once stopping, neither can interrupt the clean-up.
    signal.signal(signal.SIGINT, fleet.on_signal)
    signal.signal(signal.SIGTERM, fleet.on_signal)
    try:
        return run(fleet, state_dir, config, lmstudio_port, started)
    except KeyboardInterrupt:
        return 0
    except (StartError, TimeoutError, OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        log(f"failed: {lines[0]}")
        for line in lines[1:]:
            log(f"  {line}")
        return 1
    finally:
        fleet.stopping = True
        (state_dir / "urls.json").unlink(missing_ok=True)
        fleet.stop()


if __name__ == "__main__":
    sys.exit(main())
