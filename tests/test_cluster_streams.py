"""Streaming from actors served by other runtimes, on a real 3-node NATS cluster (loopback).

The chunks of a remote stream come in order, at most a window ahead of
their reader; leaving early cancels the handler where it runs; a node that
dies before any chunk arrived is replaced by another one's attempt, and
one that dies mid-stream fails the stream with NodeLost, never repeating
chunks. asyncio only: corral's cluster runs where nats-py does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import corral
from corral._cluster._wire import STREAM_WINDOW
from corral._core._ref import STREAM_BUFFER

from .helpers import Add, Calculator
from .nats_cluster import NatsCluster

pytestmark = pytest.mark.anyio

_names = itertools.count()


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio only (in debug mode): corral's cluster runs where nats-py does."""
    return "asyncio", {"debug": True}


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    servers = NatsCluster(tmp_path_factory.mktemp("nats"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def _spec(nats: NatsCluster, **settings: Any) -> corral.Cluster:
    options: dict[str, Any] = {"ack_wait": 4.0, "heartbeat": 0.5, "connect_timeout": 10.0}
    options.update(settings)
    return corral.Cluster(servers=nats.urls, name=f"st{next(_names)}_{time.time_ns()}", **options)


@corral.message(name="streamtest.Count")
class Count:
    upto: int
    fail_at: int = -1


class Counter(corral.Actor[Count, int]):
    """Streams 0..upto-1 (failing at *fail_at*); counts what it yielded; notes its cleanup."""

    def __init__(self) -> None:
        self.produced = 0
        self.cleaned = anyio.Event()
        self.gate: anyio.Event | None = None

    async def handle(self, msg: Count) -> int:
        return msg.upto

    @corral.streams(Count)
    async def count(self, msg: Count) -> AsyncIterator[int]:
        try:
            for i in range(msg.upto):
                if i == msg.fail_at:
                    raise corral.HttpStatusError("upstream broke", status=503)
                if self.gate is not None and i == 1:
                    await self.gate.wait()
                self.produced += 1
                yield i
        finally:
            self.cleaned.set()


async def _until(check: Any, timeout: float = 30.0) -> None:
    """Wait for a condition another runtime's tasks make true (no event crosses to here)."""
    with anyio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - the serving runtime's state: no event to wait on
            await anyio.sleep(0.01)


@pytest.mark.parametrize("durable", [True, False], ids=["stream", "core-nats"])
async def test_chunks_cross_nodes_in_order_with_errors_after_them(
    nats: NatsCluster, durable: bool
) -> None:
    spec = _spec(nats)
    counter = Counter()
    tree = corral.Supervisor(
        children=[
            corral.child(lambda: counter, name="counter", export=True, durable=durable),
            corral.child(Calculator, name="calc", export=True, durable=durable),
        ]
    )
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("counter")
        # Many windows' worth: the reader's counts keep the serving node sending.
        async with ref.stream(Count(upto=10 * STREAM_WINDOW), timeout=30) as chunks:
            got = [chunk async for chunk in chunks]
        assert got == list(range(10 * STREAM_WINDOW))
        assert chunks.future.result() == 10 * STREAM_WINDOW
        # A failure mid-stream comes after the chunks before it, as its own type.
        seen = []
        with pytest.raises(corral.HttpStatusError, match="upstream broke") as info:
            async with ref.stream(Count(upto=5, fail_at=3)) as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
        assert seen == [0, 1, 2]
        assert info.value.status == 503
        # The same actor still answers asks with handle; one that streams nothing refuses.
        assert await ref.ask(Count(upto=7), timeout=10) == 7
        with pytest.raises(corral.UnhandledMessage, match="stream"):
            async with caller.remote("calc").stream(Add(a=1, b=2), timeout=10) as chunks:
                async for _ in chunks:
                    pass
        assert server.ref("counter").status().counts["succeeded"] == 2


async def test_leaving_a_remote_stream_early_cancels_its_handler(nats: NatsCluster) -> None:
    spec = _spec(nats)
    counter = Counter()
    counter.gate = anyio.Event()  # never set: the handler waits after its first chunk
    tree = corral.Supervisor(children=[corral.child(lambda: counter, name="c", export=True)])
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        async with caller.remote("c").stream(Count(upto=100)) as chunks:
            async for chunk in chunks:
                assert chunk == 0
                break
        with anyio.fail_after(10):
            await counter.cleaned.wait()  # the generator was closed where it ran
        await _until(lambda: server.ref("c").status().counts["cancelled"] == 1)
        assert isinstance(chunks.future.exception(), corral.CallCancelled) or (
            chunks.future.cancelled()
        )


async def test_the_serving_node_sends_at_most_a_window_ahead_of_the_reader(
    nats: NatsCluster,
) -> None:
    spec = _spec(nats)
    counter = Counter()
    tree = corral.Supervisor(children=[corral.child(lambda: counter, name="c", export=True)])
    total = 20 * STREAM_WINDOW
    # Produced at most: the window, the handler's own buffer, one in the forwarder's
    # hand and one in the generator's.
    bound = STREAM_WINDOW + STREAM_BUFFER + 2
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        async with caller.remote("c").stream(Count(upto=total), timeout=60) as chunks:
            await _until(lambda: counter.produced >= STREAM_WINDOW + STREAM_BUFFER)
            # A serving node ignoring the window would run on to `total` meanwhile
            # (and overflow the reader's buffer, failing the stream).
            await anyio.sleep(0.3)
            assert counter.produced <= bound
            got = [chunk async for chunk in chunks]
        assert got == list(range(total))


async def test_a_caller_gone_silent_has_its_stream_cancelled_after_ack_wait(
    nats: NatsCluster,
) -> None:
    """No read counts for ack_wait with the window full: the serving node gives the call up."""
    spec = _spec(nats, ack_wait=1.0, heartbeat=0.25)
    counter = Counter()
    tree = corral.Supervisor(children=[corral.child(lambda: counter, name="c", export=True)])
    async with corral.Runtime(tree, cluster=spec) as server:
        caller = corral.Runtime(cluster=spec)
        await caller.__aenter__()
        stream = caller.remote("c").stream(Count(upto=10_000))
        await stream.__aenter__()
        await _until(lambda: counter.produced >= STREAM_WINDOW)
        await caller.__aexit__(None, None, None)  # gone, without leaving the stream
        with anyio.fail_after(15):
            await counter.cleaned.wait()
        await _until(lambda: server.ref("c").status().counts["cancelled"] == 1)
        assert counter.produced < 10_000
        with pytest.raises(corral.ActorStopped):
            async for _ in stream:
                pass
        await stream.__aexit__(None, None, None)


def _ledger(path: Path) -> list[tuple[str, str, str, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, key, node, attempt, _ = line.split()
        rows.append((what, key, node, int(attempt)))
    return rows


async def test_a_node_killed_mid_stream_fails_it_but_one_killed_before_is_replaced(
    nats: NatsCluster, tmp_path: Path
) -> None:
    from .cluster_node import Work, start

    spec = _spec(nats, ack_wait=1.0, heartbeat=0.25)
    ledger = tmp_path / "ledger"

    def node(name: str) -> Any:
        return start(
            servers=nats.urls,
            cluster=spec.name,
            node=name,
            ledger=ledger,
            ack_wait=spec.ack_wait,
            heartbeat=spec.heartbeat,
        )

    a = await anyio.to_thread.run_sync(node, "a")
    b = None
    try:
        async with corral.Runtime(cluster=spec) as caller:
            ref = caller.remote("work")
            # Killed before its first chunk: another node's attempt streams it whole.
            early = ref.stream(Work("early", ms=60_000, retry_ms=0, pause_at=0), timeout=60)
            # Killed after its first chunk: the stream fails rather than begin again.
            late = ref.stream(Work("late", ms=60_000, retry_ms=0, pause_at=1), timeout=60)
            async with early as early_chunks, late as late_chunks:
                assert await late_chunks.__anext__() == "a:1:0"
                started = {(key, node) for what, key, node, _ in _ledger(ledger) if what == "start"}
                with anyio.fail_after(30):
                    while started != {("early", "a"), ("late", "a")}:
                        await anyio.sleep(0.02)
                        started = {(k, n) for w, k, n, _ in _ledger(ledger) if w == "start"}
                a.kill()
                a.wait()
                b = await anyio.to_thread.run_sync(node, "b")
                assert [chunk async for chunk in early_chunks] == ["b:2:0", "b:2:1", "b:2:2"]
                with pytest.raises(corral.NodeLost, match="died after 1 chunks"):
                    async for _ in late_chunks:
                        pass
    finally:
        for proc in (a, b):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate(timeout=10)
