"""The page every list endpoint returns."""

from __future__ import annotations

from chat_common.pagination import Page, Pagination


def test_page_of_carries_the_requested_window() -> None:
    page = Page.of((n * n for n in range(3)), 42, Pagination(limit=3, offset=6))
    assert page.model_dump() == {"items": [0, 1, 4], "total": 42, "limit": 3, "offset": 6}
