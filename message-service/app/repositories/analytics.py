"""Aggregations over the stored messages, per UTC day, for analytics.

Every stage stays inside what nx-27017 and MongoDB 7 both serve (MONGODB.md): `$match` on string
fields (the precomputed `day` rather than date arithmetic), `$group` on ONE field with `$sum` or
`$addToSet`, `$project` with `$size`, `$facet`, `$count`. Measured on nx-27017 0.8.1: a `$group`
`_id` that is a document of several fields is not evaluated (every row lands in one group), an `$or`
beside other fields in one `$match` ignores them (so the `$or` gets its own `$match`), and `$sum`
over a missing field gives null, not 0.

A greeting is stored as an assistant message without a generation; it is not counted: only the
user's messages and the generated replies (which always carry `generation.credits`) are.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.models import Message

_REPLY: dict[str, Any] = {"role": "assistant", "generation.credits": {"$exists": True}}
_COUNTED: dict[str, Any] = {"$or": [{"role": "user"}, _REPLY]}


def _in_days(first: str, last: str, **fields: Any) -> list[dict[str, Any]]:
    """The counted messages (with `fields`) of the days `first`..`last`, both included."""
    return [{"$match": {**fields, "day": {"$gte": first, "$lte": last}}}, {"$match": _COUNTED}]


def _usage_facets() -> dict[str, list[dict[str, Any]]]:
    """Per day: the user's messages, and the replies with their tokens and credits."""
    return {
        "user_messages": [
            {"$match": {"role": "user"}},
            {"$group": {"_id": "$day", "messages": {"$sum": 1}}},
        ],
        "replies": [
            {"$match": _REPLY},
            {
                "$group": {
                    "_id": "$day",
                    "messages": {"$sum": 1},
                    "prompt_tokens": {"$sum": "$generation.usage.prompt_tokens"},
                    "completion_tokens": {"$sum": "$generation.usage.completion_tokens"},
                    "credits_spent": {"$sum": "$generation.spent"},
                }
            },
        ],
    }


def _per_day_distinct(field: str) -> list[dict[str, Any]]:
    """Per day, how many different values `field` takes. The sets are sized in the pipeline
    (`$project` `$size`, served by both servers) so that the `$facet` result, one document that
    MongoDB caps at 16 MB, holds numbers rather than every user id of every day."""
    return [
        {"$group": {"_id": "$day", "values": {"$addToSet": f"${field}"}}},
        {"$project": {"n": {"$size": "$values"}}},
    ]


def _distinct_count(field: str) -> list[dict[str, Any]]:
    """How many different values `field` takes: grouped by it, then counted."""
    return [{"$group": {"_id": f"${field}"}}, {"$count": "n"}]


def _timing(field: str) -> list[dict[str, Any]]:
    """Per day, the sum and number of the completed replies' `generation.<field>` (milliseconds);
    `$gte: 0` leaves out the replies without one, so sum / number is their average."""
    timed = {"role": "assistant", "status": "completed", f"generation.{field}": {"$gte": 0}}
    total = {"$sum": f"$generation.{field}"}
    return [{"$match": timed}, {"$group": {"_id": "$day", "total_ms": total, "replies": {"$sum": 1}}}]


def _counts(found: dict[str, Any], *names: str) -> dict[str, Any]:
    """The facets named `names` (each ending in `$count`) as plain numbers."""
    return {**found, **{name: int(found[name][0]["n"]) if found.get(name) else 0 for name in names}}


class AnalyticsRepository:
    def __init__(self, database: AsyncDatabase[dict[str, Any]]) -> None:
        self.messages = database[Message.Settings.name]

    async def _facets(self, match: list[dict[str, Any]], facets: dict[str, Any]) -> dict[str, Any]:
        cursor = await self.messages.aggregate([*match, {"$facet": facets}])
        found: list[dict[str, Any]] = await cursor.to_list()
        return found[0] if found else {}

    async def user(self, user_id: str, first: str, last: str) -> dict[str, Any]:
        """One user's messages per day: `user_messages` and `replies` (with tokens and credits)."""
        return await self._facets(_in_days(first, last, user_id=user_id), _usage_facets())

    async def character(self, character_id: str, first: str, last: str) -> dict[str, Any]:
        """A character's messages per day, with the users and conversations of each day; the number
        of different users and conversations over the range; the completed replies' timings."""
        found = await self._facets(
            _in_days(first, last, character_id=character_id),
            {
                **_usage_facets(),
                "day_users": _per_day_distinct("user_id"),
                "day_conversations": _per_day_distinct("conversation_id"),
                "users": _distinct_count("user_id"),
                "conversations": _distinct_count("conversation_id"),
                "latency": _timing("latency_ms"),
                "first_token": _timing("first_token_ms"),
            },
        )
        return _counts(found, "users", "conversations")

    async def overview(self, first: str, last: str, top: int = 10) -> dict[str, Any]:
        """Everyone's messages per day, with each day's users; the number of different users,
        conversations and characters over the range; the `top` characters by messages."""
        found = await self._facets(
            _in_days(first, last),
            {
                **_usage_facets(),
                "day_users": _per_day_distinct("user_id"),
                "users": _distinct_count("user_id"),
                "conversations": _distinct_count("conversation_id"),
                "characters": _distinct_count("character_id"),
                "top_characters": [
                    {"$group": {"_id": "$character_id", "messages": {"$sum": 1}}},
                    {"$sort": {"messages": -1, "_id": 1}},
                    {"$limit": top},
                ],
            },
        )
        return _counts(found, "users", "conversations", "characters")
