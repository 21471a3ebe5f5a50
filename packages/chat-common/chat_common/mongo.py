"""MongoDB plumbing shared by the document services: settings, Beanie start-up, readiness, outages.

Code on top of it stays inside the subset of MongoDB that both the embedded nx-27017 and MongoDB 7
serve the same way (`shared/MONGODB.md`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from beanie import Document, init_beanie
from bson import ObjectId
from bson.errors import InvalidId
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, PlainSerializer, SerializationInfo
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, ExecutionTimeout, WTimeoutError

from chat_common.errors import NotFoundError, error_response
from chat_common.settings import CommonSettings

logger = logging.getLogger(__name__)

DEV_MONGODB_URL = "mongodb://127.0.0.1:27017"
MONGO_CONTEXT = {"mongo": True}  # model_dump(context=MONGO_CONTEXT): a document as it is stored


def to_millis(value: datetime) -> int:
    """A UTC time as stored: whole milliseconds since the epoch."""
    return int(value.timestamp() * 1000)


def from_millis(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    return value


def _stored_or_plain(value: datetime, info: SerializationInfo) -> datetime | int:
    return to_millis(value) if isinstance(info.context, dict) and info.context.get("mongo") else value


# A timestamp in a document: a tz-aware datetime in Python, integer milliseconds in MongoDB. nx-27017
# turns a datetime written by `$set` (top-level field) into a string, which then sorts and compares
# as text; integers behave the same on nx-27017 and MongoDB 7, in `$set`, `$lt`/`$gt` and sorts.
MongoTime = Annotated[
    datetime,
    BeforeValidator(from_millis),
    PlainSerializer(_stored_or_plain, when_used="unless-none"),
]


class MongoSettings(CommonSettings):
    mongodb_url: str = DEV_MONGODB_URL
    # Empty: `<service name with underscores>_<environment>`, e.g. conversation_service_development.
    mongodb_database: str = ""
    # How long a request waits for an unreachable MongoDB before it is told so (503).
    mongodb_timeout_seconds: float = 5.0
    mongodb_pool_size: int = 50

    @property
    def database_name(self) -> str:
        return self.mongodb_database or f"{self.service_name.replace('-', '_')}_{self.environment}"

    def unsafe_production_values(self) -> list[str]:
        problems = super().unsafe_production_values()
        if self.mongodb_url == DEV_MONGODB_URL:
            problems.append("MONGODB_URL must be set (the development default is a local server)")
        return problems


# What a lost MongoDB surfaces as (no server to select, a cut connection, a server-side timeout).
UNAVAILABLE = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


def parse_object_id(value: str, what: str = "Resource") -> ObjectId:
    """An id from a URL as an ObjectId; anything else is 404, like an id that names nothing."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFoundError(f"{what} not found") from None


async def _mongodb_unavailable(_: Request, exc: Exception) -> JSONResponse:
    # The driver's text names hosts and topology: it goes to the log, with the request id.
    logger.warning("MongoDB is unavailable: %s: %s", exc.__class__.__name__, exc)
    timeout = isinstance(exc, ExecutionTimeout | WTimeoutError)
    return error_response(
        504 if timeout else 503,
        "dependency_timeout" if timeout else "dependency_unavailable",
        "MongoDB did not answer in time" if timeout else "MongoDB is unavailable",
        {"service": "mongodb"},
    )


def install_mongodb_error_handlers(app: FastAPI) -> None:
    """A lost MongoDB is a 503 naming it (504 on a server-side timeout), never a 500. Called when the
    app is built: handlers added once it serves would not be seen."""
    for error in UNAVAILABLE:
        app.add_exception_handler(error, _mongodb_unavailable)


def mongo_client(settings: MongoSettings) -> AsyncMongoClient[dict[str, Any]]:
    timeout_ms = int(settings.mongodb_timeout_seconds * 1000)
    return AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,  # datetimes come back in UTC with their zone, as they went in
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 3, 10_000),
        maxPoolSize=settings.mongodb_pool_size,
        appname=settings.service_name,
    )


@asynccontextmanager
async def open_mongodb(
    app: FastAPI, settings: MongoSettings, documents: Sequence[type[Document]]
) -> AsyncIterator[None]:
    """Connect, bind the Beanie documents (creating their declared indexes) and register the `mongodb`
    readiness check. (Beanie binds a document class to one database per process.)"""
    client = mongo_client(settings)
    database = client[settings.database_name]
    await init_beanie(database=database, document_models=list(documents))
    app.state.mongodb = database
    app.state.readiness_checks["mongodb"] = lambda: database.command("ping")
    try:
        yield
    finally:
        await client.close()
