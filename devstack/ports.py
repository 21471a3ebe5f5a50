"""Who holds a TCP port: a busy service port is reported with its holder's pid and command.

The holder is found from Linux's socket tables (/proc/net/tcp{,6}: listening socket -> inode) and the
open files of each process (/proc/<pid>/fd -> socket:[inode]). Elsewhere, or for another user's
process, the holder is simply not named.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from chat_common.embedded import port_is_free

_LISTEN = "0A"


def port_busy(port: int) -> bool:
    """Taken on IPv4 loopback (what the services bind), or answered on IPv6 loopback (where a client
    asking for `localhost` may land first)."""
    if not port_is_free(port):
        return True
    with contextlib.suppress(OSError), socket.create_connection(("::1", port), timeout=0.5):
        return True
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port and inode != "0":
                    inodes.add(f"socket:[{inode}]")
    return inodes


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
        command = " ".join(raw.decode(errors="replace").split())
        return command if len(command) <= 160 else command[:157] + "..."
    return "?"


def holders(port: int) -> list[tuple[int, str]]:
    """(pid, command line) of each process with a socket listening on `port`, as far as /proc shows."""
    sockets = _listening_inodes(port)
    found: list[tuple[int, str]] = []
    if not sockets:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(entry / "fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in sockets:
                        found.append((int(entry.name), _command(int(entry.name))))
                        break
    return sorted(found)


def describe_holder(port: int) -> str:
    """`pid 123 (python -m http.server 8024)`, or why it cannot be said."""
    found = holders(port)
    if not found:
        return "a process that could not be identified (try `ss -ltnp`)"
    return ", ".join(f"pid {pid} ({command})" for pid, command in found)
