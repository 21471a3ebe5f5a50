"""`make run`'s devstack owns its ports and its children: a busy service port stops the start, and
neither SIGKILL nor repeated Ctrl-C leaves a process or a listening port behind.

Every devstack here runs on service ports moved (by environment) to free ports and a fresh state dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from chat_common.embedded import distinct_free_ports

ROOT = Path(__file__).resolve().parents[2]
BACKEND_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "LMSTUDIO_BASE_URL")
PORT_VARIABLES = (
    "USER_SERVICE_PORT",
    "CHARACTER_SERVICE_PORT",
    "CONVERSATION_SERVICE_PORT",
    "LLM_SERVICE_PORT",
    "MESSAGE_SERVICE_PORT",
)
SERVICES = ("user-service", "character-service", "conversation-service", "llm-service", "message-service")

Proc = tuple[int, int, str]  # pid, start time (clock ticks since boot), command line


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) from /proc/<pid>/stat, or None when the pid is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> set[Proc]:
    """Every live process below `root`, found from the parent pid of each process in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] not in "ZX":
            children.setdefault(stat[1], []).append(int(entry.name))
    found: set[Proc] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if stat := _stat(pid):
            found.add((pid, stat[2], _cmdline(pid)))
        todo += children.get(pid, [])
    return found


def alive(procs: set[Proc]) -> list[Proc]:
    """Those still running: same pid and start time (not reused), not a zombie."""
    return [p for p in procs if (stat := _stat(p[0])) and stat[0] not in "ZX" and stat[2] == p[1]]


def listening(ports: list[int]) -> list[int]:
    open_ports = []
    for port in ports:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            open_ports.append(port)
    return open_ports


