"""HTTP and LLM service actors against a real HTTP server on loopback (FakeLLMServer)."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import corral
from corral import ChatRequest, EmbeddingsRequest, OpenAIChat, OpenAIEmbeddings
from corral.testing import FakeLLMServer, Faults, ManualClock

pytestmark = pytest.mark.anyio

HELLO = ChatRequest(messages=[{"role": "user", "content": "hello there"}])
FAST_RETRY = corral.RetryPolicy(max_attempts=5, min_delay=0.01, max_delay=0.05)


def chat(server: FakeLLMServer, **options: Any) -> OpenAIChat:
    return OpenAIChat(model="fake-model", base_url=server.base_url, api_key_env=None, **options)


async def test_retries_recover_from_5xx_and_429_with_one_idempotency_key() -> None:
    """Injected 503, 500 and 429 are retried; the caller gets the reply; one key throughout."""
    async with FakeLLMServer(
        script=["503", "500", "429"], faults=Faults(retry_after=0.02)
    ) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: chat(server), name="chat", policy=corral.ServicePolicy(retry=FAST_RETRY)
            )
            reply = await ref.ask(HELLO, timeout=10)
            assert reply.content == "fake reply to: hello there"
            assert reply.finish_reason == "stop"
            assert reply.model == "fake-model"
            assert reply.usage.input_tokens > 0
            assert ref.status().recent[-1].attempt == 4
        stats = server.stats()
    assert stats.requests == 4
    assert stats.by_status == {503: 1, 500: 1, 429: 1, 200: 1}
    assert list(stats.idempotency_keys.values()) == [4]


async def test_auth_failure_declared_fatal_goes_to_the_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 401 crashes an actor declaring AuthenticationError fatal; its restart re-reads the key."""

    class StrictChat(OpenAIChat):
        fatal = (corral.AuthenticationError,)

    monkeypatch.setenv("CORRAL_TEST_KEY", "revoked")
    events: list[corral.SupervisorEvent] = []

    class Watch(corral.Instrument):
        def supervisor_event(self, event: corral.SupervisorEvent) -> None:
            events.append(event)

    async with FakeLLMServer(api_key="rotated") as server:
        tree = corral.Supervisor(
            max_restarts=3,
            backoff=corral.Backoff(min=0.05, max=0.05, jitter=0),
            children=[
                corral.child(
                    lambda: StrictChat(
                        model="m", base_url=server.base_url, api_key_env="CORRAL_TEST_KEY"
                    ),
                    name="chat",
                )
            ],
        )
        async with corral.Runtime(tree, instruments=[Watch()]) as rt:
            ref = rt.ref("chat")
            with pytest.raises(corral.AuthenticationError) as info:
                await ref.ask(HELLO, timeout=10)
            assert info.value.status == 401
            assert "rotated" not in str(info.value)
            monkeypatch.setenv("CORRAL_TEST_KEY", "rotated")  # the key is fixed meanwhile
            reply = await ref.ask(HELLO, timeout=10)  # waits for the restart, then succeeds
            assert reply.content.startswith("fake reply")
            assert ref.status().restarts == 1
    kinds = [e.kind for e in events if e.child == "chat"]
    assert corral.SupervisorEventKind.CHILD_CRASHED in kinds
    assert corral.SupervisorEventKind.CHILD_RESTARTED in kinds


async def test_rate_limit_holds_at_the_server() -> None:
    """Requests per second measured at the server never exceed the limit plus one burst."""
    limiter = corral.RateLimiter(requests=40, per=1.0, burst=2)
    async with FakeLLMServer() as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: chat(server),
                name="chat",
                max_concurrency=16,
                policy=corral.ServicePolicy(rate_limiter=limiter),
            )
            async with anyio.create_task_group() as tg:
                for _ in range(60):
                    tg.start_soon(ref.ask, HELLO)
        stats = server.stats()
    assert stats.requests == 60
    # Over any 0.9 s: admissions are spaced exactly (test_resilience checks them
    # on a manual clock), arrivals are not. A loaded machine delays a request up
    # to ~0.1 s between its admission and its arrival, packing a second tighter.
    # Without the limiter, all 60 arrive at once.
    assert stats.max_in_window(0.9) <= 40 + 2


