"""Input rules every service shares.

PostgreSQL text and jsonb cannot hold NUL (U+0000), so a NUL anywhere in a request is refused up
front with a 422 instead of failing in the database. JSON nested deeper than `MAX_JSON_DEPTH` is
refused before anything parses it: Python's parser, pydantic and every recursive walk over the
value would otherwise hit their recursion limits (a 500), and MongoDB stores at most 100 levels.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import Callable
from itertools import accumulate, count
from operator import sub
from typing import Any

from pydantic import BaseModel, model_validator

NUL_MESSAGE = "text must not contain NUL (\\u0000) characters"
SURROGATE_MESSAGE = "text must be valid Unicode: a lone surrogate (\\ud800-\\udfff without its pair) is not"


def contains_nul(value: Any) -> bool:
    """True when a string anywhere in `value` (nested lists and dicts, keys included) holds a NUL."""
    return _any_text(value, lambda text: "\x00" in text)


def contains_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in `value` holds a lone surrogate (JSON's `"\ud800"` escape without
    its pair): text no UTF-8 encoder can write, so nothing downstream could store or send it."""
    return _any_text(value, _unencodable)


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _any_text(value: Any, matches: Callable[[str], bool]) -> bool:
    """Whether a string anywhere in `value` (nested lists and dicts, keys included) `matches`. It walks
    with a list of pending values, not recursion, so no nesting can raise RecursionError."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if matches(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


class UnicodeModel(BaseModel):
    """Base of request bodies passed on as they are (llm-service's OpenAI shapes): refuses text that
    is not valid Unicode (a lone surrogate) with a 422, where it would fail on its way out."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        if contains_lone_surrogate(data):
            raise ValueError(SURROGATE_MESSAGE)
        return data


class InputModel(UnicodeModel):
    """Base of request bodies: refuses NUL characters (and lone surrogates) in any field."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if contains_nul(data):
            raise ValueError(NUL_MESSAGE)
        return data


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower case and without parameters, read as FastAPI
    reads it (a value without a slash counts as text/plain); "" when there is none."""
    if not content_type or not content_type.strip():
        return ""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type()


def is_json_media_type(value: str) -> bool:
    """application/json and any application/<something>+json, as FastAPI decides to parse JSON."""
    maintype, _, subtype = value.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


MAX_JSON_DEPTH = 64

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# An opening bracket counts 2 and a closing one 0, so that the running sum minus the position is
# the depth: itertools does the counting in C, with no Python-level loop over the text.
_BRACKET_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text nests arrays and objects deeper than `limit`.

    It scans the bytes without parsing them (and without recursion), so it is safe on any input:
    strings are cut out first, so brackets inside them do not count. UTF-16 and UTF-32 bodies
    (which `json.loads` accepts) are read as UTF-8 first, so they cannot hide their brackets.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case: too few brackets to be that deep, whatever they are
    encoding = json.detect_encoding(body)
    if encoding not in ("utf-8", "utf-8-sig"):
        body = body.decode(encoding, errors="replace").encode()
    steps = _JSON_STRING.sub(b"", body).translate(None, _NOT_A_BRACKET).translate(_BRACKET_STEP)
    if b"\x02" * (limit + 1) in steps:
        return True  # a run of openings: the usual attack, found without counting
    depths = map(sub, accumulate(steps), count(1))
    return max(depths, default=0) > limit
