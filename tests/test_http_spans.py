"""HTTP client and GenAI spans follow the OpenTelemetry semantic conventions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import corral
from corral import ChatRequest, EmbeddingsRequest, OpenAIChat, OpenAIEmbeddings
from corral.testing import FakeLLMServer

from .loopback_http import Canned, canned_server
from .tracing import MemoryTracing

pytestmark = pytest.mark.anyio

HELLO = ChatRequest(messages=[{"role": "user", "content": "hello there"}])
NO_RETRY = corral.ServicePolicy(retry=None)


class Traced(MemoryTracing):
    """An SDK tracer provider writing to memory, and a corral instrument on it."""

    def runtime(self) -> corral.Runtime:
        return corral.Runtime(instruments=[self.instrument])

    def clients(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]

    def one(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.clients() if s.name == name]
        return span


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    t.provider.shutdown()


@corral.message
class Get:
    path: str
    template: str | None = None


class Getter(corral.HttpService[Get, str]):
    async def handle(self, msg: Get) -> str:
        return (await self.request("GET", msg.path, template=msg.template)).text


async def test_http_span_names_have_no_path_or_query_and_url_full_hides_query_secrets(
    traced: Traced,
) -> None:
    """Regression: the span was named 'GET /path?key=...'; now '{method} {template}' or 'GET'."""
    query = "tag=blue&api_key=k1&Sig=k2&X-Amz-Signature=k3&access_token=k4&key=k5&token=k6"
    async with canned_server(Canned()) as server:
        async with traced.runtime() as rt:
            ref = await rt.spawn(lambda: Getter(base_url=server.base_url), name="get")
            await ref.ask(Get(path=f"/v1/items/42?{query}", template="/v1/items/{id}"))
            await ref.ask(Get(path=f"/v1/items/43?{query}"))
        assert [r.target for r in server.requests] == [
            f"/v1/items/42?{query}",
            f"/v1/items/43?{query}",
        ]
    templated, bare = traced.clients()
    assert templated.name == "GET /v1/items/{id}"
    assert bare.name == "GET"
    redacted = (
        "tag=blue&api_key=REDACTED&Sig=REDACTED&X-Amz-Signature=REDACTED"
        "&access_token=REDACTED&key=REDACTED&token=REDACTED"
    )
    attributes = dict(templated.attributes or {})
    assert attributes == {
        "http.request.method": "GET",
        "url.full": f"{server.base_url}/v1/items/42?{redacted}",
        "url.template": "/v1/items/{id}",
        "server.address": "127.0.0.1",
        "server.port": server.port,
        "http.response.status_code": 200,
    }
    assert (bare.attributes or {})["url.full"] == f"{server.base_url}/v1/items/43?{redacted}"
    assert "url.template" not in (bare.attributes or {})
    dump = json.dumps([dict(s.attributes or {}) for s in traced.clients()])
    assert not any(f"k{i}" in dump for i in range(1, 7))


async def test_a_base_url_password_is_not_in_url_full(traced: Traced) -> None:
    """Regression: url.full carried base_url's user and password; now they are a header."""
    async with canned_server(Canned()) as server:
        base = server.base_url.replace("http://", "http://bob:hunter22-secret@")
        async with traced.runtime() as rt:
            ref = await rt.spawn(lambda: Getter(base_url=base), name="get")
            await ref.ask(Get(path="/v1/x", template="/v1/x"))
        assert server.requests[0].headers["authorization"].startswith("Basic ")
    assert (traced.one("GET /v1/x").attributes or {})["url.full"] == f"{server.base_url}/v1/x"


async def test_an_error_status_is_the_http_span_error_type(traced: Traced) -> None:
    """The HTTP span of a 503 has error.type '503' and an error status; the call fails with it."""
    async with FakeLLMServer(script=["503"]) as server:
        async with traced.runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
                name="chat",
                policy=NO_RETRY,
            )
            with pytest.raises(corral.HttpStatusError) as info:
                await ref.ask(HELLO)
    http = traced.one("POST /v1/chat/completions")
    attributes = dict(http.attributes or {})
    assert attributes["error.type"] == "503"
    assert attributes["http.response.status_code"] == 503
    assert attributes["url.template"] == "/v1/chat/completions"
    assert http.status.status_code is StatusCode.ERROR
    assert http.status.description == str(info.value)
    genai = traced.one("chat m")
    assert genai.status.status_code is StatusCode.ERROR
    assert http.parent is not None and http.parent.span_id == genai.context.span_id


async def test_chat_span_has_response_id_server_and_provider_and_no_gen_ai_system(
    traced: Traced,
) -> None:
    """The GenAI chat span records the reply's id, the server, the provider, not gen_ai.system."""
    async with FakeLLMServer() as server:
        async with traced.runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
                name="chat",
            )
            reply = await ref.ask(HELLO)
    attributes = dict(traced.one("chat m").attributes or {})
    assert str(attributes["gen_ai.response.id"]).startswith("chatcmpl-")
    assert attributes["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in attributes
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == server.port
    assert attributes["gen_ai.usage.output_tokens"] == reply.usage.output_tokens
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_embeddings_span_omits_output_tokens(traced: Traced) -> None:
    """Regression: embeddings spans reported 0 output tokens; an embeddings reply has none."""
    async with FakeLLMServer() as server:
        async with traced.runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIEmbeddings(model="emb", base_url=server.base_url, api_key_env=None),
                name="embed",
            )
            await ref.ask(EmbeddingsRequest(inputs=["a", "bb"]))
    genai = traced.one("embeddings emb")
    attributes = dict(genai.attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert "gen_ai.usage.output_tokens" not in attributes
    assert attributes["server.port"] == server.port
    assert "gen_ai.system" not in attributes
    http = traced.one("POST /v1/embeddings")
    assert http.parent is not None and http.parent.span_id == genai.context.span_id


def sse(*events: dict[str, Any]) -> bytes:
    """A server-sent event stream of *events*, then [DONE]."""
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


async def test_streamed_chat_span_records_the_response_id_and_model_from_the_chunks(
    traced: Traced,
) -> None:
    """The streamed chat's GenAI span has the chunks' id, model and finish reason."""

    def chunk(content: str | None, finish: str | None = None) -> dict[str, Any]:
        delta = {} if content is None else {"content": content}
        return {
            "id": "chatcmpl-stream-7",
            "object": "chat.completion.chunk",
            "model": "m-2025-01-01",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    body = sse(chunk("hel"), chunk("lo"), chunk(None, "length"))
    async with canned_server(Canned(body=body, content_type="text/event-stream")) as server:
        async with traced.runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(model="m", base_url=f"{server.base_url}/v1", api_key_env=None),
                name="chat",
            )
            async with ref.stream(HELLO) as chunks:
                pieces = [c.content async for c in chunks]
    assert "".join(pieces) == "hello"
    attributes = dict(traced.one("chat m").attributes or {})
    assert attributes["gen_ai.response.id"] == "chatcmpl-stream-7"
    assert attributes["gen_ai.response.model"] == "m-2025-01-01"
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert traced.one("POST /v1/chat/completions").name == "POST /v1/chat/completions"