async def test_circuit_opens_fails_fast_and_recovers() -> None:
    """Consecutive failures open the circuit; it fails fast; after a cool-down a probe closes it."""
    clock = ManualClock()
    breaker = corral.CircuitBreaker(failure_threshold=3, cooldown=0.2, name="fake", clock=clock)
    async with FakeLLMServer(script=["503", "503", "503"]) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: chat(server),
                name="chat",
                policy=corral.ServicePolicy(retry=None, breaker=breaker),
            )
            for _ in range(3):
                with pytest.raises(corral.HttpStatusError):
                    await ref.ask(HELLO)
            assert breaker.state is corral.BreakerState.OPEN
            with pytest.raises(corral.CircuitOpen):
                await ref.ask(HELLO)
            assert server.stats().requests == 3  # failing fast: nothing sent
            await clock.advance(0.25)  # the cool-down passes
            assert (await ref.ask(HELLO)).content
            assert breaker.state is corral.BreakerState.CLOSED
            assert breaker.status().opened == 1


async def test_a_slow_server_hits_the_call_deadline_promptly() -> None:
    """The deadline bounds the HTTP request too: DeadlineExceeded comes at the deadline."""
    async with FakeLLMServer(latency=5.0) as server:
        async with corral.Runtime(shutdown_timeout=1) as rt:
            ref = await rt.spawn(lambda: chat(server), name="chat")
            started = time.monotonic()
            with pytest.raises(corral.DeadlineExceeded):
                await ref.ask(HELLO, timeout=0.3)
            assert time.monotonic() - started < 2.0
            await ref.ping()  # the handler has unwound and left the pile
            assert ref.status().counts[corral.CallStatus.EXPIRED] == 1


async def test_cancelling_the_caller_aborts_its_http_request() -> None:
    """A caller that gives up cancels the running request; the actor is free at once."""
    async with FakeLLMServer(latency=5.0, script=["ok"]) as server:
        async with corral.Runtime(shutdown_timeout=1) as rt:
            ref = await rt.spawn(lambda: chat(server), name="chat")
            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                tg.start_soon(ref.ask, HELLO)
                await server.wait_for_requests(1)
                tg.cancel_scope.cancel()
            assert time.monotonic() - started < 3.0
            await ref.ping()
            assert ref.status().counts[corral.CallStatus.CANCELLED] == 1
            assert ref.status().in_flight == 0


async def test_no_call_is_lost_or_duplicated_beyond_its_retries() -> None:
    """Under random faults every call ends; the server saw each call once per attempt."""
    faults = Faults(rate_503=0.15, rate_429=0.1, rate_drop=0.1, retry_after=0.01)
    calls = 30
    async with FakeLLMServer(faults=faults, seed=7) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: chat(server),
                name="chat",
                max_concurrency=8,
                policy=corral.ServicePolicy(
                    retry=corral.RetryPolicy(max_attempts=8, min_delay=0.005, max_delay=0.02)
                ),
            )
            futures = [await ref.submit(HELLO, timeout=20) for _ in range(calls)]
            results = [await f.wait() for f in futures]
        stats = server.stats()
    assert all(results)
    failures = [f.exception() for f in futures if f.exception() is not None]
    assert failures == []
    keys = stats.idempotency_keys
    assert len(keys) == calls
    assert sum(keys.values()) == stats.requests
    assert max(keys.values()) <= 8
    assert stats.dropped > 0  # the faults really happened


async def test_malformed_and_incomplete_replies_are_protocol_errors() -> None:
    """A body that is not JSON, or JSON missing a needed field, fails with InvalidResponse."""
    async with FakeLLMServer(script=["malformed"]) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: chat(server), name="chat", policy=corral.ServicePolicy(retry=None)
            )
            with pytest.raises(corral.InvalidResponse, match="not JSON"):
                await ref.ask(HELLO)

    def incomplete(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"text": "hi"}]})

    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: OpenAIChat(
                model="m",
                base_url="http://seam.invalid",
                api_key_env=None,
                transport=httpx.MockTransport(incomplete),
            ),
            name="chat",
        )
        with pytest.raises(corral.InvalidResponse, match=r"has no 'choices\.0\.message'"):
            await ref.ask(HELLO)


