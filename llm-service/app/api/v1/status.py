"""Is LM Studio there, what is loaded, how busy is the queue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.core.deps import LLM
from chat_common.auth import CurrentPrincipal

router = APIRouter(tags=["status"])


@router.get("/status")
async def status(_: CurrentPrincipal, llm: LLM) -> dict[str, Any]:
    """LM Studio reachable?, its base URL, loaded models, queue depth."""
    return await llm.status()
