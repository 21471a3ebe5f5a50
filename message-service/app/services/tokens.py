"""Token estimates for prompt building, and their per-model calibration kept in Redis.

No tokenizer is loaded: a model's tokens are estimated from characters (a ratio of characters per
token) and the ratio is calibrated per model by the `usage.prompt_tokens` LM Studio reports.
CJK characters, kana, hangul and emoji take about one token each in every tokenizer we meet, so they
are counted apart and are not scaled by the ratio.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

DEFAULT_CHARS_PER_TOKEN = 3.5
MIN_CHARS_PER_TOKEN = 1.0
MAX_CHARS_PER_TOKEN = 8.0
MESSAGE_OVERHEAD = 4  # role markers and separators a chat template adds around each message
REPLY_PRIMING = 3  # the assistant header the template adds after the last message

# CJK ideographs, kana, hangul, fullwidth forms, and the emoji/pictograph planes.
_DENSE = re.compile(
    "[\u2e80-\u2fff\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
    "\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef\u2600-\u27bf\U0001f000-\U0001faff\U00020000-\U0003ffff]"
)


@dataclass(frozen=True)
class TokenEstimator:
    """Estimates how many tokens a text or a list of chat messages takes for one model."""

    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    message_overhead: int = MESSAGE_OVERHEAD
    reply_priming: int = REPLY_PRIMING

    def estimate(self, text: str) -> int:
        """Tokens of `text`: 0 only for the empty string."""
        if not text:
            return 0
        dense = len(_DENSE.findall(text))
        other = len(text) - dense
        return max(1, dense + math.ceil(other / self.chars_per_token))

    def cautious(self, margin: float = 0.15) -> TokenEstimator:
        """The same estimator counting `margin` more tokens, for a retry after a context overflow."""
        ratio = clamp_ratio(self.chars_per_token / (1 + margin))
        return TokenEstimator(ratio, self.message_overhead, self.reply_priming)

    def estimate_message(self, content: str) -> int:
        return self.estimate(content) + self.message_overhead

    def estimate_messages(self, messages: Iterable[Mapping[str, str]]) -> int:
        """Tokens of a chat request's messages, template overhead included."""
        return self.reply_priming + sum(self.estimate_message(m.get("content", "")) for m in messages)


def clamp_ratio(ratio: float) -> float:
    return min(MAX_CHARS_PER_TOKEN, max(MIN_CHARS_PER_TOKEN, ratio))


# Atomic read-update-write of the moving average, so concurrent replies never lose an update.
_RECORD_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
local target = current * tonumber(ARGV[2])
local updated = current + tonumber(ARGV[3]) * (target - current)
updated = math.max(tonumber(ARGV[4]), math.min(tonumber(ARGV[5]), updated))
redis.call('SET', KEYS[1], tostring(updated), 'EX', tonumber(ARGV[6]))
return tostring(updated)
"""


class CalibrationStore:
    """Per-model characters-per-token ratios in Redis, moved towards what LM Studio reports.

    The ratio is an exponential moving average (weight `alpha` for each new sample), clamped to
    [MIN_CHARS_PER_TOKEN, MAX_CHARS_PER_TOKEN]; one sample moves it by at most a factor of
    `max_step`, so a single odd reply cannot throw the estimate off.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = "message-service:token-ratio:",
        *,
        alpha: float = 0.3,
        max_step: float = 2.0,
        ttl_seconds: int = 90 * 24 * 3600,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._alpha = alpha
        self._max_step = max_step
        self._ttl = ttl_seconds
        self._record = redis.register_script(_RECORD_SCRIPT)  # EVALSHA: not compiled on every call

    def _key(self, model: str) -> str:
        return f"{self._prefix}{model}"

    async def get(self, model: str) -> TokenEstimator:
        """The estimator calibrated for `model`; the default one for a model never seen."""
        raw = await self._redis.get(self._key(model))
        try:
            ratio = clamp_ratio(float(raw)) if raw is not None else DEFAULT_CHARS_PER_TOKEN
        except ValueError:
            ratio = DEFAULT_CHARS_PER_TOKEN
        return TokenEstimator(chars_per_token=ratio)

    async def record(self, model: str, estimated_tokens: int, reported_prompt_tokens: int) -> None:
        """Moves `model`'s ratio so that `estimated_tokens` would have been `reported_prompt_tokens`.

        `estimated_tokens` is the estimate made with the ratio `get` returned (Prompt.estimated_tokens);
        samples that cannot be right (zero or negative) are ignored.
        """
        if estimated_tokens <= 0 or reported_prompt_tokens <= 0:
            return
        factor = estimated_tokens / reported_prompt_tokens
        factor = min(self._max_step, max(1 / self._max_step, factor))
        await self._record(
            keys=[self._key(model)],
            args=[
                str(DEFAULT_CHARS_PER_TOKEN),
                str(factor),
                str(self._alpha),
                str(MIN_CHARS_PER_TOKEN),
                str(MAX_CHARS_PER_TOKEN),
                str(self._ttl),
            ],
        )
