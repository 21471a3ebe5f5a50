"""Models known to LM Studio; admins load and unload them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from app.core.deps import LLM
from app.schemas.openai import LoadRequest
from app.schemas.replies import ModelList
from chat_common.auth import CurrentAdmin, CurrentPrincipal
from lmstudio_client import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/models", response_model=None, responses={200: {"model": ModelList}})
async def list_models(_: CurrentPrincipal, llm: LLM) -> dict[str, Any]:
    """OpenAI list shape, each model with type, state, context length and quantization when known."""
    models = await llm.models(fresh=True)
    return {"object": "list", "data": [m.model_dump(mode="json") for m in models]}


@router.post("/models/{model_id:path}/load", status_code=status.HTTP_200_OK)
async def load_model(model_id: str, body: LoadRequest, _: CurrentAdmin, llm: LLM) -> dict[str, Any]:
    """Load a model (LM Studio 0.4+)."""
    return await llm.load(model_id, body.context_length)


@router.post("/models/{model_id:path}/unload", status_code=status.HTTP_204_NO_CONTENT)
async def unload_model(model_id: str, _: CurrentAdmin, llm: LLM) -> None:
    await llm.unload(model_id)


@router.get("/models/{model_id:path}", response_model=None, responses={200: {"model": ModelInfo}})
async def get_model(model_id: str, _: CurrentPrincipal, llm: LLM) -> dict[str, Any]:
    return (await llm.model(model_id)).model_dump(mode="json")
