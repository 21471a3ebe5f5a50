"""User schemas: UserBase / UserCreate / UserUpdate / UserPublic, and password rules."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationInfo, field_validator

from chat_common.validation import InputModel

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"
BCRYPT_MAX_BYTES = 72  # bcrypt ignores every byte past the 72nd
PASSWORD_MIN_LENGTH = 8
PASSWORD_RULES = (
    f"{PASSWORD_MIN_LENGTH} characters to {BCRYPT_MAX_BYTES} bytes in UTF-8 (bcrypt ignores the rest); "
    "letters mixed with digits or symbols; at least 4 different characters; not containing the username "
    "(case-insensitive). A password breaking a rule is refused with 422, `details[].loc` naming this field."
)
Role = Literal["user", "admin"]


def check_password_strength(password: str) -> str:
    """Reject passwords bcrypt would truncate or that are easy to guess."""
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        raise ValueError(f"Password must be at most {BCRYPT_MAX_BYTES} bytes in UTF-8")
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"Password must be at least {PASSWORD_MIN_LENGTH} characters")
    if not re.search(r"[^\W\d_]", password) or not re.search(r"[\d\W_]", password):
        raise ValueError("Password must mix letters with digits or symbols")
    if len(set(password)) < 4:
        raise ValueError("Password is too repetitive")
    return password


class UserBase(InputModel):
    email: EmailStr = Field(max_length=320, examples=["ada@example.com"])
    username: str = Field(pattern=USERNAME_PATTERN, examples=["ada"])
    display_name: str = Field(min_length=1, max_length=100, examples=["Ada Lovelace"])

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: str) -> str:
        return value.lower()


def password_field(example: str) -> Any:
    """A new password's field, its rules in the schema (the mix and the username are checked in code)."""
    return Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=BCRYPT_MAX_BYTES,
        description=PASSWORD_RULES,
        examples=[example],
    )


def check_not_username(password: str, username: str | None) -> str:
    if username and username.lower() in password.lower():
        raise ValueError("Password must not contain the username")
    return password


class UserCreate(UserBase):
    password: str = password_field("correct-horse-42")

    @field_validator("password")
    @classmethod
    def _strong_password(cls, value: str, info: ValidationInfo) -> str:
        # `username` is declared first, so it is in `info.data` unless it failed its own checks.
        return check_not_username(check_password_strength(value), info.data.get("username"))


class UserUpdate(InputModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = Field(default=None, max_length=320)
    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)
    display_name: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("email")
    @classmethod
    def _lower_email(cls, value: str | None) -> str | None:
        return value.lower() if value else value


class PasswordChange(InputModel):
    current_password: str = Field(max_length=256)
    new_password: str = password_field("another-horse-43")

    @field_validator("new_password")
    @classmethod
    def _strong_password(cls, value: str) -> str:
        return check_password_strength(value)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    username: str
    display_name: str
    role: Role
    is_active: bool
    credits: int
    created_at: datetime


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None
