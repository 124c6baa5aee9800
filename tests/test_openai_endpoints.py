"""Where the OpenAI-compatible actors send requests: base_url is the API's prefix, /v1 included."""

from __future__ import annotations

import json

import pytest

import corral
from corral import ChatRequest, EmbeddingsRequest, OpenAIChat, OpenAIEmbeddings
from corral.testing import FakeLLMServer

from .loopback_http import Canned, canned_server

pytestmark = pytest.mark.anyio

HELLO = ChatRequest(messages=[{"role": "user", "content": "hello"}])
CHAT_REPLY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


def test_the_default_base_url_is_openais_prefix_with_v1() -> None:
    """The default base_url is https://api.openai.com/v1, as for the official client."""
    assert OpenAIChat(model="m").base_url == "https://api.openai.com/v1"
    assert OpenAIEmbeddings(model="m").base_url == "https://api.openai.com/v1"


async def test_a_base_url_ending_in_v1_posts_to_v1_chat_completions_not_v1_v1() -> None:
    """Regression: base_url="http://host/v1" posted to /v1/v1/chat/completions (404)."""
    async with canned_server(Canned(body=CHAT_REPLY)) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(model="m", base_url=f"{server.base_url}/v1", api_key_env=None),
                name="chat",
            )
            reply = await ref.ask(HELLO, timeout=10)
    assert reply.content == "hi"
    assert [r.target for r in server.requests] == ["/v1/chat/completions"]


async def test_any_prefix_is_kept_as_given_gemini_style() -> None:
    """A prefix of another layout (Gemini's /v1beta/openai/) is kept; the endpoint follows it."""
    async with canned_server(Canned(body=CHAT_REPLY)) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(
                    model="m", base_url=f"{server.base_url}/v1beta/openai/", api_key_env=None
                ),
                name="chat",
            )
            await ref.ask(HELLO, timeout=10)
    assert [r.target for r in server.requests] == ["/v1beta/openai/chat/completions"]


async def test_the_fake_servers_base_url_is_the_prefix_the_actors_take() -> None:
    """FakeLLMServer.base_url ends with /v1 and both actors reach it unchanged."""
    async with FakeLLMServer() as server, corral.Runtime() as rt:
        assert server.base_url.endswith("/v1")
        chat = await rt.spawn(
            lambda: OpenAIChat(model="m", base_url=server.base_url, api_key_env=None), name="chat"
        )
        embed = await rt.spawn(
            lambda: OpenAIEmbeddings(model="e", base_url=server.base_url, api_key_env=None),
            name="embed",
        )
        await chat.ask(HELLO, timeout=10)
        await embed.ask(EmbeddingsRequest(inputs=["a"]), timeout=10)
        assert server.stats().by_path == {"/v1/chat/completions": 1, "/v1/embeddings": 1}
