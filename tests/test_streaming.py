"""Streamed replies: chunks as they come, under the same admission, deadline and tracing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import corral
from corral.testing import FakeLLMServer

pytestmark = pytest.mark.anyio


@corral.message
class Count:
    upto: int
    fail_at: int = -1


class Counter(corral.Actor[Count, int]):
    """Streams 0..upto-1, pausing on a gate after each chunk when asked to."""

    def __init__(self) -> None:
        self.gate: anyio.Event | None = None
        self.cleaned = anyio.Event()
        self.started = 0

    async def handle(self, msg: Count) -> int:
        return msg.upto

    @corral.streams(Count)
    async def count(self, msg: Count) -> AsyncIterator[int]:
        self.started += 1
        try:
            for i in range(msg.upto):
                if i == msg.fail_at:
                    raise corral.HttpStatusError("upstream broke", status=503)
                yield i
                if self.gate is not None:
                    await self.gate.wait()
        finally:
            self.cleaned.set()


async def test_chunks_arrive_in_order_and_ask_still_works() -> None:
    """A stream yields every chunk in order; its future holds the count; ask goes to handle."""
    async with corral.Runtime() as rt:
        ref = await rt.spawn(Counter, name="counter")
        async with ref.stream(Count(upto=40)) as chunks:
            got = [c async for c in chunks]
        assert got == list(range(40))
        assert chunks.future.result() == 40
        assert await ref.ask(Count(upto=3)) == 3
        assert ref.status().counts[corral.CallStatus.SUCCEEDED] == 2


async def test_an_error_mid_stream_reaches_the_reader_after_the_chunks_before_it() -> None:
    """The reader gets the chunks sent before a failure, then the error; no retry after one."""
    policy = corral.ServicePolicy(
        retry=corral.RetryPolicy(max_attempts=5, min_delay=0, max_delay=0)
    )
    actor = Counter()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: actor, name="counter", policy=policy)
        got: list[int] = []
        with pytest.raises(corral.HttpStatusError, match="upstream broke"):
            async with ref.stream(Count(upto=10, fail_at=3)) as chunks:
                async for c in chunks:
                    got.append(c)
        assert got == [0, 1, 2]
        assert actor.started == 1  # a stream is retried only before its first chunk
        assert ref.status().recent[-1].attempt == 1


async def test_a_stream_failing_before_its_first_chunk_is_retried() -> None:
    """Before the first chunk a retryable failure is retried like any call."""
    policy = corral.ServicePolicy(
        retry=corral.RetryPolicy(max_attempts=3, min_delay=0, max_delay=0)
    )
    async with FakeLLMServer(script=["503", "429"]) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: corral.OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
                name="chat",
                policy=policy,
            )
            request = corral.ChatRequest(
                messages=(corral.ChatMessage(role="user", content="stream this to me"),)
            )
            async with ref.stream(request, timeout=10) as chunks:
                pieces = [c async for c in chunks]
            whole = await ref.ask(request, timeout=10)
    assert "".join(p.content for p in pieces) == whole.content
    assert pieces[-1].finish_reason == "stop"
    assert server.stats().requests == 4  # 503, 429, the stream, the ask


async def test_leaving_early_cancels_the_call_and_releases_its_slot() -> None:
    """A reader that stops early cancels the call at once; the generator's cleanup runs."""
    limiter = corral.RateLimiter(max_concurrency=1)
    actor = Counter()
    actor.gate = anyio.Event()  # never set: the stream stalls after its first chunk
    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: actor, name="counter", policy=corral.ServicePolicy(rate_limiter=limiter)
        )
        async with ref.stream(Count(upto=1000)) as chunks:
            async for first in chunks:
                assert first == 0
                assert limiter.status().in_use == 1
                break
        await actor.cleaned.wait()
        await ref.ping()
        assert limiter.status().in_use == 0
        assert ref.status().counts[corral.CallStatus.CANCELLED] == 1


async def test_a_stalled_stream_ends_at_its_deadline() -> None:
    """A stream that stalls past its deadline raises DeadlineExceeded to its reader promptly."""
    actor = Counter()
    actor.gate = anyio.Event()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: actor, name="counter")
        got: list[int] = []
        with pytest.raises(corral.DeadlineExceeded):
            async with ref.stream(Count(upto=5), timeout=0.1) as chunks:
                async for c in chunks:
                    got.append(c)
        assert got == [0]


async def test_streaming_needs_a_declared_stream_handler() -> None:
    """An actor that does not stream a type refuses the stream before anything is queued."""

    class Plain(corral.Actor[Count, int]):
        async def handle(self, msg: Count) -> int:
            return 1

    async with corral.Runtime() as rt:
        ref = await rt.spawn(Plain, name="plain")
        with pytest.raises(corral.UnhandledMessage, match="does not stream replies to Count"):
            async with ref.stream(Count(upto=1)):
                pass
        assert ref.status().queue_depth == 0
    with pytest.raises(TypeError, match="async generator"):

        @corral.streams(Count)
        async def not_a_generator(self: object, msg: Count) -> int:
            return 1


async def test_a_stream_is_one_traced_call_with_chunks_and_first_chunk_time() -> None:
    """The call's spans record the chunk count and the time to the first chunk."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument = corral.telemetry.OpenTelemetry(tracer_provider=provider, record_metrics=False)
    async with corral.Runtime(instruments=[instrument]) as rt:
        ref = await rt.spawn(Counter, name="counter")
        async with ref.stream(Count(upto=7)) as chunks:
            assert len([c async for c in chunks]) == 7
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("send counter", "process counter"):
        attributes = spans[name].attributes or {}
        assert attributes["corral.stream.chunks"] == 7
        assert attributes["corral.stream.time_to_first_chunk"] >= 0


async def test_leaving_an_http_stream_early_aborts_the_request() -> None:
    """A reader that leaves an HTTP stream early cancels the call and its request cleanly."""
    async with FakeLLMServer(stream_delay=0.2) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: corral.OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
                name="chat",
            )
            request = corral.ChatRequest(
                messages=(corral.ChatMessage(role="user", content="a long story, please"),)
            )
            started = anyio.current_time()
            async with ref.stream(request, timeout=10) as chunks:
                async for first in chunks:
                    assert first.content == "fake"
                    break
            await ref.ping()
            assert anyio.current_time() - started < 1.0  # not the whole 1.2 s stream
            assert ref.status().counts[corral.CallStatus.CANCELLED] == 1
