"""`?limit=&offset=` with a capped limit, and the `{"items", "total", "limit", "offset"}` page."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

T = TypeVar("T")
MAX_LIMIT = 100


@dataclass(frozen=True)
class Pagination:
    limit: int
    offset: int


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, items: Iterable[T], total: int, page: Pagination) -> Page[T]:
        """The page of `items` (already in their public shape) out of `total`, as requested."""
        return cls(items=list(items), total=total, limit=page.limit, offset=page.offset)


async def get_pagination(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Pagination:
    return Pagination(limit=limit, offset=offset)


PageDep = Annotated[Pagination, Depends(get_pagination)]
