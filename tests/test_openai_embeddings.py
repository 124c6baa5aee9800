"""OpenAIEmbeddings: one string or many, options, vectors by index, base64, usage optional."""

from __future__ import annotations

import json
from typing import Any

import pytest

import corral
from corral import EmbeddingsRequest, OpenAIEmbeddings
from corral.testing import FakeLLMServer

from .loopback_http import Canned, canned_server

pytestmark = pytest.mark.anyio


def embeddings_body(data: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"object": "list", "data": data, "model": "e", **extra}).encode()


def test_a_string_is_one_input_not_its_characters() -> None:
    """Regression: EmbeddingsRequest(inputs="hello") was five one-character inputs."""
    assert EmbeddingsRequest(inputs="hello").inputs == ("hello",)
    assert EmbeddingsRequest(inputs=["a", "b"]).inputs == ("a", "b")


async def test_a_string_input_gets_one_vector_from_the_server() -> None:
    """A string sent to the fake server comes back as one vector, not one per character."""
    async with FakeLLMServer() as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: OpenAIEmbeddings(model="e", base_url=server.base_url, api_key_env=None),
            name="embed",
        )
        reply = await ref.ask(EmbeddingsRequest(inputs="hello"), timeout=10)
    assert len(reply.vectors) == 1


async def _ask(body: bytes, request: EmbeddingsRequest) -> tuple[Any, list[Any]]:
    async with canned_server(Canned(body=body)) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: OpenAIEmbeddings(model="e", base_url=f"{server.base_url}/v1", api_key_env=None),
            name="embed",
        )
        reply = await ref.ask(request, timeout=10)
    return reply, [json.loads(r.body) for r in server.requests]
