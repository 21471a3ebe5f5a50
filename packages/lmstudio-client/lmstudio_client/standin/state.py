"""The stand-in's state: its models, the behaviour tests switch, and what it saw (stats, requests)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lmstudio_client.standin import behaviour as b

FAILURES = ("no_model_loaded", "crash", "disconnect", "stall", "garbage")


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
    # chunks sent before a "garbage" failure sends a malformed one (cut-off JSON) and ends the stream;
    # a plain request gets a 200 HTML page instead of JSON (a proxy's answer in LM Studio's place)
    garbage_after: int = 3
    legacy_errors: bool = False  # older builds: string errors, 404 for unknown models
    # LM Studio's default: a request naming a downloaded model that is not loaded loads it and is
    # answered, and `/v1/models` lists every downloaded model. Off: only loaded models exist for
    # requests and `/v1/models`.
    jit_loading: bool = True
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

    def listed(self) -> list[StandinModel]:
        """What `/v1/models` lists: every downloaded model with JIT loading on, else the loaded ones."""
        return [m for m in self.config.models if self.config.jit_loading or m.state == "loaded"]

    def loaded_context(self, m: StandinModel) -> int:
        """The context a loaded model runs with: the configured one, never above the model's maximum."""
        return min(self.config.context_length, m.max_context_length)

    def _jit_load(self, model: StandinModel | None) -> StandinModel | None:
        """With JIT loading on, a downloaded model that is not loaded is loaded by the request naming it."""
        if model is not None and model.state != "loaded" and self.config.jit_loading:
            model.state = "loaded"
        return model if model is not None and model.state == "loaded" else None

    def _not_found(self, requested: str, kind: str) -> tuple[int, dict[str, Any]]:
        """LM Studio's "invalid model identifier", naming the models that could have been used."""
        candidates = [m.id for m in self.listed() if (m.type == "embeddings") == (kind == "embeddings")]
        return b.model_not_found(requested, self.config.legacy_errors, candidates)

    def resolve_llm(self, requested: str | None) -> StandinModel | tuple[int, dict[str, Any]]:
        """The model that will answer, or an error body. A downloaded model is loaded on demand with JIT
        loading on; otherwise, with one LLM loaded, any name gets it."""
        if self.config.failure == "no_model_loaded":
            return b.no_model_loaded(self.config.legacy_errors)
        named = self.find(requested or "")
        model = self._jit_load(named if named is not None and named.type != "embeddings" else None)
        if model is not None:
            return model
        loaded = self.loaded_llms()
        if not loaded:
            return b.no_model_loaded(self.config.legacy_errors)
        if len(loaded) == 1:
            return loaded[0]
        return self._not_found(requested or "", "llm")

    def resolve_embedder(self, requested: str) -> StandinModel | tuple[int, dict[str, Any]]:
        """The embedding model that will answer (loaded on demand with JIT loading on), or an error
        body. With one embedding model loaded, an unknown name gets it."""
        named = self.find(requested)
        model = self._jit_load(named if named is not None and named.type == "embeddings" else None)
        if model is not None:
            return model
        embedders = [m for m in self.config.models if m.type == "embeddings" and m.state == "loaded"]
        if named is None and len(embedders) == 1:
            return embedders[0]
        return self._not_found(requested, "embeddings")

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
            entry["loaded_context_length"] = self.loaded_context(m)
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