class Devstack:
    """`python -m devstack` as a child, its output collected, its process tree sampled while it runs."""

    def __init__(self, state_dir: Path, **ports: int) -> None:
        self.state_dir = state_dir
        free = distinct_free_ports(len(PORT_VARIABLES) + 1)
        self.ports = dict(zip(PORT_VARIABLES, free, strict=False)) | ports
        self.lmstudio_port = free[-1]
        env = {k: v for k, v in os.environ.items() if k not in BACKEND_VARIABLES}
        env |= {k: str(v) for k, v in self.ports.items()} | {"BCRYPT_ROUNDS": "10"}
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "devstack", "--state-dir", str(state_dir)),
                *("--lmstudio-port", str(self.lmstudio_port)),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.seen: set[Proc] = set()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def _sample(self) -> None:
        while self.process.poll() is None:
            self.seen |= descendants(self.process.pid)
            time.sleep(0.1)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"devstack exited before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n{self.output}"
            time.sleep(0.05)

    def wait_ready(self) -> dict[str, str]:
        self.wait_for_line("the fleet is ready")
        urls: dict[str, str] = json.loads((self.state_dir / "urls.json").read_text())
        return urls

    def all_ports(self, urls: dict[str, str]) -> list[int]:
        backends = [urlsplit(urls[name]).port for name in ("postgres", "redis", "mongodb")]
        return [*self.ports.values(), self.lmstudio_port, *[p for p in backends if p]]

    def cleanup(self) -> None:
        """After a failed assertion: end what this test started, by pid (and a detached postmaster)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid, _, _ in alive(self.seen):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        pid_file = self.state_dir / "postgres" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)


@contextlib.contextmanager
def devstack(state_dir: Path, **ports: int) -> Iterator[Devstack]:
    stack = Devstack(state_dir, **ports)
    try:
        yield stack
    finally:
        stack.cleanup()


def wait_until_gone(procs: set[Proc], ports: list[int], timeout: float = 10) -> tuple[list[Proc], list[int]]:
    deadline = time.monotonic() + timeout
    while (left := (alive(procs), listening(ports))) != ([], []) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def assert_whole_fleet(procs: set[Proc]) -> None:
    commands = [command for _, _, command in procs]
    for needle in ("redis-server", "bin/postgres", "nx_27017", "lmstudio_client.standin"):
        assert any(needle in command for command in commands), (needle, commands)
    assert sum(command.endswith("run.py") for command in commands) == len(SERVICES), commands


def test_sigkill_of_devstack_leaves_no_child_and_no_port(tmp_path: Path) -> None:
    with devstack(tmp_path) as stack:
        urls = stack.wait_ready()
        tree = descendants(stack.process.pid)
        assert_whole_fleet(tree)
        ports = stack.all_ports(urls)
        assert listening(ports) == ports

        stack.process.send_signal(signal.SIGKILL)
        stack.process.wait()

        assert wait_until_gone(tree, ports, timeout=10) == ([], [])


def test_two_ctrl_c_and_a_sigterm_during_shutdown_leave_nothing_running(tmp_path: Path) -> None:
    with devstack(tmp_path) as stack:
        urls = stack.wait_ready()
        tree = descendants(stack.process.pid)
        assert_whole_fleet(tree)
        ports = stack.all_ports(urls)

        stack.process.send_signal(signal.SIGINT)
        stack.wait_for_line("[devstack] stopping")
        stack.process.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
        stack.process.send_signal(signal.SIGTERM)

        assert stack.process.wait(90) == 0, stack.output
        assert "[devstack] stopped" in stack.output
        # the clean-up ran to its end: nothing left to wait for
        assert (alive(tree), listening(ports)) == ([], [])
        assert not (tmp_path / "urls.json").exists()


def test_a_busy_service_port_fails_the_start_naming_port_and_holder(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        with devstack(tmp_path, CHARACTER_SERVICE_PORT=busy) as stack:
            assert stack.process.wait(60) == 1, stack.output
            output = stack.output
            assert f"port {busy}" in output and "CHARACTER_SERVICE_PORT" in output, output
            assert f"pid {os.getpid()}" in output, output  # the holder: this test process
            # nothing was started: no backend data dir, no stand-in, no process left
            assert sorted(p.name for p in tmp_path.iterdir()) == ["devstack.lock"]
            assert listening([stack.lmstudio_port]) == []
            assert alive(stack.seen) == []


def test_a_service_port_taken_after_the_check_stops_the_whole_stack(tmp_path: Path) -> None:
    with devstack(tmp_path) as stack, socket.socket() as thief:
        stack.wait_for_line("[devstack] service ports are free")
        # backends start next (seconds): take user-service's port before it binds it
        thief.bind(("127.0.0.1", stack.ports["USER_SERVICE_PORT"]))
        thief.listen()
        assert stack.process.wait(120) == 1, stack.output
        port = stack.ports["USER_SERVICE_PORT"]
        assert f"user-service could not listen on port {port}" in stack.output, stack.output
        assert f"pid {os.getpid()}" in stack.output
        assert any("bin/postgres" in command for _, _, command in stack.seen), stack.seen
        assert alive(stack.seen) == []
        assert not (tmp_path / "postgres" / "postmaster.pid").exists()


EMBEDDED_SCRIPT = """
import json, sys, time
from pathlib import Path
from chat_common.embedded import free_port, start_mongodb, start_postgres, start_redis
state = Path(sys.argv[1])
servers = [start(state / name, free_port()) for name, start in
           (("postgres", start_postgres), ("redis", start_redis), ("mongodb", start_mongodb))]
print(json.dumps([server.port for server in servers]), flush=True)
time.sleep(600)
"""


def test_embedded_servers_die_with_their_starter(tmp_path: Path) -> None:
    """The servers behind devstack and the test fixtures: postgres, redis-server and nx-27017."""
    starter = subprocess.Popen(
        [sys.executable, "-c", EMBEDDED_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    tree: set[Proc] = set()
    try:
        assert starter.stdout is not None
        ports: list[int] = json.loads(starter.stdout.readline())
        tree = descendants(starter.pid)
        commands = [command for _, _, command in tree]
        for needle in ("bin/postgres", "redis-server", "nx_27017"):
            assert any(needle in command for command in commands), (needle, commands)
        assert listening(ports) == ports

        starter.kill()
        starter.wait()

        assert wait_until_gone(tree, ports, timeout=10) == ([], [])
    finally:
        starter.kill()
        starter.wait()
        for pid, _, _ in alive(tree):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            pid_file = tmp_path / "postgres" / "postmaster.pid"
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
