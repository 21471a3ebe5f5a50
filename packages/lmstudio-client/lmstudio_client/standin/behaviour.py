"""What the stand-in answers: deterministic replies, token counts and LM Studio's exact error bodies."""

from __future__ import annotations

import hashlib
import math
import random
import re
import string
from typing import Any

_TOKEN = re.compile(r"\S+\s*")


def tokens(text: str) -> list[str]:
    """A token is a word with its trailing space: crude, deterministic, and easy to assert on."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    return len(tokens(text))


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_tokens(message_text(m.get("content"))) for m in messages)


def reply_for(prompt: str) -> str:
    """The deterministic reply to a prompt: what was said, echoed back."""
    text = " ".join(prompt.split()) or "(silence)"
    return f"You said: {text}"


def completion_id(prefix: str) -> str:
    return prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=20))


def embedding_for(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:dims]]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


# What a broken server (or a proxy in its place) sends: the "garbage" failure.
GARBAGE_CHUNK = (
    b'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"delta":{"con\n\n'
)
GARBAGE_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


# LM Studio's error bodies, as it sends them (see shared/LMSTUDIO.md).


def no_model_loaded(legacy: bool) -> tuple[int, dict[str, Any]]:
    message = "No models loaded. Please load a model in the developer page or use the `lms load` command."
    return 400, ({"error": message} if legacy else {"error": {"message": message}})


def model_not_found(
    model: str, legacy: bool, candidates: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Unknown model; new builds name a few of the models that could be used instead."""
    if legacy:
        return 404, {
            "error": {
                "message": f'Model "{model}" not found. Please check the model identifier.',
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        }
    return 400, {
        "error": {
            "message": f'Invalid model identifier "{model}". Please specify a valid downloaded model'
            + (f" (e.g., {', '.join(candidates[:3])})." if candidates else "."),
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def context_overflow(needed: int, context_length: int) -> tuple[int, dict[str, Any]]:
    return 400, {
        "error": (
            f"Trying to keep the first {needed} tokens when context the overflows. However, the model is "
            f"loaded with context length of only {context_length} tokens, which is not enough. Try to load "
            "the model with a larger context length, or provide a shorter input"
        )
    }


def crashed() -> tuple[int, dict[str, Any]]:
    return 400, {
        "error": "The model has crashed without additional information. (Exit code: 18446744072635812000)"
    }


def unexpected_endpoint(method: str, path: str) -> tuple[int, dict[str, Any]]:
    return 200, {"error": f"Unexpected endpoint or method. ({method} {path})"}


def bad_request(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"error": message}
