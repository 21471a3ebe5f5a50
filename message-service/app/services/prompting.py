"""From the conversation's snapshot, the character and the active path to the request llm-service
gets: the prompt (app.services.prompt), within the model's context as llm-service reports it, with
the token estimator calibrated for that model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.runtime import Runtime
from app.models import Message
from app.services.prompt import Card, Mode, Persona, Prompt, Turn, build_prompt
from app.services.tokens import CalibrationStore

MODEL_INFO_SECONDS = 60.0


def persona_name(conversation: dict[str, Any]) -> str:
    """The name `{{user}}` stands for: the conversation's persona (or display name) snapshot."""
    return str((conversation.get("persona") or {}).get("name") or "User")


def model_key(chosen: dict[str, Any]) -> str:
    return str(chosen.get("model") or "default")


async def context_length(rt: Runtime, model: str | None) -> int:
    """The model's context length from llm-service (cached), else DEFAULT_CONTEXT_LENGTH."""
    key = model or "default"
    cached = await rt.live.cached("context-length", key)
    if isinstance(cached, int):
        return cached
    try:
        found = await rt.fleet.context_length(model)
    except Exception:  # llm-service unsure or away: the default; generation reports a real outage
        found = None
    length = found or rt.settings.default_context_length
    await rt.live.cache("context-length", key, length, MODEL_INFO_SECONDS)
    return length


def calibration(rt: Runtime) -> CalibrationStore:
    return CalibrationStore(rt.live.redis, f"{rt.settings.redis_prefix}:token-ratio:")


def _turns(history: Sequence[Message]) -> list[Turn]:
    """What the model reads of the path: text that was said (failed or empty replies are not)."""
    return [Turn(role=m.role, content=m.content) for m in history if m.content and m.status != "failed"]


async def build(
    rt: Runtime,
    conversation: dict[str, Any],
    character: dict[str, Any],
    history: Sequence[Message],
    chosen: dict[str, Any],
    *,
    mode: Mode = "reply",
    context: int | None = None,
) -> Prompt:
    persona = conversation.get("persona") or {}
    estimator = await calibration(rt).get(model_key(chosen))
    return build_prompt(
        Card.from_character(character),
        Persona(name=persona_name(conversation), description=str(persona.get("description") or "")),
        _turns(history),
        context_length=context or await context_length(rt, chosen.get("model")),
        max_tokens=int(chosen["max_tokens"]),
        estimator=estimator,
        mode=mode,
    )


def request_for(prompt: Prompt, chosen: dict[str, Any]) -> dict[str, Any]:
    """llm-service's chat completion request for `prompt`, streamed with usage."""
    request = {k: v for k, v in chosen.items() if v is not None and k != "stop"}
    request.update(
        messages=prompt.messages,
        stop=[*prompt.stop, *chosen.get("stop", [])][:8],
        stream=True,
        stream_options={"include_usage": True},
    )
    return request


async def payload(
    rt: Runtime,
    conversation: dict[str, Any],
    character: dict[str, Any],
    history: Sequence[Message],
    chosen: dict[str, Any],
    *,
    continuing: bool = False,
    impersonating: bool = False,
    context: int | None = None,
) -> tuple[dict[str, Any], Prompt]:
    """The request to send and the prompt it carries; `context` overrides the model's context
    length (a retry after LM Studio said the prompt did not fit)."""
    mode: Mode = "impersonate" if impersonating else "continue" if continuing else "reply"
    prompt = await build(rt, conversation, character, history, chosen, mode=mode, context=context)
    return request_for(prompt, chosen), prompt


async def itemize(
    rt: Runtime,
    conversation: dict[str, Any],
    character: dict[str, Any],
    path: Sequence[Message],
    chosen: dict[str, Any],
    content: str,
) -> dict[str, Any]:
    """What the next send of `content` would send (GET .../prompt)."""
    from app.services.history import new_message  # the path plus the message not yet sent

    history = list(path)
    if content:
        history.append(new_message(conversation, role="user", content=content, parent_id=None))
    mode: Mode = "reply" if content else "impersonate"
    prompt = await build(rt, conversation, character, history, chosen, mode=mode)
    return prompt.itemization()
