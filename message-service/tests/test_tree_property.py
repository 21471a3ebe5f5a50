"""A property of the message tree: random sequences of send, regenerate, continue, select, edit (with
or without a reply) and delete over the real service keep the active path consistent.

A seeded random loop (reproducible: a failure names its seed and step) drives the API and keeps a
model of the tree (parents, children in creation order); after every step the path from GET
/messages must be a chain from a root, every message on it must exist with the sibling index and
count that GET /siblings and the model give, deleted messages must be 404, and the path must end
where the step says (the new reply, the newest leaf under a selected message, the parent's newest
branch after deleting the active leaf).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from chat_common.testing.fleet import FleetUser
from tests.conftest import Fleet

SEEDS = (1, 2, 3, 4, 5)  # about 5 s each
STEPS = 25
OPTIONS = {"max_tokens": 3}
OPERATIONS = ("send", "send", "regenerate", "continue", "select", "edit", "edit_reply", "delete")


@dataclass
class Model:
    """The tree as the test expects it: each message's parent, children oldest first, roles."""

    parent: dict[str, str | None] = field(default_factory=dict)
    role: dict[str, str] = field(default_factory=dict)
    children: dict[str | None, list[str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    leaf: str = ""

    def add(self, message: dict[str, Any]) -> None:
        self.parent[message["id"]] = message["parent_id"]
        self.role[message["id"]] = message["role"]
        self.children.setdefault(message["parent_id"], []).append(message["id"])

    def path(self, leaf: str) -> list[str]:
        found: list[str] = []
        current: str | None = leaf
        while current is not None:
            found.append(current)
            current = self.parent[current]
        return found[::-1]

    def newest_leaf_below(self, message_id: str) -> str:
        while self.children.get(message_id):
            message_id = self.children[message_id][-1]
        return message_id

    def below(self, message_id: str) -> list[str]:
        found, pending = [message_id], [message_id]
        while pending:
            children = self.children.get(pending.pop(), [])
            found.extend(children)
            pending.extend(children)
        return found

    def remove(self, message_id: str) -> None:
        doomed = self.below(message_id)
        parent = self.parent[message_id]
        self.children[parent].remove(message_id)
        for gone in doomed:
            del self.parent[gone]
            del self.role[gone]
            self.children.pop(gone, None)
        self.deleted.update(doomed)
        if self.leaf in doomed:
            roots = self.children.get(None, [])
            self.leaf = (
                self.newest_leaf_below(parent) if parent is not None else self.newest_leaf_below(roots[0])
            )

    def sibling_position(self, message_id: str) -> tuple[int, int]:
        siblings = self.children[self.parent[message_id]]
        return siblings.index(message_id), len(siblings)


class Driver:
    """The API calls of one random run, each updating the model as the service should."""

    def __init__(
        self, client: httpx.AsyncClient, user: FleetUser, conversation_id: str, rng: random.Random
    ) -> None:
        self.client = client
        self.headers = user.headers
        self.conversation_id = conversation_id
        self.rng = rng
        self.model = Model()

    async def start(self) -> None:
        items = await self.path()
        [greeting] = items
        for root in await self.siblings(greeting["id"]):
            self.model.add(root)
        self.model.leaf = greeting["id"]

    async def path(self) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/v1/conversations/{self.conversation_id}/messages",
            params={"limit": 200},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        assert not response.json()["has_more_before"]
        return list(response.json()["items"])

    async def siblings(self, message_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/v1/messages/{message_id}/siblings", headers=self.headers)
        assert response.status_code == 200, response.text
        return list(response.json())

    def pick(self, role: str | None = None, *, roots: bool = True) -> str | None:
        candidates = [
            m
            for m, r in self.model.role.items()
            if (role is None or r == role) and (roots or self.model.parent[m] is not None)
        ]
        return self.rng.choice(sorted(candidates)) if candidates else None

    async def step(self, operation: str) -> str:
        """Do the operation (or what it falls back to when nothing fits); what was done."""
        handler = getattr(self, f"_{operation}")
        done: str | None = await handler()
        if done is None:
            return await self.step("send")
        return done

    def _created(self, response: httpx.Response, status: int = 201) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        for key in ("user_message", "reply"):
            if body.get(key) and body[key]["id"] not in self.model.parent:
                assert body[key]["status"] != "generating"
                self.model.add(body[key])
        return body

    async def _send(self) -> str:
        body = self._created(
            await self.client.post(
                f"/api/v1/conversations/{self.conversation_id}/messages",
                json={"content": f"Message {self.rng.randrange(1000)}", **OPTIONS},
                headers=self.headers,
            )
        )
        assert body["user_message"]["parent_id"] == self.model.leaf
        self.model.leaf = body["reply"]["id"]
        return "send"

    async def _regenerate(self) -> str | None:
        target = self.pick("assistant", roots=False)
        if target is None:
            return None
        body = self._created(await self._post(target, "regenerate"))
        assert body["reply"]["parent_id"] == self.model.parent[target]
        self.model.leaf = body["reply"]["id"]
        return f"regenerate {target}"

    async def _continue(self) -> str | None:
        leaf = self.model.leaf
        if self.model.role[leaf] != "assistant" or self.model.parent[leaf] is None:
            return None
        body = self._created(await self._post(leaf, "continue"), status=200)
        assert body["reply"]["id"] == leaf
        return f"continue {leaf}"

    async def _select(self) -> str:
        target = self.pick()
        assert target is not None
        response = await self._post(target, "select")
        assert response.status_code == 200, response.text
        self.model.leaf = self.model.newest_leaf_below(target)
        assert [m["id"] for m in response.json()["items"]] == self.model.path(self.model.leaf)
        return f"select {target}"

    async def _edit(self, regenerate: bool = False) -> str | None:
        target = self.pick("user")
        if target is None:
            return None
        response = await self.client.patch(
            f"/api/v1/messages/{target}",
            json={"content": f"Edited {self.rng.randrange(1000)}", "regenerate": regenerate, **OPTIONS},
            headers=self.headers,
        )
        body = self._created(response)
        assert body["user_message"]["parent_id"] == self.model.parent[target]
        self.model.leaf = body["reply"]["id"] if regenerate else body["user_message"]["id"]
        return f"edit {target} regenerate={regenerate}"

    async def _edit_reply(self) -> str | None:
        return await self._edit(regenerate=True)

    async def _delete(self) -> str | None:
        roots = self.model.children.get(None, [])
        target = self.pick(roots=len(roots) > 1)
        if target is None:
            return None
        response = await self.client.delete(f"/api/v1/messages/{target}", headers=self.headers)
        assert response.status_code == 204, response.text
        self.model.remove(target)
        return f"delete {target}"

    async def _post(self, message_id: str, action: str) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/messages/{message_id}/{action}", json=OPTIONS, headers=self.headers
        )

    async def check(self, deleted_now: set[str]) -> None:
        items = await self.path()
        ids = [m["id"] for m in items]
        assert items[0]["parent_id"] is None
        assert all(b["parent_id"] == a["id"] for a, b in zip(items, items[1:], strict=False))
        assert ids == self.model.path(self.model.leaf)
        listed = await asyncio.gather(*(self.siblings(i) for i in ids))
        for message, siblings in zip(items, listed, strict=True):
            assert [s["id"] for s in siblings] == self.model.children[message["parent_id"]]
            position = (message["sibling_index"], message["sibling_count"])
            assert position == self.model.sibling_position(message["id"])
            assert siblings[message["sibling_index"]]["id"] == message["id"]
            assert all(
                (s["sibling_index"], s["sibling_count"]) == (n, len(siblings)) for n, s in enumerate(siblings)
            )
        gone = await asyncio.gather(
            *(self.client.get(f"/api/v1/messages/{m}/siblings", headers=self.headers) for m in deleted_now)
        )
        assert [r.status_code for r in gone] == [404] * len(gone)


@pytest.mark.parametrize("seed", SEEDS)
async def test_random_tree_operations_keep_the_active_path_consistent(
    seed: int, client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser
) -> None:
    started = time.monotonic()
    rng = random.Random(seed)
    driver = Driver(client, alice, fleet.conversation(alice)["id"], rng)
    await driver.start()
    done: list[str] = []

    for step in range(STEPS):
        before = set(driver.model.deleted)
        done.append(await driver.step(rng.choice(OPERATIONS)))
        try:
            await driver.check(driver.model.deleted - before)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, step {step}: after {done}") from exc

    assert time.monotonic() - started < 20, "one random run should take well under 20 s"
