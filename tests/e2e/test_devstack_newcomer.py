"""What a newcomer meets first: `make run`'s one table, a second `make run` refused, a service that
fails to start named with its log, and `make demo` (and its curl lines) against the running fleet.

The fleet is `python -m devstack` on free ports with a fresh state dir, as `make run` starts it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from chat_common.embedded import free_port, wait_for_port
from devstack.table import describe_lmstudio
from tests.e2e.test_devstack_lifecycle import (
    SERVICES,
    Devstack,
    alive,
    descendants,
    devstack,
    listening,
    wait_until_gone,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devstack, dict[str, str]]]:
    with devstack(tmp_path_factory.mktemp("devstack")) as stack:
        urls = stack.wait_ready()
        tree = descendants(stack.process.pid)
        yield stack, urls
        # Ctrl-C: everything it started ends, every port is free again
        ports = stack.all_ports(urls)
        stack.process.send_signal(signal.SIGINT)
        assert stack.process.wait(90) == 0, stack.output
        assert wait_until_gone(tree, ports) == ([], [])


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def table_rows(output: str) -> dict[str, list[str]]:
    """The ready table's rows by service: its cells split on runs of two or more spaces."""
    lines = output.split("the fleet is ready", 1)[1].splitlines()
    rows = {}
    for line in lines:
        if not line.startswith("[devstack] "):
            continue  # a service's own log line
        cells = re.split(r"\s{2,}", line.removeprefix("[devstack] ").strip())
        if cells[0] in SERVICES:
            rows[cells[0]] = cells
    return rows


def test_the_ready_table_names_each_service_port_docs_backends_and_the_stand_in(
    fleet: tuple[Devstack, dict[str, str]],
) -> None:
    stack, urls = fleet
    seconds = float(re.findall(r"all services ready in ([0-9.]+) s", stack.output)[0])
    assert seconds < 90
    assert stack.output.count("the fleet is ready") == 1
    rows = table_rows(stack.output)
    assert sorted(rows) == sorted(SERVICES)
    port = {name: urlsplit(urls[name]).port for name in ("postgres", "redis", "mongodb", "lmstudio")}
    postgres = f"PostgreSQL :{port['postgres']} (embedded)"
    redis = f"Redis :{port['redis']} (embedded)"
    mongodb = f"MongoDB :{port['mongodb']} (nx-27017, embedded)"
    standin = f"stand-in :{port['lmstudio']} (no LM Studio answered)"
    for name, cells in rows.items():
        assert cells[1:3] == [str(urlsplit(urls[name]).port), f"{urls[name]}/docs"], cells
        assert httpx.get(cells[2], timeout=10).status_code == 200
    assert rows["user-service"][3:] == [f"{postgres}, {redis}", "-"]
    assert rows["character-service"][3:] == [postgres, "-"]
    assert rows["conversation-service"][3:] == [mongodb, "-"]
    assert rows["llm-service"][3:] == ["none", standin]
    assert rows["message-service"][3:] == [f"{mongodb}, {redis}", "through llm-service"]


