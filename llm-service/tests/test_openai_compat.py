"""The official `openai` package, pointed at llm-service with a JWT, just works."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from tests.conftest import ECHO, EMBED


@pytest.fixture
def sdk(llm_url: str, user_token: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{llm_url}/api/v1", api_key=user_token, max_retries=0)


async def test_openai_lists_models(sdk: AsyncOpenAI) -> None:
    ids = [m.id async for m in sdk.models.list()]
    assert ECHO in ids and EMBED in ids


async def test_openai_chat(sdk: AsyncOpenAI) -> None:
    reply = await sdk.chat.completions.create(
        model=ECHO, messages=[{"role": "user", "content": "hi from openai"}]
    )
    assert reply.choices[0].message.content == "You said: hi from openai"
    assert reply.model == ECHO and reply.usage is not None and reply.usage.total_tokens > 0


async def test_openai_streams(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model=ECHO,
        messages=[{"role": "user", "content": "stream to openai"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    assert text == "You said: stream to openai"
    assert usage is not None and usage.completion_tokens == 5


async def test_openai_embeds(sdk: AsyncOpenAI) -> None:
    result = await sdk.embeddings.create(model=EMBED, input=["one", "two"])
    assert [len(d.embedding) for d in result.data] == [16, 16]


async def test_openai_sees_errors_as_api_errors(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(model="nobody/none", messages=[{"role": "user", "content": "x"}])


async def test_openai_without_a_valid_token_is_refused(llm_url: str) -> None:
    sdk = AsyncOpenAI(base_url=f"{llm_url}/api/v1", api_key="not-a-jwt", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await sdk.models.list()
