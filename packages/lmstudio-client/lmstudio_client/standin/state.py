"""The stand-in's state: its models, the behaviour tests switch, and what it saw (stats, requests)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lmstudio_client.standin import behaviour as b

FAILURES = ("no_model_loaded", "crash", "disconnect", "stall")


@dataclass
class StandinModel:
    id: str
    type: str = "llm"
    state: str = "loaded"
    max_context_length: int = 32768
    quantization: str = "Q4_K_M"
    arch: str = "standin"


def default_models() -> list[StandinModel]:
    return [
        StandinModel("lmstudio-standin/echo-7b"),
        StandinModel("lmstudio-standin/echo-mini", quantization="Q8_0"),
        StandinModel("lmstudio-standin/echo-70b", state="not-loaded"),
        StandinModel(
            "lmstudio-standin/embed-small", type="embeddings", quantization="F16", max_context_length=2048
        ),
    ]


@dataclass
class StandinConfig:
    """Everything tests may switch; PATCH `/__standin/config` with any of these fields."""

    models: list[StandinModel] = field(default_factory=default_models)
    tokens_per_second: float = 0.0  # 0: as fast as possible
    first_token_delay: float = 0.0
    context_length: int = 4096  # the loaded context length of every LLM
    failure: str | None = None  # one of FAILURES
    disconnect_after: int = 3  # chunks sent before a "disconnect" failure drops the connection
    stall_after: int = 3  # chunks sent before a "stall" failure stops sending (connection kept open)
    legacy_errors: bool = False  # older builds: string errors, 404 for unknown models
    native_api: bool = True  # the 0.4+ /api/v1 model management endpoints
    api_key: str | None = None
    request_log_size: int = 100  # the last requests kept for `/__standin/requests`; reset keeps it


@dataclass
class Stats:
    """What the stand-in saw: tests read it at `/__standin/stats`."""

    requests: int = 0
    active: int = 0
    max_active: int = 0
    completed: int = 0
    cancelled: int = 0


class Standin:
    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.stats = Stats()
        self._requests: deque[dict[str, Any]] = deque(maxlen=config.request_log_size)

    # -- the request log ----------------------------------------------------------------------------

    def record(self, entry: dict[str, Any]) -> None:
        self._fit_request_log()
        self._requests.append(entry)

    def recorded(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The kept requests, oldest first; with `limit`, only the last `limit` of them."""
        self._fit_request_log()
        entries = list(self._requests)
        return entries[max(0, len(entries) - limit) :] if limit is not None else entries

    def clear_requests(self) -> None:
        self._requests.clear()

    def _fit_request_log(self) -> None:
        """Follow a changed `request_log_size`, keeping the newest entries."""
        if self._requests.maxlen != self.config.request_log_size:
            self._requests = deque(self._requests, maxlen=self.config.request_log_size)

    # -- models -----------------------------------------------------------------------------------

    def loaded_llms(self) -> list[StandinModel]:
        return [m for m in self.config.models if m.type != "embeddings" and m.state == "loaded"]

    def find(self, model_id: str) -> StandinModel | None:
        return next((m for m in self.config.models if m.id == model_id), None)

    def resolve_llm(self, requested: str | None) -> StandinModel | tuple[int, dict[str, Any]]:
        """The model that will answer, or an error body. With one LLM loaded, any name gets it."""
        loaded = self.loaded_llms()
        if self.config.failure == "no_model_loaded" or not loaded:
            return b.no_model_loaded(self.config.legacy_errors)
        model = self.find(requested or "")
        if model is not None and model.state == "loaded" and model.type != "embeddings":
            return model
        if len(loaded) == 1:
            return loaded[0]
        return b.model_not_found(requested or "", self.config.legacy_errors)

    def v0_entry(self, m: StandinModel) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": m.id,
            "object": "model",
            "type": m.type,
            "publisher": "lmstudio-standin",
            "arch": m.arch,
            "compatibility_type": "gguf",
            "quantization": m.quantization,
            "state": m.state,
            "max_context_length": m.max_context_length,
            "capabilities": [],
        }
        if m.state == "loaded":
            entry["loaded_context_length"] = self.config.context_length
        return entry

    # -- generation -------------------------------------------------------------------------------

    async def token_pause(self, index: int) -> None:
        if index == 0 and self.config.first_token_delay:
            await asyncio.sleep(self.config.first_token_delay)
        if self.config.tokens_per_second:
            await asyncio.sleep(1 / self.config.tokens_per_second)

    async def stall_if_asked(self, index: int) -> None:
        """With the "stall" failure, stop sending after `stall_after` chunks until the client leaves."""
        if self.config.failure == "stall" and index >= self.config.stall_after:
            await asyncio.Event().wait()

    def begin(self) -> None:
        self.stats.requests += 1
        self.stats.active += 1
        self.stats.max_active = max(self.stats.max_active, self.stats.active)

    def end(self, *, cancelled: bool) -> None:
        self.stats.active -= 1
        if cancelled:
            self.stats.cancelled += 1
        else:
            self.stats.completed += 1
