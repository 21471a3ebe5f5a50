"""One devstack per state directory: a second `make run` says where the first one is, and leaves.

The lock is an advisory `flock` on `<state dir>/devstack.lock`, held for devstack's whole life. The
kernel drops it with the process however that ends (even SIGKILL), so a stale file never blocks a start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


class AlreadyRunning(Exception):
    """Another devstack holds this state directory; the message says which and how to stop it."""


def _describe(state_dir: Path, holder: dict[str, object]) -> str:
    pid = holder.get("pid", "?")
    since = holder.get("started", "?")
    lines = [f"make run is already running here (pid {pid}, since {since}, data in {state_dir})"]
    urls_file = state_dir / "urls.json"
    try:
        urls: dict[str, str] = json.loads(urls_file.read_text())
    except (OSError, ValueError):
        lines.append("it is still starting: its table appears in its terminal once every service is ready")
    else:
        services = [name for name in urls if name.endswith("-service")]
        lines += [f"{name}: {urls[name]}/docs" for name in services]
    lines.append(f"use that one, or stop it first (Ctrl-C in its terminal, or `kill -INT {pid}`)")
    return "\n".join(lines)


@contextlib.contextmanager
def single_instance(state_dir: Path) -> Iterator[None]:
    """Hold the state directory for this process, or raise AlreadyRunning naming the holder."""
    with (state_dir / "devstack.lock").open("a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            try:
                holder = json.loads(file.read() or "{}")
            except ValueError:
                holder = {}
            raise AlreadyRunning(_describe(state_dir, holder)) from None
        file.truncate(0)
        started = time.strftime("%H:%M:%S %Z", time.localtime())
        file.write(json.dumps({"pid": os.getpid(), "started": started}))
        file.flush()
        try:
            yield
        finally:
            file.truncate(0)
