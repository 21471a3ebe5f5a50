"""`make clean-data` (`python -m devstack.clean`) deletes the development data, never under a live fleet."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean(state_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "devstack.clean", "--state-dir", str(state_dir)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def devstack_data(state_dir: Path) -> Path:
    """A state directory as `make run` leaves it (a few of its files)."""
    for name in ("postgres/PG_VERSION", "redis/redis.log", "user-service/jwt_private.pem"):
        (state_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (state_dir / name).write_text("data")
    return state_dir


@contextmanager
def running(command: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that has started (it printed a line), killed when the block ends."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.wait(10)


def test_clean_data_deletes_the_state_directory(tmp_path: Path) -> None:
    state_dir = devstack_data(tmp_path / ".devstack")

    result = clean(state_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    assert not state_dir.exists() and "deleted" in result.stdout
    assert clean(state_dir).returncode == 0  # again: nothing to clean


def test_clean_data_refuses_while_a_backend_keeps_a_file_open_in_it(tmp_path: Path) -> None:
    state_dir = devstack_data(tmp_path / ".devstack")
    holder = "import sys, time; log = open(sys.argv[1], 'a'); print('ready', flush=True); time.sleep(60)"

    with running([sys.executable, "-c", holder, str(state_dir / "redis" / "redis.log")], tmp_path) as backend:
        refused = clean(state_dir)

    assert refused.returncode == 1
    assert f"pid {backend.pid}" in refused.stdout and "nothing was deleted" in refused.stdout
    assert (state_dir / "postgres" / "PG_VERSION").exists()
    assert clean(state_dir).returncode == 0 and not state_dir.exists()  # once it has stopped


def test_clean_data_refuses_while_make_run_is_running(tmp_path: Path) -> None:
    """`python -m devstack` started in a checkout uses its `.devstack/`, even before opening any file."""
    checkout = tmp_path / "checkout"
    (checkout / "devstack").mkdir(parents=True)
    (checkout / "devstack" / "__main__.py").write_text(
        "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    state_dir = devstack_data(checkout / ".devstack")

    with running([sys.executable, "-m", "devstack"], checkout) as fleet:
        refused = clean(state_dir)

    assert refused.returncode == 1 and f"pid {fleet.pid}" in refused.stdout
    assert state_dir.exists()


def test_clean_data_never_deletes_the_repository(tmp_path: Path) -> None:
    result = clean(ROOT)
    assert result.returncode == 2 and (ROOT / "Makefile").exists()
