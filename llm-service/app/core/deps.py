"""Request-scoped dependencies of llm-service."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.services.generation import GenerationService
from app.services.llm import LLMService


async def get_llm(request: Request) -> LLMService:
    """Async on purpose: FastAPI runs plain-def dependencies in a thread pool."""
    return request.app.state.llm  # type: ignore[no-any-return]


async def get_generation(request: Request) -> GenerationService:
    return request.app.state.generation  # type: ignore[no-any-return]


LLM = Annotated[LLMService, Depends(get_llm)]
Generation = Annotated[GenerationService, Depends(get_generation)]
