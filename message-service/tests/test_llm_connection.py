"""message-service's connection to llm-service, kept across replies (the real fleet)."""

from __future__ import annotations

from pathlib import Path

import httpx

from chat_common.testing import ServiceProcess
from chat_common.testing.fleet import FleetUser
from tests.conftest import Fleet

ESTABLISHED = "01"


def client_ports(server_port: int) -> set[int]:
    """Local ports of the established TCP connections to `server_port` on this machine (Linux's
    /proc/net/tcp): only message-service connects to llm-service."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == ESTABLISHED and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


async def test_replies_one_after_another_reuse_one_connection_to_llm_service(
    client: httpx.AsyncClient, fleet: Fleet, alice: FleetUser, llm_service: ServiceProcess
) -> None:
    conversation = fleet.conversation(alice)
    llm_port = httpx.URL(llm_service.url).port
    assert llm_port is not None
    idle = client_ports(llm_port)  # left by earlier tests' concurrent replies, until they expire
    kept = []

    for content in ("Hello, captain!", "And again."):
        response = await client.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"content": content},
            headers=alice.headers,
        )
        assert response.status_code == 201, response.text
        kept.append(client_ports(llm_port))

    assert kept[0] and len(kept[0] - idle) <= 2  # at most one each: the stream's client, the model info's
    assert kept[1] <= kept[0]  # no new connection for the next reply
