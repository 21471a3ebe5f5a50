"""Response bodies of the analytics endpoints: totals over a range of UTC days, and each day of it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Range(BaseModel):
    from_: str = Field(serialization_alias="from", examples=["2026-11-01"], description="First UTC day")
    to: str = Field(examples=["2026-11-30"], description="Last UTC day (included)")


class Usage(BaseModel):
    """Stored messages: the user's own and the generated replies (greetings are not counted)."""

    messages: int = 0
    user_messages: int = 0
    replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    credits_spent: int = Field(default=0, description="Charged for the replies, continuations included")


class UsageDay(Usage):
    day: str


class MyAnalytics(Range):
    totals: Usage
    days: list[UsageDay] = Field(description="Every day of the range, oldest first")


class CharacterActivity(BaseModel):
    conversations: int = 0
    messages: int = 0
    unique_users: int = 0
    avg_latency_ms: float | None = Field(default=None, description="Of the completed replies")
    avg_first_token_ms: float | None = None


class CharacterDay(CharacterActivity):
    day: str


class CharacterAnalytics(Range):
    character_id: str
    totals: CharacterActivity
    days: list[CharacterDay] = Field(description="Every day of the range, oldest first")


class OverviewTotals(Usage):
    unique_users: int = 0
    conversations: int = 0
    characters: int = 0


class OverviewDay(UsageDay):
    active_users: int = 0


class CharacterCount(BaseModel):
    character_id: str
    messages: int


class Overview(Range):
    totals: OverviewTotals
    days: list[OverviewDay] = Field(description="Every day of the range, oldest first")
    top_characters: list[CharacterCount] = Field(description="The ten with the most messages")
