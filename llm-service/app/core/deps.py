"""Request-scoped dependencies of llm-service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.services.llm import LLMService


def get_llm(request: Request) -> LLMService:
    return request.app.state.llm  # type: ignore[no-any-return]


LLM = Annotated[LLMService, Depends(get_llm)]