def test_a_second_run_on_the_same_state_says_so_and_leaves_the_first_serving(
    fleet: tuple[Devstack, dict[str, str]],
) -> None:
    stack, urls = fleet
    second = subprocess.run(
        [sys.executable, "-m", "devstack", "--state-dir", str(stack.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f"make run is already running here (pid {stack.process.pid}" in second.stdout, second.stdout
    assert f"kill -INT {stack.process.pid}" in second.stdout
    for name in SERVICES:
        assert f"{name}: {urls[name]}/docs" in second.stdout
    # the first one is untouched: still serving, its urls.json still there
    assert (stack.state_dir / "urls.json").exists()
    for name in SERVICES:
        assert httpx.get(f"{urls[name]}/ready", timeout=10).status_code == 200, name


def test_demo_walks_the_api_and_can_run_again(fleet: tuple[Devstack, dict[str, str]]) -> None:
    stack, _ = fleet
    for _ in range(2):  # fresh user each time
        # the URLs come from the running devstack's urls.json, as after `make run`
        demo = run_demo("--state-dir", str(stack.state_dir))
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        steps = re.findall(r"^(\d+)\. ", out, flags=re.MULTILINE)
        assert steps == [str(n) for n in range(1, 13)], out
        assert "Captain Mira), lorebook entries: 1, alternate greetings: 1" in out
        assert "greeting 1 of 2" in out
        assert re.search(r"lore_after_char: \d+ tokens, sent: The lamp", out), out
        assert "-> Captain Mira: You said: Good evening! What does the lighthouse lamp look like?" in out
        assert "message.completed: reply" in out
        assert "reply 2 of 2" in out
        costs = [int(cost) for cost in re.findall(r"cost (\d+)", out)]
        assert len(costs) == 2 and min(costs) >= 1  # the sent and the streamed reply, each paid
        spent = int(re.findall(r"(\d+) credits spent", out)[0])
        assert f"balance: {100 - spent} credits" in out
        assert "2 messages sent, 3 replies" in out
        assert out.count("   $ curl") + out.count("   $ export") == 14


def test_the_demo_curl_lines_repeat_the_walk_in_a_shell(
    fleet: tuple[Devstack, dict[str, str]], tmp_path: Path
) -> None:
    stack, urls = fleet
    demo = run_demo("--state-dir", str(stack.state_dir))
    assert demo.returncode == 0, demo.stderr
    lines = [line.removeprefix("   $ ") for line in demo.stdout.splitlines() if line.startswith("   $ ")]
    script = [
        "set -eu",
        *lines,
        f"curl -s {urls['message-service']}/api/v1/analytics/me "
        f'-H "Authorization: Bearer $TOKEN" > {tmp_path}/analytics.json',
        'curl -s "' + urls["user-service"] + '/api/v1/credits" -H "Authorization: Bearer $TOKEN" '
        f"> {tmp_path}/credits.json",
    ]

    shell = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=ROOT, capture_output=True, text=True, timeout=180
    )

    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert "event: message.completed" in shell.stdout  # the streamed reply, as SSE
    totals = json.loads((tmp_path / "analytics.json").read_text())["totals"]
    assert (totals["user_messages"], totals["replies"]) == (2, 3) and totals["credits_spent"] >= 3
    assert json.loads((tmp_path / "credits.json").read_text())["balance"] == 100 - totals["credits_spent"]


def test_a_failing_step_is_named_with_its_error_body(fleet: tuple[Devstack, dict[str, str]]) -> None:
    stack, urls = fleet
    # message-service's URL pointed at character-service: it answers, but has no messages
    demo = run_demo("--state-dir", str(stack.state_dir), "--message-service", urls["character-service"])

    assert demo.returncode == 1
    assert "FAILED at step 6. Read the greeting" in demo.stderr, demo.stderr
    assert "answered 404" in demo.stderr and '"code": "not_found"' in demo.stderr, demo.stderr
    assert re.search(r"^7\. ", demo.stdout, flags=re.MULTILINE) is None  # it stopped there


def test_the_demo_with_nothing_running_says_start_make_run_first(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    demo = run_demo("--state-dir", str(tmp_path), "--user-service", nowhere)

    assert demo.returncode == 1
    assert f"Nothing answers at user-service ({nowhere})" in demo.stdout
    assert "Start `make run` first" in demo.stdout


def test_a_service_that_fails_to_start_is_named_with_its_log_and_the_rest_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESSAGES_PER_MINUTE", "0")  # only message-service reads it: it refuses to start
    with devstack(tmp_path) as stack:
        assert stack.process.wait(120) == 1, stack.output
        output = stack.output

        failure = output.split("[devstack] failed: ", 1)[1]
        assert failure.startswith("message-service exited with code 1 before it was ready"), failure
        assert f"its log ({tmp_path}/logs/message-service.log)" in failure
        assert re.search(r"^\[devstack\] +\| messages_per_minute$", failure, flags=re.MULTILINE), failure
        assert "Input should be greater than 0" in failure
        assert "[devstack] stopped" in failure
        # the other four had been started and are stopped, with every backend
        started = [command for _, _, command in stack.seen if command.endswith("run.py")]
        assert len(started) == len(SERVICES)
        assert alive(stack.seen) == []
        assert listening(list(stack.ports.values()) + [stack.lmstudio_port]) == []
        assert not (tmp_path / "urls.json").exists()


def test_the_table_tells_a_running_stand_in_from_lm_studio_and_from_something_else(tmp_path: Path) -> None:
    """What already listens on LM Studio's port is asked for its models before the table names it."""
    standin_port, locked_port, other_port = free_port(), free_port(), free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_client.standin", "--port", str(standin_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    locked = subprocess.Popen(  # an LM Studio whose server asks for a token
        [sys.executable, "-m", "lmstudio_client.standin", "--port", str(locked_port), "--api-key", "sesame"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    other = subprocess.Popen(  # an HTTP server that is not LM Studio
        [sys.executable, "-m", "http.server", str(other_port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in (standin_port, locked_port, other_port):
            wait_for_port(port)

        assert describe_lmstudio(f"http://127.0.0.1:{standin_port}", started_standin=False) == (
            f"stand-in :{standin_port} (already running)"
        )
        assert describe_lmstudio(f"http://127.0.0.1:{locked_port}", started_standin=False) == (
            f"LM Studio http://127.0.0.1:{locked_port} (its models need LMSTUDIO_API_KEY)"
        )
        assert describe_lmstudio(f"http://127.0.0.1:{other_port}", started_standin=False) == (
            f"LM Studio? http://127.0.0.1:{other_port} does not answer GET /v1/models"
        )
    finally:
        for process in (standin, locked, other):
            process.terminate()
            process.wait(10)
