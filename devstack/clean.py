"""`python -m devstack.clean` (`make clean-data`): delete the development data of `make run`.

Removes the state directory (`.devstack/` by default: the embedded PostgreSQL, Redis and MongoDB data,
the services' data such as user-service's development signing keys, the logs), so the next `make run`
starts from empty databases. It refuses while a fleet runs on that directory: `python -m devstack`
itself, or any process with a file, its working directory or its command line inside it (the embedded
servers and the stand-in keep their logs open there). Backends given by URL in the environment or
`.env` are not touched. Standard library only, so it runs before `make install`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _command_line(pid: str) -> list[str]:
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return []


def _devstack_state_dir(pid: str, argv: list[str]) -> Path | None:
    """The state directory of a `python -m devstack` process, or None for any other process."""
    if "-m" not in argv or argv.index("-m") + 1 >= len(argv) or argv[argv.index("-m") + 1] != "devstack":
        return None
    with contextlib.suppress(OSError):
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        rest = argv[argv.index("-m") + 2 :]
        for i, arg in enumerate(rest):
            if arg == "--state-dir" and i + 1 < len(rest):
                return (cwd / rest[i + 1]).resolve()
            if arg.startswith("--state-dir="):
                return (cwd / arg.split("=", 1)[1]).resolve()
        return (cwd / ".devstack").resolve()
    return None


def _uses(pid: str, argv: list[str], state_dir: Path) -> bool:
    inside = str(state_dir) + os.sep
    if _devstack_state_dir(pid, argv) == state_dir:
        return True
    if any(arg == str(state_dir) or arg.startswith(inside) for arg in argv):
        return True
    with contextlib.suppress(OSError):
        paths = [os.readlink(f"/proc/{pid}/cwd")]
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                paths.append(os.readlink(fd.path))
        return any(path == str(state_dir) or path.startswith(inside) for path in paths)
    return False


def users_of(state_dir: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process (that /proc lets us see) using `state_dir`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        argv = _command_line(entry.name)
        if argv and _uses(entry.name, argv, state_dir):
            command = " ".join(argv)
            found.append((int(entry.name), command if len(command) <= 120 else command[:117] + "..."))
    return sorted(found)


def clean(state_dir: Path) -> int:
    state_dir = state_dir.resolve()
    if state_dir == ROOT or state_dir in ROOT.parents or state_dir == Path.home():
        print(
            f"refusing to delete {state_dir}: it holds the repository or your home, not only devstack's data"
        )
        return 2
    if not state_dir.exists():
        print(f"{state_dir} does not exist: nothing to clean")
        return 0
    running = users_of(state_dir)
    if running:
        print(f"refusing to delete {state_dir}: `make run` (or a process of its fleet) is using it:")
        for pid, command in running:
            print(f"  pid {pid}: {command}")
        print("stop it first (Ctrl-C in its terminal), then run `make clean-data` again; nothing was deleted")
        return 1
    shutil.rmtree(state_dir)
    print(f"deleted {state_dir}: the next `make run` starts with empty databases")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.clean", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=ROOT / ".devstack",
        help="the directory to delete (default: .devstack/)",
    )
    args = parser.parse_args(argv)
    return clean(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
