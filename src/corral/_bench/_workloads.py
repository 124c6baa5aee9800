"""The workloads: each has a corral side and a raw anyio floor doing the same work."""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs

import corral

# --- messages and actors ------------------------------------------------------------


@corral.message(name="bench.Num")
class Num:
    """A request carrying one integer."""

    n: int


class Inc(corral.Actor[Num, int]):
    """Replies msg + 1."""

    async def handle(self, msg: Num) -> int:
        return msg.n + 1


class Counter(corral.Actor[Num, None]):
    """Counts one-way messages and sets an event at the target count."""

    def __init__(self, target: int, done: anyio.Event) -> None:
        self.count = 0
        self.target = target
        self.done = done

    async def handle(self, msg: Num) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()


class Sleeper(corral.Actor[Num, int]):
    """Awaits a 10 ms sleep, then replies."""

    async def handle(self, msg: Num) -> int:
        await anyio.sleep(0.01)
        return msg.n


@attrs.frozen
class Result:
    """Figures of one side of one workload."""

    metrics: dict[str, float]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _latency_metrics(count: int, elapsed: float, lat: list[float]) -> dict[str, float]:
    return {
        "per_s": count / elapsed,
        "p50_us": _percentile(lat, 0.50) * 1e6,
        "p99_us": _percentile(lat, 0.99) * 1e6,
    }


# --- the raw anyio floor --------------------------------------------------------------
# One memory object stream carrying (msg, reply-event, reply-box) to consumer tasks.


class _Reply:
    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Any = None


async def _floor_consumer(recv: Any, fn: Callable[[int], Awaitable[int]] | None = None) -> None:
    async with recv:
        async for n, reply in recv:
            reply.value = n + 1 if fn is None else await fn(n)
            if reply is not None:
                reply.event.set()


async def floor_w1(count: int) -> Result:
    send, recv = anyio.create_memory_object_stream[Any](100)
    lat: list[float] = []
    clock = time.perf_counter
    async with anyio.create_task_group() as tg:
        tg.start_soon(_floor_consumer, recv)
        async with send:
            start = clock()
            for i in range(count):
                t0 = clock()
                reply = _Reply()
                await send.send((i, reply))
                await reply.event.wait()
                lat.append(clock() - t0)
            elapsed = clock() - start
    return Result(_latency_metrics(count, elapsed, lat))


async def corral_w1(count: int, instruments: Sequence[corral.Instrument] = ()) -> Result:
    lat: list[float] = []
    clock = time.perf_counter
    async with corral.Runtime(instruments=instruments) as rt:
        ref = await rt.spawn(Inc, name="inc")
        start = clock()
        for i in range(count):
            t0 = clock()
            await ref.ask(Num(i))
            lat.append(clock() - t0)
        elapsed = clock() - start
    return Result(_latency_metrics(count, elapsed, lat))


async def _callers(callers: int, count: int, one: Callable[[int], Awaitable[None]]) -> float:
    per = count // callers

    async def caller(base: int) -> None:
        for i in range(base, base + per):
            await one(i)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for c in range(callers):
            tg.start_soon(caller, c * per)
    return time.perf_counter() - start


async def floor_w2(count: int, callers: int = 64) -> Result:
    send, recv = anyio.create_memory_object_stream[Any](100)
    lat: list[float] = []
    clock = time.perf_counter

    async def one(i: int) -> None:
        t0 = clock()
        reply = _Reply()
        await send.send((i, reply))
        await reply.event.wait()
        lat.append(clock() - t0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_floor_consumer, recv)
        async with send:
            elapsed = await _callers(callers, count, one)
    return Result(_latency_metrics(len(lat), elapsed, lat))


async def corral_w2(
    count: int, callers: int = 64, instruments: Sequence[corral.Instrument] = ()
) -> Result:
    lat: list[float] = []
    clock = time.perf_counter
    async with corral.Runtime(instruments=instruments) as rt:
        ref = await rt.spawn(Inc, name="inc")

        async def one(i: int) -> None:
            t0 = clock()
            await ref.ask(Num(i))
            lat.append(clock() - t0)

        elapsed = await _callers(callers, count, one)
    return Result(_latency_metrics(len(lat), elapsed, lat))