async def test_embeddings_and_a_shared_limiter() -> None:
    """Two actors sharing one limiter stay under its concurrency together."""
    limiter = corral.RateLimiter(max_concurrency=3)
    policy = corral.ServicePolicy(rate_limiter=limiter)
    async with FakeLLMServer(latency=0.02) as server:
        async with corral.Runtime() as rt:
            c = await rt.spawn(lambda: chat(server), name="chat", max_concurrency=8, policy=policy)
            e = await rt.spawn(
                lambda: OpenAIEmbeddings(model="emb", base_url=server.base_url, api_key_env=None),
                name="embed",
                max_concurrency=8,
                policy=policy,
            )
            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(c.ask, HELLO)
                    tg.start_soon(e.ask, EmbeddingsRequest(inputs=[f"text {i}", "more"]))
            reply = await e.ask(EmbeddingsRequest(inputs=["a", "bb", "ccc"]))
        stats = server.stats()
    assert len(reply.vectors) == 3
    assert all(len(v) == 8 for v in reply.vectors)
    assert stats.concurrent_peak <= 3
    assert stats.by_path["/v1/embeddings"] == 13


async def test_token_limits_use_estimates_then_reported_usage() -> None:
    """Chat calls are estimated at chars/4 + max_tokens, then corrected from the reply's usage."""
    limiter = corral.RateLimiter(tokens=1000, per=3600)
    async with FakeLLMServer() as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: chat(server), name="chat", policy=corral.ServicePolicy(rate_limiter=limiter)
            )
            request = ChatRequest(messages=[{"role": "user", "content": "x" * 400}], max_tokens=300)
            reply = await ref.ask(request)
            used = reply.usage.total
            assert limiter.status().tokens_available == pytest.approx(1000 - used, abs=1)
            too_big = ChatRequest(messages=[{"role": "user", "content": "x" * 8000}])
            with pytest.raises(corral.RateLimitRefused, match="never fit"):
                await ref.ask(too_big)
        assert server.stats().requests == 1


async def test_missing_api_key_fails_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API key read from an unset environment variable is a clear start failure."""
    monkeypatch.delenv("CORRAL_NO_SUCH_KEY", raising=False)
    async with corral.Runtime() as rt:
        with pytest.raises(corral.ActorCrashed, match="failed to start") as info:
            await rt.spawn(
                lambda: OpenAIChat(model="m", api_key_env="CORRAL_NO_SUCH_KEY"), name="chat"
            )
        assert "CORRAL_NO_SUCH_KEY" in str(info.value.__cause__)


async def test_spans_show_attempts_http_requests_and_genai_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Consumer -> attempt -> chat (GenAI) -> POST span; retries are events; no key in spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setenv("CORRAL_TEST_KEY", "sk-secret-value")
    instrument = corral.telemetry.OpenTelemetry(tracer_provider=provider, record_metrics=False)
    async with FakeLLMServer(script=["503"], api_key="sk-secret-value") as server:
        async with corral.Runtime(instruments=[instrument]) as rt:
            ref = await rt.spawn(
                lambda: OpenAIChat(
                    model="m", base_url=server.base_url, api_key_env="CORRAL_TEST_KEY"
                ),
                name="chat",
                policy=corral.ServicePolicy(retry=FAST_RETRY),
            )
            await ref.ask(ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5))
    spans = exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (process,) = by_name["process chat"]
    attempts = by_name["attempt 1"] + by_name["attempt 2"]
    assert [a.parent.span_id for a in attempts] == [process.context.span_id] * 2
    assert attempts[0].status.status_code.name == "ERROR"
    chats = by_name["chat m"]
    posts = by_name["POST /v1/chat/completions"]
    assert len(chats) == len(posts) == 2
    for attempt, chat_span, post in zip(attempts, chats, posts, strict=True):
        assert chat_span.parent.span_id == attempt.context.span_id
        assert post.parent.span_id == chat_span.context.span_id
    ok = chats[1].attributes or {}
    assert ok["gen_ai.operation.name"] == "chat"
    assert ok["gen_ai.request.model"] == "m"
    assert ok["gen_ai.response.model"] == "m"
    assert ok["gen_ai.usage.input_tokens"] > 0
    assert ok["gen_ai.usage.output_tokens"] > 0
    assert ok["gen_ai.request.max_tokens"] == 5
    assert (posts[0].attributes or {})["http.response.status_code"] == 503
    assert [e.name for e in process.events] == ["dequeued", "retry scheduled"]
    dump = json.dumps([dict(s.attributes or {}) for s in spans] + [s.name for s in spans])
    assert "sk-secret-value" not in dump
