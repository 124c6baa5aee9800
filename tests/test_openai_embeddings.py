"""OpenAIEmbeddings: one string or many, options, vectors by index, base64, usage optional."""

from __future__ import annotations

import base64
import json
import struct
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


def test_no_inputs_or_inputs_that_are_not_texts_are_refused_at_once() -> None:
    """Regression: inputs=[] went to the server, and [1, 2, 3] counted as three texts."""
    with pytest.raises(ValueError, match="inputs must hold at least one text"):
        EmbeddingsRequest(inputs=[])
    with pytest.raises(TypeError, match=r"inputs\[1\] is int 2"):
        EmbeddingsRequest(inputs=["a", 2])  # type: ignore[list-item]


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
    """The reply of an OpenAIEmbeddings served *body*, and the JSON bodies it sent."""
    error: Exception | None = None
    async with canned_server(Canned(body=body)) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: OpenAIEmbeddings(model="e", base_url=f"{server.base_url}/v1", api_key_env=None),
            name="embed",
            policy=corral.ServicePolicy(retry=None),
        )
        try:
            reply = await ref.ask(request, timeout=10)
        except Exception as exc:
            error = exc
    if error is not None:
        raise error
    return reply, [json.loads(r.body) for r in server.requests]


async def test_vectors_are_ordered_by_index_not_list_order() -> None:
    """Regression: vectors were taken in list order; a server may send them out of order."""
    body = embeddings_body(
        [
            {"object": "embedding", "index": 1, "embedding": [1.0, 1.0]},
            {"object": "embedding", "index": 0, "embedding": [0.0, 0.5]},
        ],
        usage={"prompt_tokens": 4, "total_tokens": 4},
    )
    reply, _ = await _ask(body, EmbeddingsRequest(inputs=["zero", "one"]))
    assert reply.vectors == ((0.0, 0.5), (1.0, 1.0))
    assert reply.usage == corral.TokenUsage(4)


async def test_base64_vectors_are_decoded_to_floats() -> None:
    """encoding_format="base64" is sent, and the little-endian float32s come back as floats."""
    packed = base64.b64encode(struct.pack("<3f", 0.25, -1.5, 3.0)).decode()
    body = embeddings_body([{"object": "embedding", "index": 0, "embedding": packed}])
    reply, sent = await _ask(body, EmbeddingsRequest(inputs="x", encoding_format="base64"))
    assert reply.vectors == ((0.25, -1.5, 3.0),)
    assert sent[0]["encoding_format"] == "base64"


async def test_fake_server_base64_and_dimensions_round_trip() -> None:
    """Against FakeLLMServer: base64 and float give the same vectors, of the dimensions asked."""
    async with FakeLLMServer() as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: OpenAIEmbeddings(model="e", base_url=server.base_url, api_key_env=None),
            name="embed",
        )
        floats = await ref.ask(EmbeddingsRequest(inputs=["a", "b"], dimensions=8), timeout=10)
        packed = await ref.ask(
            EmbeddingsRequest(inputs=["a", "b"], dimensions=8, encoding_format="base64"),
            timeout=10,
        )
    assert [len(v) for v in floats.vectors] == [8, 8]
    for got, want in zip(packed.vectors, floats.vectors, strict=True):
        assert got == pytest.approx(want, abs=1e-6)


async def test_usage_is_optional_and_options_are_sent_only_when_set() -> None:
    """No usage gives usage None; dimensions, user and extra_body are sent, unset ones not."""
    body = embeddings_body([{"index": 0, "embedding": [1, 2]}])
    reply, sent = await _ask(body, EmbeddingsRequest(inputs="x"))
    assert reply.usage is None
    assert sent == [{"model": "e", "input": ["x"]}]
    request = EmbeddingsRequest(
        inputs=["x"], dimensions=2, user="u-1", extra_body={"input_type": "query"}
    )
    _, sent = await _ask(body, request)
    assert sent == [
        {"model": "e", "input": ["x"], "dimensions": 2, "user": "u-1", "input_type": "query"}
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([{"index": 0, "embedding": [1]}], r"2 inputs but vectors for indexes \[0\]"),
        (
            [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [2]}],
            "two vectors have index 0",
        ),
        ([{"index": 0, "embedding": ["1"]}, {"index": 1, "embedding": [2]}], "should hold numbers"),
        ([{"index": 0, "embedding": [1.5, True]}, {"index": 1, "embedding": [2]}], "hold numbers"),
        ([{"index": 0, "embedding": [1.5, None]}, {"index": 1, "embedding": [2]}], "hold numbers"),
        ([{"index": 0, "embedding": "AAA"}, {"index": 1, "embedding": [2]}], "not valid base64"),
    ],
    ids=["too few", "duplicate index", "not numbers", "a bool", "a null", "bad base64"],
)
async def test_a_reply_that_does_not_fit_the_inputs_is_invalid(
    data: list[dict[str, Any]], match: str
) -> None:
    """Missing, duplicated or unreadable vectors are refused, naming what is wrong."""
    with pytest.raises(corral.InvalidResponse, match=match):
        await _ask(embeddings_body(data), EmbeddingsRequest(inputs=["a", "b"]))


async def test_a_200_carrying_an_error_is_the_providers_error() -> None:
    """An embeddings 200 whose body is an error raises ProviderError, not 'no data'."""
    body = json.dumps({"error": {"message": "input too long", "code": "context_length"}})
    with pytest.raises(corral.ProviderError, match="input too long"):
        await _ask(body.encode(), EmbeddingsRequest(inputs="x"))