async def floor_w3(count: int) -> Result:
    send, recv = anyio.create_memory_object_stream[Any](1000)
    done = anyio.Event()

    async def consumer() -> None:
        seen = 0
        async with recv:
            async for _ in recv:
                seen += 1
                if seen == count:
                    done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        async with send:
            start = time.perf_counter()
            for i in range(count):
                await send.send(i)
            await done.wait()
            elapsed = time.perf_counter() - start
    return Result({"per_s": count / elapsed, "total_s": elapsed})


async def corral_w3(count: int) -> Result:
    done = anyio.Event()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Counter(count, done), name="counter")
        start = time.perf_counter()
        for i in range(count):
            await ref.tell(Num(i))
        await done.wait()
        elapsed = time.perf_counter() - start
    return Result({"per_s": count / elapsed, "total_s": elapsed})


async def _fan_out(
    actors: int, per_actor: int, outstanding: int, one: Callable[[int, int], Awaitable[None]]
) -> float:
    total = actors * per_actor
    next_job = iter(range(total))

    async def caller() -> None:
        for job in next_job:
            await one(job % actors, job)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(outstanding):
            tg.start_soon(caller)
    return time.perf_counter() - start


async def floor_w4(actors: int, per_actor: int, outstanding: int = 256) -> Result:
    streams = [anyio.create_memory_object_stream[Any](100) for _ in range(actors)]

    async def one(a: int, i: int) -> None:
        reply = _Reply()
        await streams[a][0].send((i, reply))
        await reply.event.wait()

    async with anyio.create_task_group() as tg:
        for _, recv in streams:
            tg.start_soon(_floor_consumer, recv)
        elapsed = await _fan_out(actors, per_actor, outstanding, one)
        for send, _ in streams:
            await send.aclose()
    return Result({"per_s": actors * per_actor / elapsed})


async def corral_w4(actors: int, per_actor: int, outstanding: int = 256) -> Result:
    async with corral.Runtime() as rt:
        refs = [await rt.spawn(Inc, name=f"inc-{a}") for a in range(actors)]

        async def one(a: int, i: int) -> None:
            await refs[a].ask(Num(i))

        elapsed = await _fan_out(actors, per_actor, outstanding, one)
    return Result({"per_s": actors * per_actor / elapsed})


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: peak RSS is the best portable figure
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def floor_w5(count: int) -> Result:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        sends = []
        for _ in range(count):
            send, recv = anyio.create_memory_object_stream[Any](100)
            sends.append(send)
            tg.start_soon(_floor_consumer, recv)
        await anyio.lowlevel.checkpoint()  # let every consumer reach its first wait
        spawn_s = time.perf_counter() - start
        gc.collect()
        idle = (rss_bytes() - before) / count
        # Serve one call each, so the figure after use is comparable with corral's.
        for send in sends:
            reply = _Reply()
            await send.send((1, reply))
            await reply.event.wait()
        gc.collect()
        used = (rss_bytes() - before) / count
        t1 = time.perf_counter()
        for send in sends:
            send.close()
    stop_s = time.perf_counter() - t1
    return Result(
        {"spawn_s": spawn_s, "bytes_idle": idle, "bytes_after_call": used, "stop_s": stop_s}
    )


async def corral_w5(count: int) -> Result:
    gc.collect()
    before = rss_bytes()
    async with corral.Runtime() as rt:
        start = time.perf_counter()
        refs = [await rt.spawn(Inc, name=f"a{a}") for a in range(count)]
        await anyio.lowlevel.checkpoint()
        spawn_s = time.perf_counter() - start
        gc.collect()
        idle = (rss_bytes() - before) / count
        # An actor without start/stop hooks gets its task at its first call;
        # after one call each, every actor has its task, idle again.
        for ref in refs:
            await ref.ask(Num(1))
        gc.collect()
        used = (rss_bytes() - before) / count
        t1 = time.perf_counter()
    stop_s = time.perf_counter() - t1
    return Result(
        {"spawn_s": spawn_s, "bytes_idle": idle, "bytes_after_call": used, "stop_s": stop_s}
    )


