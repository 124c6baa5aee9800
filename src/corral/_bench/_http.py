"""W8's clients: raw aiohttp and httpx floors, corral's service actors, and W8M's memory.

Every client function takes the server's ``base_url`` (its ``/v1`` prefix)
and a call count, runs one load against it and returns its figures:
``per_s``; ``us_per_call`` (wall time per call, 1e6 / per_s);
``cpu_us_per_call`` (this process's CPU time per call, every thread
counted); ``gc_us_per_call`` and ``full_gcs`` (time in the garbage
collector per call, and how many full collections ran); and for closed
loops ``p50_us``/``p99_us`` of each call's round trip. aiohttp and
httpx-aiohttp are imported where they are used: they are the ``bench``
extra's, and run on asyncio only. The chat clients serve W8 and its
variants; the ``*_embed_*`` ones post embeddings requests (W8E, W8EL).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import attrs
import httpx

import corral

from ._workloads import Num, Result, _percentile, _tracing, rss_bytes

#: Calls in flight, for every client: the ``max_concurrency`` of corral's actors.
IN_FLIGHT: Final = 64
#: The server's capacity is measured with this many in flight.
CAPACITY_IN_FLIGHT: Final = 256
MODEL: Final = "bench-model"
_PROMPT: Final = "hello from the benchmark"
CHAT_BODY: Final[dict[str, Any]] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": _PROMPT}],
}
CHAT_REQUEST: Final = corral.ChatRequest(
    messages=(corral.ChatMessage(role="user", content=_PROMPT),)
)
_CHAT: Final = "/chat/completions"
#: What corral's OpenAIEmbeddings sends for one input: the input as a list.
EMBED_BODY: Final[dict[str, Any]] = {"model": MODEL, "input": [_PROMPT]}
EMBED_REQUEST: Final = corral.EmbeddingsRequest(inputs=(_PROMPT,))
_EMBEDDINGS: Final = "/embeddings"


class _GcClock:
    """Time spent in the garbage collector, and full (generation 2) collections, so far.

    Installed once, for the process: a load with more objects alive per call
    than its floor makes the collector run more often, and a full collection
    stops every call in flight (what the p99 of a closed loop shows).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._phase)

    def _phase(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        if info["generation"] == 2:
            self.full += 1


_GC: Final = _GcClock()


class _Meter:
    """Wall, CPU and garbage-collector clocks around one load."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.gc = _GC.seconds
        self.full = _GC.full

    def result(self, count: int, latencies: Sequence[float] | None = None) -> Result:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        metrics = {
            "per_s": count / wall,
            "us_per_call": wall / count * 1e6,
            "cpu_us_per_call": cpu / count * 1e6,
            "gc_us_per_call": (_GC.seconds - self.gc) / count * 1e6,
            "full_gcs": float(_GC.full - self.full),
        }
        if latencies is not None:
            lat = list(latencies)
            metrics["p50_us"] = _percentile(lat, 0.50) * 1e6
            metrics["p99_us"] = _percentile(lat, 0.99) * 1e6
        return Result(metrics)


def _check_reply(data: Any) -> None:
    # What every client reads of a reply, so that none skips the JSON.
    _ = data["choices"][0]["message"]["content"], data["usage"]["total_tokens"]


def _check_vector(data: Any) -> None:
    _ = data["data"][0]["embedding"], data["usage"]["total_tokens"]


@attrs.frozen
class _Route:
    """What a raw client posts, where, and what it reads of the reply."""

    path: str
    body: dict[str, Any]
    check: Callable[[Any], None]


_CHAT_ROUTE: Final = _Route(_CHAT, CHAT_BODY, _check_reply)
_EMBED_ROUTE: Final = _Route(_EMBEDDINGS, EMBED_BODY, _check_vector)


# --- load shapes ---------------------------------------------------------------------------
# Open loop: every call started as soon as one of the slots is free (a
# semaphore acquired before its task starts). Closed loop: as many callers
# as slots, each asking again when answered; each round trip is timed.


async def _open_asyncio(count: int, slots: int, one: Callable[[], Awaitable[None]]) -> Result:
    # Plain asyncio for the aiohttp floors: what a raw aiohttp program does.
    import asyncio

    semaphore = asyncio.Semaphore(slots)

    async def run() -> None:
        try:
            await one()
        finally:
            semaphore.release()

    meter = _Meter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(count):
            await semaphore.acquire()
            tg.create_task(run())
    return meter.result(count)


async def _closed_asyncio(count: int, callers: int, one: Callable[[], Awaitable[None]]) -> Result:
    import asyncio

    per = max(1, count // callers)
    lat: list[float] = []
    clock = time.perf_counter

    async def caller() -> None:
        for _ in range(per):
            t0 = clock()
            await one()
            lat.append(clock() - t0)

    meter = _Meter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(callers):
            tg.create_task(caller())
    return meter.result(len(lat), lat)


async def _open_anyio(count: int, slots: int, one: Callable[[], Awaitable[None]]) -> Result:
    # anyio for the httpx floors, which run on trio too.
    semaphore = anyio.Semaphore(slots)

    async def run() -> None:
        try:
            await one()
        finally:
            semaphore.release()

    meter = _Meter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            await semaphore.acquire()
            tg.start_soon(run)
    return meter.result(count)


async def _closed_anyio(count: int, callers: int, one: Callable[[], Awaitable[None]]) -> Result:
    per = max(1, count // callers)
    lat: list[float] = []
    clock = time.perf_counter

    async def caller() -> None:
        for _ in range(per):
            t0 = clock()
            await one()
            lat.append(clock() - t0)

    meter = _Meter()
    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
    return meter.result(len(lat), lat)


# --- raw aiohttp ---------------------------------------------------------------------------


async def _aiohttp(
    base_url: str, count: int, slots: int, *, closed: bool, route: _Route = _CHAT_ROUTE
) -> Result:
    import aiohttp  # type: ignore[import-not-found,unused-ignore]  # the bench extra

    url, body, check = base_url + route.path, route.body, route.check
    connector = aiohttp.TCPConnector(limit=slots)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url, json=body) as response:
                response.raise_for_status()
                check(await response.json())

        shape = _closed_asyncio if closed else _open_asyncio
        return await shape(count, slots, one)


async def aiohttp_open(base_url: str, count: int) -> Result:
    """Raw aiohttp, open loop: one ``ClientSession``, ``TCPConnector(limit=64)``, 64 in flight."""
    return await _aiohttp(base_url, count, IN_FLIGHT, closed=False)


async def aiohttp_closed(base_url: str, count: int) -> Result:
    """Raw aiohttp, closed loop: 64 callers on one ``ClientSession``."""
    return await _aiohttp(base_url, count, IN_FLIGHT, closed=True)


async def aiohttp_embed_open(base_url: str, count: int) -> Result:
    """Raw aiohttp posting one-input embeddings requests, open loop, 64 in flight."""
    return await _aiohttp(base_url, count, IN_FLIGHT, closed=False, route=_EMBED_ROUTE)


async def aiohttp_embed_closed(base_url: str, count: int) -> Result:
    """Raw aiohttp posting embeddings requests, closed loop: 64 callers."""
    return await _aiohttp(base_url, count, IN_FLIGHT, closed=True, route=_EMBED_ROUTE)


async def capacity_load(base_url: str, count: int) -> Result:
    """The server's load test: raw aiohttp with 256 in flight (open loop)."""
    return await _aiohttp(base_url, count, CAPACITY_IN_FLIGHT, closed=False)


# --- raw httpx -----------------------------------------------------------------------------


def _httpx_client(
    base_url: str, *, keepalive: int = IN_FLIGHT, aiohttp_transport: bool = False
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=keepalive)
    if aiohttp_transport:
        # As the official OpenAI SDK offers it (DefaultAioHttpClient).
        from httpx_aiohttp import (  # type: ignore[import-not-found,unused-ignore]
            HttpxAiohttpClient,
        )

        client: httpx.AsyncClient = HttpxAiohttpClient(base_url=base_url, limits=limits)
        return client
    return httpx.AsyncClient(base_url=base_url, limits=limits)


async def _httpx(
    client: httpx.AsyncClient, count: int, *, closed: bool, route: _Route = _CHAT_ROUTE
) -> Result:
    path, body, check = route.path, route.body, route.check
    async with client:

        async def one() -> None:
            response = await client.post(path, json=body)
            response.raise_for_status()
            check(response.json())

        if closed:
            return await _closed_anyio(count, IN_FLIGHT, one)
        return await _open_anyio(count, IN_FLIGHT, one)


async def httpx_open(base_url: str, count: int) -> Result:
    """Raw httpx, open loop: one ``AsyncClient``, default transport, a pool of 64."""
    return await _httpx(_httpx_client(base_url), count, closed=False)


async def httpx_closed(base_url: str, count: int) -> Result:
    """Raw httpx, closed loop: 64 callers on one ``AsyncClient`` (pool of 64)."""
    return await _httpx(_httpx_client(base_url), count, closed=True)


async def httpx_embed_open(base_url: str, count: int) -> Result:
    """Raw httpx posting embeddings requests, open loop (pool of 64)."""
    return await _httpx(_httpx_client(base_url), count, closed=False, route=_EMBED_ROUTE)


async def httpx_embed_closed(base_url: str, count: int) -> Result:
    """Raw httpx posting embeddings requests, closed loop: 64 callers."""
    return await _httpx(_httpx_client(base_url), count, closed=True, route=_EMBED_ROUTE)


async def httpx_keep20_open(base_url: str, count: int) -> Result:
    """Raw httpx, open loop, 64 connections of which 20 kept alive (corral's cap today)."""
    return await _httpx(_httpx_client(base_url, keepalive=20), count, closed=False)


async def httpx_aiohttp_open(base_url: str, count: int) -> Result:
    """httpx's API over the ``httpx-aiohttp`` transport, open loop, 64 in flight."""
    return await _httpx(_httpx_client(base_url, aiohttp_transport=True), count, closed=False)


# --- corral --------------------------------------------------------------------------------


class RawChat(corral.HttpService[Num, int]):
    """HttpService alone: posts a fixed chat body and reads the reply's JSON."""

    async def handle(self, msg: Num) -> int:
        response = await self.request(
            "POST", _CHAT, json=CHAT_BODY, template="/v1/chat/completions"
        )
        data = self.parse_json(response)
        _check_reply(data)
        return int(data["usage"]["total_tokens"])


def _aiohttp_transport() -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import (  # type: ignore[import-not-found,unused-ignore]
        AiohttpTransport,
    )

    transport: httpx.AsyncBaseTransport = AiohttpTransport(
        limits=httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    )
    return transport


async def _drive(ref: corral.ActorRef[Any, Any], msg: Any, count: int, *, closed: bool) -> Result:
    if closed:

        async def one() -> None:
            await ref.ask(msg)

        return await _closed_anyio(count, IN_FLIGHT, one)
    meter = _Meter()
    # All submitted at once (the mailbox holds them), then awaited in order.
    futures = [ref.try_submit(msg) for _ in range(count)]
    for fut in futures:
        await fut
    return meter.result(count)


async def _corral(
    base_url: str,
    count: int,
    *,
    closed: bool,
    service: str = "openai",
    instruments: Sequence[corral.Instrument] = (),
) -> Result:
    result: Result | None = None
    async with corral.Runtime(instruments=instruments) as rt:
        options: dict[str, Any] = {"max_concurrency": IN_FLIGHT, "mailbox": count}
        if service == "http":
            http = await rt.spawn(lambda: RawChat(base_url=base_url), name="chat", **options)
            result = await _drive(http, Num(1), count, closed=closed)
        elif service == "embeddings":
            embed = await rt.spawn(
                lambda: corral.OpenAIEmbeddings(model=MODEL, base_url=base_url, api_key_env=None),
                name="embed",
                **options,
            )
            result = await _drive(embed, EMBED_REQUEST, count, closed=closed)
        else:
            transport = _aiohttp_transport() if service == "openai-aiohttp" else None
            client: Any = "httpx" if service == "openai-httpx" else "auto"
            chat = await rt.spawn(
                lambda: corral.OpenAIChat(
                    model=MODEL,
                    base_url=base_url,
                    api_key_env=None,
                    transport=transport,
                    http_client=client,
                ),
                name="chat",
                **options,
            )
            result = await _drive(chat, CHAT_REQUEST, count, closed=closed)
    assert result is not None
    return result


async def corral_open(base_url: str, count: int) -> Result:
    """``OpenAIChat`` (max_concurrency 64), open loop: every call submitted at once."""
    return await _corral(base_url, count, closed=False)


async def corral_closed(base_url: str, count: int) -> Result:
    """``OpenAIChat`` (max_concurrency 64), closed loop: 64 callers asking."""
    return await _corral(base_url, count, closed=True)


async def corral_http_open(base_url: str, count: int) -> Result:
    """An ``HttpService`` subclass posting a fixed body, open loop (no OpenAI types)."""
    return await _corral(base_url, count, closed=False, service="http")


async def corral_http_closed(base_url: str, count: int) -> Result:
    """The ``HttpService`` subclass, closed loop."""
    return await _corral(base_url, count, closed=True, service="http")


async def corral_httpx_open(base_url: str, count: int) -> Result:
    """``OpenAIChat(http_client="httpx")`` (httpx's default transport), open loop."""
    return await _corral(base_url, count, closed=False, service="openai-httpx")


async def corral_httpx_closed(base_url: str, count: int) -> Result:
    """``OpenAIChat(http_client="httpx")``, closed loop."""
    return await _corral(base_url, count, closed=True, service="openai-httpx")


async def corral_aiohttp_open(base_url: str, count: int) -> Result:
    """``OpenAIChat`` given the ``httpx-aiohttp`` transport, open loop."""
    return await _corral(base_url, count, closed=False, service="openai-aiohttp")


async def corral_aiohttp_closed(base_url: str, count: int) -> Result:
    """``OpenAIChat`` given the ``httpx-aiohttp`` transport, closed loop."""
    return await _corral(base_url, count, closed=True, service="openai-aiohttp")


async def corral_embed_open(base_url: str, count: int) -> Result:
    """``OpenAIEmbeddings`` (max_concurrency 64), open loop: every call submitted at once."""
    return await _corral(base_url, count, closed=False, service="embeddings")


async def corral_embed_closed(base_url: str, count: int) -> Result:
    """``OpenAIEmbeddings`` (max_concurrency 64), closed loop: 64 callers asking."""
    return await _corral(base_url, count, closed=True, service="embeddings")


async def _traced(base_url: str, count: int, ratio: float | None) -> Result:
    provider, instrument = _tracing(ratio)
    try:
        return await _corral(base_url, count, closed=False, instruments=[instrument])
    finally:
        await anyio.to_thread.run_sync(provider.shutdown)


async def traced_open(base_url: str, count: int) -> Result:
    """W8 with every call traced: SDK provider, always on, batch processor, dropping exporter."""
    return await _traced(base_url, count, None)


async def sampled_open(base_url: str, count: int) -> Result:
    """W8 with the parent-based 1 % ratio sampler."""
    return await _traced(base_url, count, 0.01)


# --- W8M: memory per queued call -----------------------------------------------------------
# No request reaches a server: the figure is what a call costs while it waits.
# The requests (each its own prompt) are made before the first reading, since
# a batch job has them either way; every call is cancelled after the second.


def _requests(count: int) -> list[corral.ChatRequest]:
    return [
        corral.ChatRequest(messages=(corral.ChatMessage(role="user", content=f"question {i}"),))
        for i in range(count)
    ]


async def floor_w8m(count: int) -> Result:
    """The raw way to queue a batch: a task per call, each waiting on a semaphore (held shut)."""
    requests = _requests(count)
    gate = anyio.Semaphore(0)  # held shut: the figure is the tasks while they wait
    waiting = 0
    all_waiting = anyio.Event()

    async def one(request: corral.ChatRequest) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == count:
            all_waiting.set()
        async with gate:
            pass  # a raw client would post the request here

    gc.collect()
    before = rss_bytes()
    async with anyio.create_task_group() as tg:
        for request in requests:
            tg.start_soon(one, request)
        await all_waiting.wait()
        gc.collect()
        queued = (rss_bytes() - before) / count
        # Opened, not cancelled: each cancelled waiter would search the queue for itself.
        for _ in range(count):
            gate.release()
    return Result({"bytes_per_queued_call": queued})


async def corral_w8m(count: int) -> Result:
    """100,000 chat calls submitted at once to one ``OpenAIChat`` (mailbox sized for them)."""
    requests = _requests(count)
    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: corral.OpenAIChat(
                model=MODEL, base_url="http://127.0.0.1:9/v1", api_key_env=None
            ),
            name="chat",
            max_concurrency=IN_FLIGHT,
            mailbox=count,
        )
        gc.collect()
        before = rss_bytes()
        # try_submit never yields: every call is queued before any could start.
        futures = [ref.try_submit(request) for request in requests]
        gc.collect()
        queued = (rss_bytes() - before) / count
        for fut in futures:  # oldest first: each leaves the head of the queue
            fut.cancel()
    return Result({"bytes_per_queued_call": queued})
