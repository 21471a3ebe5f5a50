"""`make demo`: a walk through the fleet's API against a running `make run`, each step with its curl.

Register, log in, create a persona, import the character card shipped in examples/cards/, start a
conversation, read the greeting, send a message, stream a reply (SSE), regenerate it, show the balance
and the analytics. Every step prints the curl command that does the same: pasted into a shell in
order, they repeat the walk. A failed step stops the demo (exit 1) naming the step and the error body.

Base URLs: the arguments, else USER_SERVICE_URL... from the environment, else `.devstack/urls.json`
(written by `make run`, so a service moved with USER_SERVICE_PORT... is found), else the fixed ports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CARD = Path("examples/cards/captain-mira.json")  # relative to the repository root, as in the curl line
PASSWORD = "Demo-pass-2024"
DEFAULT_URLS = {
    "user-service": "http://127.0.0.1:8024",
    "character-service": "http://127.0.0.1:8020",
    "conversation-service": "http://127.0.0.1:8003",
    "message-service": "http://127.0.0.1:8009",
    "llm-service": "http://127.0.0.1:8022",
}
PICK = "| python3 -c 'import json,sys; print(json.load(sys.stdin){})'"  # one field of the JSON answer

# The curl walkthrough, a few lines per step (the README shows the same): {user}, {character}... are
# the services' base URLs, {json} and {auth} the usual headers, {id} and {token} pipes that print one
# field of the answer; $TOKEN, $CHARACTER_ID... are shell variables set by earlier lines.
CURL: dict[str, list[str]] = {
    "register": [
        "export DEMO_USER=demo-$(date +%s)-$RANDOM",
        'curl -s -X POST {user}/api/v1/auth/register {json} -d \'{{"email": "\'$DEMO_USER\'@example.com", '
        '"username": "\'$DEMO_USER\'", "display_name": "Demo User", "password": "{password}"}}\'',
    ],
    "login": [
        "export TOKEN=$(curl -s -X POST {user}/api/v1/auth/token -d username=$DEMO_USER "
        "-d password={password} {token})",
    ],
    "persona": [
        "export PERSONA_ID=$(curl -s -X POST {user}/api/v1/users/me/personas {auth} {json} "
        '-d \'{{"name": "Alex", "description": "A curious traveller who asks many questions."}}\' {id})',
    ],
    "import": [
        "export CHARACTER_ID=$(curl -s -X POST {character}/api/v1/characters/import {auth} "
        "-F file=@{card} {id})",
    ],
    "conversation": [
        "export CONVERSATION_ID=$(curl -s -X POST {conversation}/api/v1/conversations {auth} {json} "
        '-d \'{{"character_id": "\'$CHARACTER_ID\'", "persona_id": "\'$PERSONA_ID\'", '
        '"title": "At the lighthouse"}}\' {id})',
    ],
    "greeting": [
        "curl -s {message}/api/v1/conversations/$CONVERSATION_ID/messages {auth}",
    ],
    "prompt": [
        "curl -s -G {message}/api/v1/conversations/$CONVERSATION_ID/prompt {auth} "
        "--data-urlencode 'content=Good evening! What does the lighthouse lamp look like?'",
    ],
    "send": [
        "curl -s -X POST {message}/api/v1/conversations/$CONVERSATION_ID/messages {auth} {json} "
        '-d \'{{"content": "Good evening! What does the lighthouse lamp look like?", "max_tokens": 64}}\'',
    ],
    "stream": [
        "curl -sN -X POST {message}/api/v1/conversations/$CONVERSATION_ID/messages {auth} {json} "
        '-d \'{{"content": "Tell me a storm story.", "max_tokens": 64, "stream": true}}\'',
        'export REPLY_ID=$(curl -s "{message}/api/v1/conversations/$CONVERSATION_ID/messages?limit=1" {auth} '
        "{last_id})",
    ],
    "regenerate": [
        "curl -s -X POST {message}/api/v1/messages/$REPLY_ID/regenerate {auth} {json} "
        "-d '{{\"max_tokens\": 64}}'",
    ],
    "balance": [
        "curl -s {user}/api/v1/credits {auth}",
    ],
    "analytics": [
        "curl -s {message}/api/v1/analytics/me {auth}",
    ],
}
SHELL_PARTS = {
    "json": "-H 'Content-Type: application/json'",
    "auth": '-H "Authorization: Bearer $TOKEN"',
    "id": PICK.format('["id"]'),
    "token": PICK.format('["access_token"]'),
    "last_id": PICK.format('["items"][-1]["id"]'),
    "password": PASSWORD,
    "card": str(CARD),
}


def curl_lines(step: str, urls: dict[str, str]) -> list[str]:
    names = {name.removesuffix("-service"): url for name, url in urls.items()}
    return [line.format(**names, **SHELL_PARTS) for line in CURL[step]]


class StepFailed(Exception):
    """A step got an answer it did not expect, or none: the message names the step and the body."""


@dataclass
class Demo:
    urls: dict[str, str]
    client: httpx.Client
    step_title: str = ""
    steps: int = 0
    token: str = ""

    def step(self, title: str, key: str) -> None:
        """Print the step, numbered, and the curl command(s) that do the same."""
        self.steps += 1
        self.step_title = f"{self.steps}. {title}"
        print(f"\n{self.step_title}", flush=True)
        for line in curl_lines(key, self.urls):
            print(f"   $ {line}", flush=True)

    def show(self, text: str) -> None:
        print(f"   -> {text}", flush=True)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, url: str, expected: int, **kwargs: Any) -> Any:
        """The JSON answer of one request, or StepFailed naming the step, the request and the body."""
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise StepFailed(f"{method} {url}: no answer ({exc!r}); is `make run` still going?") from None
        if response.status_code != expected:
            raise StepFailed(f"{method} {url} answered {response.status_code}:\n{pretty(response.text)}")
        return response.json() if response.content else None

    def sse(self, url: str, body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) of a streamed reply, as they arrive."""
        headers = {**self.auth, "Accept": "text/event-stream"}
        try:
            with self.client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise StepFailed(f"POST {url} answered {response.status_code}:\n{pretty(response.text)}")
                event, data = "message", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        yield event, json.loads(data)
                        event, data = "message", ""
        except httpx.TransportError as exc:
            raise StepFailed(f"POST {url}: no answer ({exc!r}); is `make run` still going?") from None


def pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def run_steps(demo: Demo) -> None:
    user, character, conversation, message = (
        demo.urls[name]
        for name in ("user-service", "character-service", "conversation-service", "message-service")
    )
    username = f"demo-{uuid.uuid4().hex[:10]}"

    demo.step("Register a new user (100 free credits)", "register")
    body = {
        "email": f"{username}@example.com",
        "username": username,
        "display_name": "Demo User",
        "password": PASSWORD,
    }
    registered = demo.call("POST", f"{user}/api/v1/auth/register", 201, json=body)
    demo.show(f"201: user {registered['id']} ({username})")

    demo.step("Log in (OAuth2 password form) for an access token", "login")
    form = {"username": username, "password": PASSWORD}
    demo.token = demo.call("POST", f"{user}/api/v1/auth/token", 200, data=form)["access_token"]
    demo.show(f"200: an RS256 access token ({demo.token[:24]}...); every service verifies it")

    demo.step("Create a persona: who you are in the chat ({{user}})", "persona")
    persona_body = {"name": "Alex", "description": "A curious traveller who asks many questions."}
    persona = demo.call("POST", f"{user}/api/v1/users/me/personas", 201, json=persona_body, headers=demo.auth)
    demo.show(f"201: persona {persona['id']} ({persona['name']}, default: {persona['is_default']})")

    demo.step(f"Import the Character Card V2 shipped in {CARD}", "import")
    files = {"file": (CARD.name, (ROOT / CARD).read_bytes(), "application/json")}
    card = demo.call("POST", f"{character}/api/v1/characters/import", 201, files=files, headers=demo.auth)
    entries = len((card.get("character_book") or {}).get("entries", []))
    alternates = len(card.get("alternate_greetings") or [])
    demo.show(
        f"201: character {card['id']} ({card['name']}), lorebook entries: {entries}, "
        f"alternate greetings: {alternates}"
    )

    demo.step("Start a conversation with the character, as the persona", "conversation")
    started = {"character_id": card["id"], "persona_id": persona["id"], "title": "At the lighthouse"}
    chat = demo.call("POST", f"{conversation}/api/v1/conversations", 201, json=started, headers=demo.auth)
    demo.show(f"201: conversation {chat['id']} ({chat['title']!r})")

    messages_url = f"{message}/api/v1/conversations/{chat['id']}/messages"
    demo.step("Read the greeting (the card's first message; its alternate greeting is a swipe)", "greeting")
    greeting = demo.call("GET", messages_url, 200, headers=demo.auth)["items"][0]
    demo.show(f"{card['name']}: {greeting['content']}")
    demo.show(
        f"greeting {greeting['sibling_index'] + 1} of {greeting['sibling_count']} (the others are swipes)"
    )

    sent_text = "Good evening! What does the lighthouse lamp look like?"
    demo.step("See what the model would be sent: 'lamp' triggers the card's lorebook entry", "prompt")
    prompt_url = f"{message}/api/v1/conversations/{chat['id']}/prompt"
    prompt = demo.call("GET", prompt_url, 200, params={"content": sent_text}, headers=demo.auth)
    for section in prompt["sections"]:
        detail = f", {section['detail']}" if section["detail"] else ""
        demo.show(f"{section['name']}: {section['tokens']} tokens{detail}")

    demo.step("Send a message; the reply is generated through llm-service and paid in credits", "send")
    sent_body = {"content": sent_text, "max_tokens": 64}
    exchange = demo.call("POST", messages_url, 201, json=sent_body, headers=demo.auth)
    reply = exchange["reply"]
    demo.show(f"{card['name']}: {reply['content']}")
    demo.show(f"{reply['status']}, model {reply['generation']['model']}, cost {reply['generation']['cost']}")

    demo.step("Stream a reply (Server-Sent Events), piece by piece", "stream")
    stream_body = {"content": "Tell me a storm story.", "max_tokens": 64, "stream": True}
    print(f"   -> {card['name']}: ", end="", flush=True)
    streamed: dict[str, Any] = {}
    for event, data in demo.sse(messages_url, stream_body):
        if event == "delta":
            print(data["text"], end="", flush=True)
        elif event == "message.completed":
            streamed = data
        elif event == "error":
            raise StepFailed(f"the reply failed: {pretty(json.dumps(data))}")
    print(flush=True)
    if not streamed:
        raise StepFailed("the stream ended without a message.completed event")
    demo.show(f"message.completed: reply {streamed['id']}, cost {streamed['generation']['cost']}")

    demo.step("Regenerate that reply: a new sibling (swipe) from the same history", "regenerate")
    regenerated = demo.call(
        "POST",
        f"{message}/api/v1/messages/{streamed['id']}/regenerate",
        201,
        json={"max_tokens": 64},
        headers=demo.auth,
    )["reply"]
    demo.show(f"{card['name']}: {regenerated['content']}")
    demo.show(f"reply {regenerated['sibling_index'] + 1} of {regenerated['sibling_count']}")

    demo.step("Show the credit balance", "balance")
    balance = demo.call("GET", f"{user}/api/v1/credits", 200, headers=demo.auth)
    demo.show(f"balance: {balance['balance']} credits (three replies paid)")

    demo.step("Show your chat analytics", "analytics")
    totals = demo.call("GET", f"{message}/api/v1/analytics/me", 200, headers=demo.auth)["totals"]
    demo.show(
        f"{totals['user_messages']} messages sent, {totals['replies']} replies, "
        f"{totals['total_tokens']} tokens, {totals['credits_spent']} credits spent"
    )