async def _sleep_reply(n: int) -> int:
    await anyio.sleep(0.01)
    return n


async def floor_w6(count: int, concurrency: int = 100) -> Result:
    send, recv = anyio.create_memory_object_stream[Any](1000)
    replies = [_Reply() for _ in range(count)]
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(_floor_consumer, recv.clone(), _sleep_reply)
        recv.close()
        async with send:
            start = time.perf_counter()
            for i, reply in enumerate(replies):
                await send.send((i, reply))
            for reply in replies:
                await reply.event.wait()
            elapsed = time.perf_counter() - start
    return Result({"per_s": count / elapsed, "ideal_per_s": concurrency / 0.01})


async def corral_w6(count: int, concurrency: int = 100) -> Result:
    async with corral.Runtime() as rt:
        ref = await rt.spawn(Sleeper, name="sleeper", max_concurrency=concurrency)
        start = time.perf_counter()
        futures = [await ref.submit(Num(i)) for i in range(count)]
        for fut in futures:
            await fut
        elapsed = time.perf_counter() - start
    return Result({"per_s": count / elapsed, "ideal_per_s": concurrency / 0.01})


# --- W7: crash and restart ------------------------------------------------------------


class _Stamps:
    def __init__(self) -> None:
        self.crashed: list[float] = []
        self.started: list[float] = []


class Crashy(corral.Actor[Num, int]):
    """Replies msg + 1, and crashes on every message whose number ends in 99 (if asked to)."""

    def __init__(self, stamps: _Stamps, crash_every: int) -> None:
        self.stamps = stamps
        self.crash_every = crash_every

    async def on_start(self) -> None:
        self.stamps.started.append(time.perf_counter())

    async def handle(self, msg: Num) -> int:
        if self.crash_every and msg.n % self.crash_every == self.crash_every - 1:
            self.stamps.crashed.append(time.perf_counter())
            raise corral.Crash("crash on purpose")
        return msg.n + 1


async def _crash_run(count: int, crash_every: int, callers: int = 64) -> Result:
    stamps = _Stamps()
    tree = corral.Supervisor(
        max_restarts=count,  # generous: the workload restarts on every 100th call
        within=60.0,
        children=[corral.child(lambda: Crashy(stamps, crash_every), name="crashy")],
    )
    failed = 0
    async with corral.Runtime(tree) as rt:
        ref = rt.ref("crashy")

        async def one(i: int) -> None:
            nonlocal failed
            try:
                await ref.ask(Num(i))
            except corral.Crash:
                failed += 1

        elapsed = await _callers(callers, count, one)
    restarts = [
        started - crashed
        for crashed, started in zip(stamps.crashed, stamps.started[1:], strict=False)
    ]
    metrics = {"per_s": count / elapsed, "crashes": float(len(stamps.crashed))}
    if restarts:
        metrics["restart_p50_us"] = _percentile(restarts, 0.5) * 1e6
    return Result(metrics)


async def nocrash_w7(count: int) -> Result:
    """W7's baseline: the same actor and workload without crashes."""
    return await _crash_run(count, 0)


async def corral_w7(count: int) -> Result:
    """W7: the actor crashes on every 100th message under one-for-one."""
    return await _crash_run(count, 100)


# --- tracing overhead ---------------------------------------------------------------------


