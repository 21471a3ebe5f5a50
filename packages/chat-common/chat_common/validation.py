"""Input rules every service shares. PostgreSQL text and jsonb cannot hold NUL (U+0000), so a NUL
anywhere in a request is refused up front with a 422 instead of failing in the database."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator

NUL_MESSAGE = "text must not contain NUL (\\u0000) characters"


def contains_nul(value: Any) -> bool:
    """True when a string anywhere in `value` (nested lists and dicts, keys included) holds a NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


class InputModel(BaseModel):
    """Base of request bodies: refuses NUL characters in any field."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if contains_nul(data):
            raise ValueError(NUL_MESSAGE)
        return data
