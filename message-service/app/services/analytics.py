"""Analytics of the stored messages, per UTC day: a user's own use, a character's activity for its
owner, and the whole service for admins.

They reflect the messages that are stored: a message deleted by its user, or purged with its deleted
conversation, is no longer counted; an impersonation (paid, never stored) is not either.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from app.core.runtime import Runtime, now
from app.schemas.analytics import (
    CharacterActivity,
    CharacterAnalytics,
    CharacterCount,
    CharacterDay,
    MyAnalytics,
    Overview,
    OverviewDay,
    OverviewTotals,
    Usage,
    UsageDay,
)
from app.services import access
from chat_common.auth import Principal
from chat_common.errors import NotFoundError, UnprocessableError

DEFAULT_DAYS = 30
MAX_DAYS = 366
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_day(name: str, value: str) -> date:
    if _DAY.match(value):
        with contextlib.suppress(ValueError):  # e.g. 2026-02-30: the shape is right, the day is not
            return date.fromisoformat(value)
    raise UnprocessableError(f"{name}: a day as YYYY-MM-DD", details={"field": name, "value": value})


def day_range(first: str | None, last: str | None) -> tuple[date, date]:
    """`from` and `to` (both included): by default the last 30 days up to today (UTC); `to` defaults
    to today, `from` to 29 days before `to`; at most 366 days."""
    end = _parse_day("to", last) if last is not None else now().date()
    if first is not None:
        start = _parse_day("from", first)
    elif end > date.min + timedelta(days=DEFAULT_DAYS):
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    else:
        start = date.min
    if start > end:
        raise UnprocessableError("from: must not be after to", details={"from": str(start), "to": str(end)})
    if (end - start).days + 1 > MAX_DAYS:
        raise UnprocessableError(
            f"from..to: at most {MAX_DAYS} days", details={"days": (end - start).days + 1}
        )
    return start, end


def _days(start: date, end: date) -> list[str]:
    return [str(start + timedelta(days=n)) for n in range((end - start).days + 1)]


def _usage(found: dict[str, Any], days: list[str]) -> dict[str, Usage]:
    """The `user_messages` and `replies` facets (grouped by day) as each day's usage."""
    by_day = {day: Usage() for day in days}
    for row in found.get("user_messages", []):
        if row["_id"] in by_day:
            by_day[row["_id"]].user_messages = int(row["messages"])
    for row in found.get("replies", []):
        if row["_id"] in by_day:
            usage = by_day[row["_id"]]
            usage.replies = int(row["messages"])
            usage.prompt_tokens = int(row["prompt_tokens"] or 0)
            usage.completion_tokens = int(row["completion_tokens"] or 0)
            usage.credits_spent = int(row["credits_spent"] or 0)
    for usage in by_day.values():
        usage.messages = usage.user_messages + usage.replies
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    return by_day


def _total(usages: Iterable[Usage]) -> Usage:
    total = Usage()
    for usage in usages:
        for field in Usage.model_fields:
            setattr(total, field, getattr(total, field) + getattr(usage, field))
    return total


def _by_day(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Per-day counts (`_id` the day, `n` the count) by day."""
    return {row["_id"]: int(row["n"]) for row in rows}


def _averages(rows: list[dict[str, Any]]) -> tuple[dict[str, float], float | None]:
    """Per-day sums and counts of a timing as each day's average, and the average over all."""
    per_day = {row["_id"]: row["total_ms"] / row["replies"] for row in rows if row["replies"]}
    replies = sum(row["replies"] for row in rows)
    overall = sum(row["total_ms"] for row in rows) / replies if replies else None
    return per_day, overall


async def mine(rt: Runtime, user_id: str, start: date, end: date) -> MyAnalytics:
    days = _days(start, end)
    usage = _usage(await rt.analytics.user(user_id, days[0], days[-1]), days)
    return MyAnalytics(
        from_=days[0],
        to=days[-1],
        totals=_total(usage.values()),
        days=[UsageDay(day=day, **usage[day].model_dump()) for day in days],
    )


async def owned_character(rt: Runtime, caller: Principal, character_id: str) -> dict[str, Any]:
    """The character, when the caller owns it or is an admin; else 404, as for a character that does
    not exist (a private character is not revealed)."""
    if not _is_uuid(character_id):
        raise _character_not_found()
    character = await access.character(rt, character_id)
    if not caller.is_admin and character.get("owner_id") != caller.user_id:
        raise _character_not_found()
    return character


def _character_not_found() -> NotFoundError:
    return NotFoundError("Character not found", code="character_not_found")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def character(
    rt: Runtime, caller: Principal, character_id: str, start: date, end: date
) -> CharacterAnalytics:
    await owned_character(rt, caller, character_id)
    days = _days(start, end)
    found = await rt.analytics.character(character_id, days[0], days[-1])
    usage = _usage(found, days)
    users = _by_day(found.get("day_users", []))
    conversations = _by_day(found.get("day_conversations", []))
    latency, latency_overall = _averages(found.get("latency", []))
    first_token, first_token_overall = _averages(found.get("first_token", []))
    return CharacterAnalytics(
        from_=days[0],
        to=days[-1],
        character_id=character_id,
        totals=CharacterActivity(
            conversations=found["conversations"],
            messages=sum(u.messages for u in usage.values()),
            unique_users=found["users"],
            avg_latency_ms=latency_overall,
            avg_first_token_ms=first_token_overall,
        ),
        days=[
            CharacterDay(
                day=day,
                conversations=conversations.get(day, 0),
                messages=usage[day].messages,
                unique_users=users.get(day, 0),
                avg_latency_ms=latency.get(day),
                avg_first_token_ms=first_token.get(day),
            )
            for day in days
        ],
    )


async def overview(rt: Runtime, start: date, end: date) -> Overview:
    days = _days(start, end)
    found = await rt.analytics.overview(days[0], days[-1])
    usage = _usage(found, days)
    active = _by_day(found.get("day_users", []))
    return Overview(
        from_=days[0],
        to=days[-1],
        totals=OverviewTotals(
            **_total(usage.values()).model_dump(),
            unique_users=found["users"],
            conversations=found["conversations"],
            characters=found["characters"],
        ),
        days=[
            OverviewDay(day=day, active_users=active.get(day, 0), **usage[day].model_dump()) for day in days
        ],
        top_characters=[
            CharacterCount(character_id=row["_id"], messages=row["messages"])
            for row in found.get("top_characters", [])
        ],
    )