class _DropSpans:
    """A span exporter that drops everything: the cost measured is corral's and the SDK's."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _tracing(ratio: float | None, exporter: Any = None) -> tuple[Any, corral.Instrument]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    from corral.telemetry import OpenTelemetry

    sampler = ALWAYS_ON if ratio is None else ParentBased(TraceIdRatioBased(ratio))
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter or _DropSpans()))  # type: ignore[arg-type]
    return provider, OpenTelemetry(tracer_provider=provider, record_metrics=False)


async def traced_w1(count: int, ratio: float | None = None) -> Result:
    """W1 with an SDK tracer provider, a batch processor and an exporter that drops spans."""
    provider, instrument = _tracing(ratio)
    try:
        return await corral_w1(count, [instrument])
    finally:
        await anyio.to_thread.run_sync(provider.shutdown)


async def traced_w2(count: int, ratio: float | None = None) -> Result:
    """W2 with tracing on, as traced_w1."""
    provider, instrument = _tracing(ratio)
    try:
        return await corral_w2(count, instruments=[instrument])
    finally:
        await anyio.to_thread.run_sync(provider.shutdown)


async def sampled_w1(count: int) -> Result:
    """W1 with the parent-based 1 % ratio sampler."""
    return await traced_w1(count, 0.01)


async def sampled_w2(count: int) -> Result:
    """W2 with the parent-based 1 % ratio sampler."""
    return await traced_w2(count, 0.01)


class _SpansAlone:
    """The OpenTelemetry work a traced call needs, done by hand with none of corral's.

    With the same SDK setup as W1T: the producer span with its attributes and
    ``enqueued`` event, the consumer span (attributes given at its start, as
    the instrument does) with its ``dequeued`` event, made current around the
    call, both ended; a call the sampler drops costs one sampling decision
    and its context made current. Wrapped around an untraced ask, it gives
    the most a traced call could reach with this SDK.
    """

    def __init__(self, ratio: float | None, exporter: Any = None) -> None:
        import uuid

        from opentelemetry import context, trace

        from corral.telemetry._instrument import span_statics

        self._context = context
        self._trace = trace
        self.provider, _ = _tracing(ratio, exporter)
        self._tracer = self.provider.get_tracer("corral-bound")
        # The span names and fixed attributes the instrument gives actor "inc".
        statics = span_statics("inc", Inc)
        self._send_name, self._send = statics[corral.Kind.REQUEST]
        self._process_name, self._process = statics[None]
        self._envelope_id = uuid.uuid4()  # corral's envelopes have theirs already

    async def ask(self, ref: corral.ActorRef[Num, int], i: int) -> None:
        trace = self._trace
        producer = self._tracer.start_span(
            self._send_name, kind=trace.SpanKind.PRODUCER, attributes=self._send
        )
        consumer = None
        if producer.is_recording():
            message_id = str(self._envelope_id)
            producer.set_attributes(
                {"messaging.message.id": message_id, "corral.message.type": "Num"}
            )
            producer.add_event("enqueued", {"corral.queue.depth": 1})
            consumer = self._tracer.start_span(
                self._process_name,
                context=trace.set_span_in_context(producer),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    **self._process,
                    "messaging.message.id": message_id,
                    "corral.message.type": "Num",
                    "corral.attempt": 1,
                    "corral.queue.wait": 0.0,
                },
            )
            consumer.add_event("dequeued", {"corral.queue.wait": 0.0})
        token = self._context.attach(trace.set_span_in_context(consumer or producer))
        try:
            await ref.ask(Num(i))
        finally:
            self._context.detach(token)
            if consumer is not None:
                consumer.end()
                producer.end()


async def _sdk_bound(count: int, callers: int, ratio: float | None) -> Result:
    spans = _SpansAlone(ratio)
    lat: list[float] = []
    clock = time.perf_counter
    try:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(Inc, name="inc")

            async def one(i: int) -> None:
                t0 = clock()
                await spans.ask(ref, i)
                lat.append(clock() - t0)

            elapsed = await _callers(callers, count, one)
    finally:
        await anyio.to_thread.run_sync(spans.provider.shutdown)
    return Result(_latency_metrics(len(lat), elapsed, lat))


async def sdk_bound_w1(count: int) -> Result:
    """The ceiling for W1T: W1 untraced, each ask wrapped in the SDK's own work (always on)."""
    return await _sdk_bound(count, 1, None)


async def sdk_bound_w2(count: int) -> Result:
    """The ceiling for W2T, as :func:`sdk_bound_w1` with W2's 64 callers."""
    return await _sdk_bound(count, 64, None)


async def sdk_bound_sampled_w1(count: int) -> Result:
    """The ceiling for W1S: as :func:`sdk_bound_w1` with the 1 % sampler."""
    return await _sdk_bound(count, 1, 0.01)


async def sdk_bound_sampled_w2(count: int) -> Result:
    """The ceiling for W2S: as :func:`sdk_bound_w2` with the 1 % sampler."""
    return await _sdk_bound(count, 64, 0.01)
