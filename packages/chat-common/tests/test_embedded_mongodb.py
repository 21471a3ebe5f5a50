"""The embedded MongoDB-protocol server: several on one machine at once (tests beside `make run`)."""

from __future__ import annotations

from pathlib import Path

from pymongo import MongoClient

from chat_common.embedded import free_port, start_mongodb


def test_two_embedded_mongodb_servers_run_side_by_side(tmp_path: Path) -> None:
    first = start_mongodb(tmp_path / "one", free_port())
    try:
        second = start_mongodb(tmp_path / "two", free_port())
        try:
            for server, name in ((first, "one"), (second, "two")):
                with MongoClient(server.url, serverSelectionTimeoutMS=5000) as client:
                    client["probe"]["items"].insert_one({"server": name})
            with MongoClient(second.url, serverSelectionTimeoutMS=5000) as client:
                assert [d["server"] for d in client["probe"]["items"].find()] == ["two"]
        finally:
            second.stop()
    finally:
        first.stop()
