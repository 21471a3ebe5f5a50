"""Credit balance, ledger and reservation shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_common.validation import InputModel

MAX_AMOUNT = 1_000_000
# Far below the 32-bit column's limit even with every hold refunded on top, so a refund (which is
# never refused) cannot overflow; admin grants stop here.
MAX_BALANCE = 1_000_000_000


class Balance(BaseModel):
    user_id: uuid.UUID
    balance: int


class TransactionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    amount: int
    kind: str
    balance_after: int
    reference: str | None
    reservation_id: uuid.UUID | None
    created_at: datetime


class CreditAdjustment(InputModel):
    amount: int = Field(
        ge=-MAX_AMOUNT, le=MAX_AMOUNT, strict=True, description="Positive grants, negative deducts"
    )
    reason: str = Field(min_length=1, max_length=255)


class ReservationCreate(InputModel):
    user_id: uuid.UUID
    amount: int = Field(gt=0, le=MAX_AMOUNT, strict=True)
    idempotency_key: str = Field(min_length=1, max_length=128)
    reference: str | None = Field(default=None, max_length=255)
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description="Seconds the hold lasts unsettled before it expires (at most"
        " MAX_RESERVATION_TTL_SECONDS; default RESERVATION_TTL_SECONDS): the longest the work may take.",
    )


class ReservationCommit(BaseModel):
    amount: int = Field(
        ge=0, le=MAX_AMOUNT, strict=True, description="Actual cost; at most the reserved amount"
    )


class ReservationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    amount: int
    committed_amount: int | None
    status: Literal["held", "committed", "released", "expired"]
    idempotency_key: str
    reference: str | None
    expires_at: datetime
    created_at: datetime
    settled_at: datetime | None
