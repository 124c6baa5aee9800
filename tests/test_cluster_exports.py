"""Children started and stopped while a cluster node runs: served as declared, then no more.

On a real 3-node NATS cluster (loopback). asyncio only: corral's cluster
runs where nats-py does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

import corral

from .helpers import Add, Calculator, Echo, Gate
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


class Attempts(corral.Actor[Add, int]):
    """Answers with the call's attempt (a call delivered again shows it)."""

    async def handle(self, msg: Add) -> int:
        call = corral.current_call()
        assert call is not None
        return call.attempt


def _spec(nats: NatsCluster, node: str | None = None) -> corral.Cluster:
    return corral.Cluster(
        servers=nats.urls,
        name=f"ex{next(_names)}_{time.time_ns()}",
        ack_wait=4.0,
        heartbeat=0.5,
        connect_timeout=10.0,
        node=node,
    )


async def test_a_child_started_later_is_served_until_it_is_stopped(nats: NatsCluster) -> None:
    spec = _spec(nats)
    async with corral.Runtime(cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        calc = caller.remote("calc")
        await server.root.start_child(corral.child(Calculator, name="calc", export=True))
        assert await calc.ask(Add(a=1, b=2), timeout=10) == 3
        assert server.ref("calc").status().counts["succeeded"] == 1
        await server.root.stop_child("calc")
        # No node serves it now: a call waits in the stream (a short one expires there).
        with pytest.raises(corral.DeadlineExceeded):
            await calc.ask(Add(a=2, b=2), timeout=1.0)
        waiting = await calc.submit(Add(a=3, b=3), timeout=30)
        # Started again: the call that waited is served, delivered once (the stopped
        # child's node fetched it no more, to hand it back).
        await server.root.start_child(corral.child(Attempts, name="calc", export=True))
        assert await waiting == 1
        assert server.ref("calc").status().counts["succeeded"] == 1


async def test_a_supervisor_started_later_serves_its_exported_children(
    nats: NatsCluster,
) -> None:
    spec = _spec(nats)
    group = corral.Supervisor(
        name="group",
        children=[
            corral.child(Calculator, name="calc", export=True, durable=False),
            corral.child(Gate, name="local"),  # not exported: this runtime's only
        ],
    )
    async with corral.Runtime(cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        await server.root.start_child(group)
        assert await caller.remote("calc").ask(Add(a=2, b=5), timeout=10) == 7
        assert await server.ref("local").ask(Echo("here")) == "here"
        await server.root.stop_child("group")
        # durable=False: no node serving it is known at once.
        with pytest.raises(corral.ActorNotFound, match="no node serves actor 'calc'"):
            await caller.remote("calc").ask(Add(a=1, b=1), timeout=30)


async def test_a_child_that_cannot_be_served_as_declared_is_not_started(
    nats: NatsCluster,
) -> None:
    """Another live node serves that name with other messages: start_child raises, nothing stays."""
    spec = _spec(nats)
    other = corral.Supervisor(children=[corral.child(Gate, name="svc", export=True)])
    async with (
        corral.Runtime(other, cluster=corral.Cluster(**{**_fields(spec), "node": "other"})),
        corral.Runtime(cluster=corral.Cluster(**{**_fields(spec), "node": "this"})) as rt,
    ):
        with pytest.raises(corral.ClusterConflict, match="'svc' is served by node 'other'"):
            await rt.root.start_child(corral.child(Calculator, name="svc", export=True))
        with pytest.raises(corral.ActorNotFound):
            rt.ref("svc")
        assert [c.name for c in rt.root.children()] == []
        # The name is free again here.
        await rt.root.start_child(corral.child(Calculator, name="svc"))
        assert await rt.ref("svc").ask(Add(a=1, b=1)) == 2


def _fields(spec: corral.Cluster) -> dict[str, Any]:
    import attrs

    return attrs.asdict(spec, recurse=False)


async def test_a_remote_futures_event_wakes_every_waiter_but_a_cancelled_one() -> None:
    """The cheap event remote futures wait on: one waiter cancelled cancels no other."""
    import anyio
    import anyio.lowlevel

    from corral._cluster._node import LoopEvent

    event = LoopEvent(anyio.lowlevel.current_token().native_token.create_future)
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await event.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a")
        tg.start_soon(waiter, "b")
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as inner:
            inner.start_soon(waiter, "cancelled")
            await anyio.wait_all_tasks_blocked()
            inner.cancel_scope.cancel()
        event.set()
    assert sorted(woken) == ["a", "b"]
    await event.wait()  # set: returns at once
    assert event.is_set()


def test_pull_requests_are_counted_oldest_first_and_forgotten_after_expiry() -> None:
    """What a serving node asked its consumer for and has not had yet (it asks for the rest)."""
    from corral._cluster._serving import _Pulls

    pulls = _Pulls()
    pulls.add(3, expires_at=1.0)
    pulls.add(2, expires_at=2.0)
    assert pulls.asked == 5
    for _ in range(3):
        pulls.came()  # the servers fill the oldest first
    assert pulls.asked == 2
    pulls.end_oldest()  # the second one expired (408) with both still to come
    assert pulls.asked == 0
    pulls.came()  # a call beyond what was counted (a status mixed up): never below zero
    assert pulls.asked == 0
    pulls.add(4, expires_at=3.0)
    pulls.expire(now=3.1)  # its status may still come: kept a while
    assert pulls.asked == 4
    pulls.expire(now=10.0)  # its status was lost: forgotten, so the node asks again
    assert pulls.asked == 0
    pulls.add(1, expires_at=11.0)
    pulls.clear()  # 409: a new leader dropped every request
    assert pulls.asked == 0