def unanswered(urls: dict[str, str]) -> list[str]:
    """The services whose /health does not answer 200."""
    silent = []
    for name, url in urls.items():
        try:
            if httpx.get(f"{url}/health", timeout=3.0).status_code != 200:
                silent.append(f"{name} ({url})")
        except httpx.HTTPError:
            silent.append(f"{name} ({url})")
    return silent


def base_urls(args: argparse.Namespace, state_dir: Path) -> dict[str, str]:
    """Each service's base URL: argument, else environment, else make run's urls.json, else default."""
    try:
        running: dict[str, str] = json.loads((state_dir / "urls.json").read_text())
    except (OSError, ValueError):
        running = {}
    urls = {}
    for name, default in DEFAULT_URLS.items():
        given = getattr(args, name.replace("-", "_"))
        variable = name.upper().replace("-", "_") + "_URL"
        urls[name] = (given or os.environ.get(variable) or running.get(name) or default).rstrip("/")
    return urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    for name in DEFAULT_URLS:
        variable = name.upper().replace("-", "_") + "_URL"
        parser.add_argument(f"--{name}", dest=name.replace("-", "_"), metavar="URL", help=f"or {variable}")
    parser.add_argument(
        "--state-dir", type=Path, default=ROOT / ".devstack", help="where make run keeps urls.json"
    )
    args = parser.parse_args(argv)
    urls = base_urls(args, args.state_dir)

    if silent := unanswered(urls):
        print("Nothing answers at " + ", ".join(silent) + ".")
        print("Start `make run` first (in another terminal), wait for its table, then run `make demo`.")
        return 1
    print("Character Chat demo: " + ", ".join(f"{name} {url}" for name, url in urls.items()))
    print("Each step shows its curl command: run them in order, from the repository root, to repeat it.")
    started = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(10.0, read=120.0)) as client:
        demo = Demo(urls, client)
        try:
            run_steps(demo)
        except StepFailed as failure:
            print(f"\nFAILED at step {demo.step_title}: {failure}", file=sys.stderr)
            return 1
    print(f"\nDone in {time.monotonic() - started:.1f} s. Explore the rest at {urls['user-service']}/docs")
    print("and the other services' /docs (the table printed by `make run`).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
