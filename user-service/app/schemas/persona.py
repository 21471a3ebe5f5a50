"""Persona schemas: PersonaBase / PersonaCreate / PersonaUpdate / PersonaPublic, and the internal read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from chat_common.validation import InputModel

MAX_DESCRIPTION = 2000
MAX_AVATAR_URL = 2048


def _check_avatar_url(value: str) -> str:
    """Only a web address: a client shows it as an image, so `javascript:` or `data:` must not pass."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("avatar_url must be an http(s) URL")
    return value


# Stripped first, so a name of only whitespace is empty, and so refused.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION)]
AvatarUrl = Annotated[str, Field(max_length=MAX_AVATAR_URL), AfterValidator(_check_avatar_url)]


class PersonaBase(InputModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(examples=["Ada"])
    description: Description = Field(default="", examples=["A curious mathematician."])
    avatar_url: AvatarUrl | None = Field(default=None, examples=["https://example.com/ada.png"])


class PersonaCreate(PersonaBase):
    is_default: StrictBool | None = Field(
        default=None, description="Make it the default; when omitted, only a user's first persona is"
    )


class PersonaUpdate(InputModel):
    """PATCH body: only the fields given change; `avatar_url: null` removes the avatar."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    avatar_url: AvatarUrl | None = None
    is_default: StrictBool | None = Field(
        default=None, description="true makes it the default (the previous one stops being it)"
    )

    @model_validator(mode="after")
    def _only_avatar_nullable(self) -> PersonaUpdate:
        for name in ("name", "description", "is_default"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class PersonaPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    avatar_url: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime


class PersonaForService(PersonaPublic):
    """What conversation-service reads: the persona, with its owner's display name to fall back to."""

    user_id: uuid.UUID
    user_display_name: str
