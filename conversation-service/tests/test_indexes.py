"""Indexes serving each query exist once the service has started.

Checked by their fields, not their names: nx-27017 names indexes itself (and keeps no direction)."""

from __future__ import annotations

from fastapi import FastAPI
from pymongo import MongoClient

from tests.conftest import DATABASE


def _indexes(database, collection: str) -> dict[tuple[str, ...], bool]:  # type: ignore[no-untyped-def]
    return {tuple(index["key"]): bool(index.get("unique")) for index in database[collection].list_indexes()}


def test_the_declared_indexes_are_created_at_start_up(mongodb_url: str, base_url: str, app: FastAPI) -> None:
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as client:
        conversations = _indexes(client[DATABASE], "conversations")
        sessions = _indexes(client[DATABASE], "chat_sessions")

    assert ("user_id", "deleted_at", "pinned", "last_activity_at") in conversations
    assert ("deleted_key",) in conversations
    assert ("changed_at",) in conversations
    assert ("character_counted", "created_at") in conversations
    assert sessions[("active_key",)] is True  # unique: one active session per conversation
    assert ("conversation_id", "started_at") in sessions
