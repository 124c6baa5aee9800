"""Where the OpenAI-compatible actors send requests: base_url is the API's prefix, /v1 included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import corral
from corral import ChatRequest, EmbeddingsRequest, OpenAIChat, OpenAIEmbeddings
from corral.testing import FakeLLMServer

from .loopback_http import Canned, Seen, canned_server

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


AZURE_KEY = "az-0123456789abcdef0123456789"
AZURE_VERSION = "2024-10-21"


def azure_chat(base: str, **options: Any) -> OpenAIChat:
    return OpenAIChat(
        model="gpt-4o",
        base_url=f"{base}/openai/deployments/my-gpt-4o",
        query={"api-version": AZURE_VERSION},
        api_key_env="CORRAL_AZURE_KEY",
        api_key_header="api-key",
        **options,
    )


async def test_azure_deployment_path_api_version_and_api_key_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: Azure could not be reached; its path, api-version and api-key header now."""
    monkeypatch.setenv("CORRAL_AZURE_KEY", AZURE_KEY)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument = corral.telemetry.OpenTelemetry(tracer_provider=provider, record_metrics=False)
    async with canned_server(Canned(body=CHAT_REPLY)) as server:
        async with corral.Runtime(instruments=[instrument]) as rt:
            ref = await rt.spawn(lambda: azure_chat(server.base_url), name="chat")
            reply = await ref.ask(HELLO, timeout=10)
    assert reply.content == "hi"
    (seen,) = server.requests
    assert seen.target == (
        f"/openai/deployments/my-gpt-4o/chat/completions?api-version={AZURE_VERSION}"
    )
    assert seen.headers["api-key"] == AZURE_KEY
    assert "authorization" not in seen.headers
    (http,) = [s for s in exporter.get_finished_spans() if s.name.startswith("POST")]
    assert http.name == "POST /openai/deployments/my-gpt-4o/chat/completions"
    attributes = dict(http.attributes or {})
    assert attributes["url.full"] == (
        f"{server.base_url}/openai/deployments/my-gpt-4o/chat/completions"
        f"?api-version={AZURE_VERSION}"
    )
    provider.shutdown()


async def test_a_base_url_pasted_with_its_query_sends_the_query_after_the_path() -> None:
    """Regression: base_url '.../v1?api-version=x' posted to '/v1?api-version=x/chat/...'."""
    async with canned_server(Canned(body=CHAT_REPLY)) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(
                    model="m",
                    base_url=f"{server.base_url}/openai/deployments/d?api-version=2024-10-21&x=1",
                    query={"x": "2"},
                    api_key_env=None,
                ),
                name="chat",
            )
            await ref.ask(HELLO, timeout=10)
    (seen,) = server.requests
    assert seen.target == "/openai/deployments/d/chat/completions?api-version=2024-10-21&x=2"


def quoting_401(seen: Seen) -> Canned:
    key = seen.headers.get("api-key", "")
    body = {"error": {"code": "401", "message": f"Access denied: invalid key {key}."}}
    return Canned(status=401, body=json.dumps(body).encode())


async def test_an_azure_key_quoted_in_an_error_is_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The api-key header is a secret: a 401 that quotes it keeps none of it."""
    monkeypatch.setenv("CORRAL_AZURE_KEY", AZURE_KEY)
    async with canned_server(quoting_401) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: azure_chat(server.base_url),
            name="chat",
            policy=corral.ServicePolicy(retry=None),
        )
        with pytest.raises(corral.AuthenticationError) as info:
            await ref.ask(HELLO, timeout=10)
    error = info.value
    texts = [str(error), error.body, error.message or "", error.url]
    assert not [t for t in texts if AZURE_KEY in t or AZURE_KEY[-8:] in t]
    assert "[REDACTED]" in error.body


async def test_a_key_header_of_another_name_is_sent_and_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """api_key_header="X-Gateway-Key" sends the key as it is there, and redacts it."""
    monkeypatch.setenv("CORRAL_AZURE_KEY", AZURE_KEY)
    async with canned_server(Canned(body=CHAT_REPLY)) as server, corral.Runtime() as rt:
        actor = OpenAIChat(
            model="m",
            base_url=f"{server.base_url}/v1",
            api_key_env="CORRAL_AZURE_KEY",
            api_key_header="X-Gateway-Key",
        )
        ref = await rt.spawn(lambda: actor, name="chat")
        await ref.ask(HELLO, timeout=10)
        assert actor.headers == {}  # the running actor keeps the key in no attribute
        assert actor.api_key_env == "CORRAL_AZURE_KEY"
        assert actor.redact(f"key {AZURE_KEY}") == "key [REDACTED]"
    assert server.requests[0].headers["x-gateway-key"] == AZURE_KEY
    assert "authorization" not in server.requests[0].headers


async def test_a_missing_key_in_its_own_header_fails_the_start_naming_the_variable() -> None:
    """Without the environment variable the actor does not start, and says which one."""
    async with corral.Runtime() as rt:
        with pytest.raises(corral.ActorCrashed, match="CORRAL_NO_SUCH_KEY"):
            await rt.spawn(
                lambda: OpenAIChat(
                    model="m", api_key_env="CORRAL_NO_SUCH_KEY", api_key_header="api-key"
                ),
                name="chat",
            )


async def test_azure_embeddings_take_the_same_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAIEmbeddings posts to {deployment}/embeddings with the api-version and key."""
    monkeypatch.setenv("CORRAL_AZURE_KEY", AZURE_KEY)
    body = json.dumps({"data": [{"index": 0, "embedding": [0.5]}], "model": "e"}).encode()
    async with canned_server(Canned(body=body)) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: OpenAIEmbeddings(
                model="e",
                base_url=f"{server.base_url}/openai/deployments/emb",
                query={"api-version": AZURE_VERSION},
                api_key_env="CORRAL_AZURE_KEY",
                api_key_header="api-key",
            ),
            name="embed",
        )
        await ref.ask(EmbeddingsRequest(inputs="x"), timeout=10)
    (seen,) = server.requests
    assert seen.target == f"/openai/deployments/emb/embeddings?api-version={AZURE_VERSION}"
    assert seen.headers["api-key"] == AZURE_KEY


async def test_a_404_from_a_base_url_without_a_path_says_v1_may_be_missing() -> None:
    """Migration: a root base_url (corral used to add /v1) gets a 404 with a note saying so."""
    not_found = json.dumps({"error": {"message": "Invalid URL (POST /chat/completions)"}})
    async with canned_server(Canned(status=404, body=not_found.encode())) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
                name="chat",
            )
            with pytest.raises(corral.HttpStatusError) as info:
                await ref.ask(HELLO, timeout=10)
            prefixed = await rt.spawn(
                lambda: OpenAIChat(model="m", base_url=f"{server.base_url}/v1", api_key_env=None),
                name="prefixed",
            )
            with pytest.raises(corral.HttpStatusError) as other:
                await prefixed.ask(HELLO, timeout=10)
    (note,) = info.value.__notes__
    assert "has no path" in note and "/v1 included" in note
    assert not getattr(other.value, "__notes__", [])
