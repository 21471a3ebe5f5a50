"""Typed async client for LM Studio's HTTP API (and, in `lmstudio_client.standin`, a stand-in server)."""

from lmstudio_client.client import LMStudioClient, Timeouts
from lmstudio_client.errors import (
    BadRequest,
    ContextLengthExceeded,
    LMStudioError,
    LMStudioTimeout,
    LMStudioUnavailable,
    ModelCrashed,
    ModelNotFound,
    NoModelLoaded,
    NotLMStudio,
    StreamInterrupted,
    UnsupportedByServer,
    UpstreamError,
)
from lmstudio_client.types import (
    ChatChunk,
    ChatCompletion,
    Completion,
    Embeddings,
    Health,
    LoadResult,
    ModelInfo,
    Usage,
)

__all__ = [
    "BadRequest",
    "ChatChunk",
    "ChatCompletion",
    "Completion",
    "ContextLengthExceeded",
    "Embeddings",
    "Health",
    "LMStudioClient",
    "LMStudioError",
    "LMStudioTimeout",
    "LMStudioUnavailable",
    "LoadResult",
    "ModelCrashed",
    "ModelInfo",
    "ModelNotFound",
    "NoModelLoaded",
    "NotLMStudio",
    "StreamInterrupted",
    "Timeouts",
    "UnsupportedByServer",
    "UpstreamError",
    "Usage",
]
