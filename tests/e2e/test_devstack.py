"""`make run`'s devstack: the services on embedded backends answer, and data survives a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from chat_common.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("user-service", "character-service", "conversation-service", "llm-service", "message-service")
BACKEND_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MONGODB_URL", "LMSTUDIO_BASE_URL")


@contextmanager
def devstack(state_dir: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_VARIABLES}
    env["BCRYPT_ROUNDS"] = "10"
    # the services' fixed ports (8024...) may be taken on this machine: move them on purpose
    ports: set[int] = set()
    while len(ports) < 6:
        ports.add(free_port())
    *service_ports, lmstudio_port = sorted(ports)
    env |= {
        "USER_SERVICE_PORT": str(service_ports[0]),
        "CHARACTER_SERVICE_PORT": str(service_ports[1]),
        "CONVERSATION_SERVICE_PORT": str(service_ports[2]),
        "LLM_SERVICE_PORT": str(service_ports[3]),
        "MESSAGE_SERVICE_PORT": str(service_ports[4]),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "--state-dir",
            str(state_dir),
            "--lmstudio-port",
            str(lmstudio_port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    urls_file = state_dir / "urls.json"
    try:
        deadline = time.monotonic() + 120
        while not urls_file.exists():
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "devstack did not become ready"
            time.sleep(0.2)
        yield json.loads(urls_file.read_text())
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        assert process.wait(60) == 0
        assert not urls_file.exists()


def wait_for_conversation_count(base: str, character_id: str, token: str, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(
            f"{base}/api/v1/characters/{character_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        count = int(response.json()["conversation_count"])
        if count or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def test_devstack_serves_the_fleet_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    user = {
        "email": f"dev{suffix}@example.com",
        "username": f"dev{suffix}",
        "display_name": "Dev",
        "password": "Restart-proof-42",
    }
    login_form = {"username": user["username"], "password": user["password"]}
    with devstack(tmp_path) as urls:
        base = urls["user-service"]
        assert urls["postgres"].startswith("postgresql://") and urls["redis"].startswith("redis://")
        assert urls["mongodb"].startswith("mongodb://")
        for service in SERVICES:
            for path in ("/docs", "/health", "/ready", "/metrics"):
                assert httpx.get(urls[service] + path, timeout=10).status_code == 200, (service, path)
        assert httpx.post(f"{base}/api/v1/auth/register", json=user, timeout=10).status_code == 201
        token = httpx.post(f"{base}/api/v1/auth/token", data=login_form, timeout=10).json()["access_token"]
        created = httpx.post(
            f"{urls['character-service']}/api/v1/characters",
            json={"name": "Restart Survivor", "greeting": "Still here, {{user}}."},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        started = httpx.post(
            f"{urls['conversation-service']}/api/v1/conversations",
            json={"character_id": created.json()["id"], "title": "Before the restart"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert started.status_code == 201, started.text
        # told in the background, with conversation-service's service token
        assert wait_for_conversation_count(urls["character-service"], created.json()["id"], token) == 1
        # message-service answers the greeting through llm-service and the stand-in, paid in credits
        sent = httpx.post(
            f"{urls['message-service']}/api/v1/conversations/{started.json()['id']}/messages",
            json={"content": "hello message-service", "max_tokens": 32},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert sent.status_code == 201, sent.text
        reply = sent.json()["reply"]
        assert reply["status"] == "completed" and reply["content"].startswith("You said:"), reply
        assert reply["generation"]["cost"] >= 1

    with devstack(tmp_path) as urls:
        login = httpx.post(f"{urls['user-service']}/api/v1/auth/token", data=login_form, timeout=10)
        assert login.status_code == 200
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        # a user-service token, verified by the other services against the real JWKS over HTTP
        mine = httpx.get(f"{urls['character-service']}/api/v1/characters/mine", headers=auth, timeout=10)
        assert [c["name"] for c in mine.json()["items"]] == ["Restart Survivor"]
        # conversation-service kept it on the embedded MongoDB, with its character snapshot
        conversations = httpx.get(
            f"{urls['conversation-service']}/api/v1/conversations", headers=auth, timeout=10
        ).json()["items"]
        assert [(c["title"], c["character"]["name"]) for c in conversations] == [
            ("Before the restart", "Restart Survivor")
        ]
        # and message-service kept the greeting, the message and its reply
        messages = httpx.get(
            f"{urls['message-service']}/api/v1/conversations/{conversations[0]['id']}/messages",
            headers=auth,
            timeout=10,
        ).json()["items"]
        assert [(m["role"], m["status"]) for m in messages] == [
            ("assistant", "completed"),
            ("user", "completed"),
            ("assistant", "completed"),
        ]
        assert messages[1]["content"] == "hello message-service"
        reply = httpx.post(
            f"{urls['llm-service']}/api/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hello fleet"}]},
            headers=auth,
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "You said: hello fleet"
        assert reply.json()["model"].startswith("lmstudio-standin/")
