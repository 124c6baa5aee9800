"""W9: remote calls through NATS JetStream, beside a raw nats-py floor doing the same path.

Each side starts its own nats-server (one node, or a 3-node cluster for the
R3 workloads) before its clock starts, and stops it after. The floor is the
JetStream path of a corral remote call written directly on nats-py: publish
with a message id and a reply subject in a header, a durable pull consumer
fetching, the answer over core NATS, then the ack. corral runs the same path
through ``Runtime.remote`` and an exported actor (declared idempotent, so
that neither side writes a result record; W9CK keeps them). W9D and W9DC
export the actor ``durable=False``, beside a floor of core NATS
request/reply (``nc.request`` to a queue subscriber that answers).

nats-py is asyncio-only: these workloads run on the asyncio backend.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

import corral

from ._workloads import Result, _latency_metrics

__all__ = ["corral_nats", "floor_core", "floor_nats"]


@corral.message(name="bench.Num")
class Num:
    n: int


class _Echo(corral.Actor[Num, int]):
    idempotent = True

    async def handle(self, msg: Num) -> int:
        return msg.n


class _KeptEcho(corral.Actor[Num, int]):
    async def handle(self, msg: Num) -> int:
        return msg.n


async def _servers(size: int) -> Any:
    from .._cluster._local import LocalNats

    root = Path(tempfile.mkdtemp(prefix="corral-bench-nats-"))
    servers = LocalNats(root, size=size)
    await anyio.to_thread.run_sync(servers.start)
    return servers


async def _has_leader(js: Any, stream: str) -> None:
    """Wait until a new replicated stream has elected its leader (it refuses publishes before)."""
    with anyio.fail_after(30):
        while True:
            info = await js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
            await anyio.sleep(0.05)


async def _callers(n: int, callers: int, one: Any) -> dict[str, float]:
    """Run *n* calls of ``await one(i)`` from *callers* tasks; the figures."""
    latencies: list[float] = []
    per = max(1, n // callers)

    async def caller(c: int) -> None:
        for i in range(per):
            started = time.perf_counter()
            await one(c * per + i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for c in range(callers):
            tg.start_soon(caller, c)
    elapsed = time.perf_counter() - started
    return _latency_metrics(per * callers, elapsed, latencies)


async def floor_nats(n: int, callers: int, replicas: int, tell: bool = False) -> Result:
    """Raw nats-py: the JetStream path of a remote call, with nothing around it."""
    import nats
    from nats.errors import TimeoutError as FetchTimeout
    from nats.js import api

    servers = await _servers(replicas)
    try:
        url = servers.urls[0]
        serving, calling = await nats.connect(url), await nats.connect(url)
        name = f"FLOOR_{uuid.uuid4().hex[:8]}"
        subject = f"floor.{name}.call"
        js = serving.jetstream()
        await js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[subject],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                num_replicas=replicas,
                duplicate_window=120,
            )
        )
        await js.add_consumer(
            name,
            api.ConsumerConfig(
                durable_name="serve",
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=3,
                max_ack_pending=-1,
            ),
        )
        await _has_leader(js, name)
        sub = await js.pull_subscribe_bind(durable="serve", stream=name)
        served = 0
        all_served = anyio.Event()
        target = max(1, n // callers) * callers

        async def serve() -> None:
            nonlocal served
            while True:
                try:
                    msgs = await sub.fetch(batch=callers, timeout=1)
                except FetchTimeout:
                    continue
                for msg in msgs:
                    reply = (msg.headers or {}).get("Reply-To")
                    if reply is not None:
                        await serving.publish(reply, msg.data)
                    await msg.ack()
                    served += 1
                    if served >= target:
                        all_served.set()

        inbox = calling.new_inbox()
        waiting: dict[str, anyio.Event] = {}

        async def on_reply(msg: Any) -> None:
            event = waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
            if event is not None:
                event.set()

        await calling.subscribe(f"{inbox}.*", cb=on_reply)
        cjs = calling.jetstream()

        async def one(i: int) -> None:
            key = uuid.uuid4().hex
            headers = {"Nats-Msg-Id": key}
            if not tell:
                event = waiting[key] = anyio.Event()
                headers["Reply-To"] = f"{inbox}.{key}"
            await cjs.publish(subject, b'{"n":%d}' % i, headers=headers)
            if not tell:
                await event.wait()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            for i in range(10):  # warm-up: connections, consumer, first fetch
                await one(-i)
            served = 0  # the warm-up's do not count
            all_served = anyio.Event()
            started = time.perf_counter()
            metrics = await _callers(n, callers, one)
            if tell:
                await all_served.wait()
                metrics["per_s"] = target / (time.perf_counter() - started)
            tg.cancel_scope.cancel()
        await serving.close()
        await calling.close()
        return Result(metrics)
    finally:
        await anyio.to_thread.run_sync(servers.stop)


async def floor_core(n: int, callers: int, replicas: int) -> Result:
    """Raw nats-py: core request/reply to a queue subscriber, with nothing around it."""
    import nats

    servers = await _servers(replicas)
    try:
        url = servers.urls[0]
        serving, calling = await nats.connect(url), await nats.connect(url)
        subject = f"floor.{uuid.uuid4().hex[:8]}.direct"

        async def answer(msg: Any) -> None:
            await msg.respond(msg.data)

        await serving.subscribe(subject, queue="serve", cb=answer)
        await serving.flush()

        async def one(i: int) -> None:
            await calling.request(subject, b'{"n":%d}' % i, timeout=30)

        with anyio.fail_after(10):
            # The server may take the subscription's interest a moment after
            # the flush (seen: no responders on the first request).
            while True:
                try:
                    await one(0)
                    break
                except nats.errors.NoRespondersError:
                    await anyio.sleep(0.05)
        for i in range(10):  # warm-up: the connections, the reply inbox
            await one(-i)
        metrics = await _callers(n, callers, one)
        await serving.close()
        await calling.close()
        return Result(metrics)
    finally:
        await anyio.to_thread.run_sync(servers.stop)


async def corral_nats(
    n: int,
    callers: int,
    replicas: int,
    tell: bool = False,
    records: bool = False,
    direct: bool = False,
) -> Result:
    """corral: ``Runtime.remote(...).ask`` (or ``tell``) to an exported actor on another runtime."""
    servers = await _servers(replicas)
    try:
        cluster = corral.Cluster(
            servers=servers.urls,
            name=f"bench_{uuid.uuid4().hex[:8]}",
            replicas=replicas,
            mailbox=max(1000, 2 * n),
        )
        counted = 0
        all_served = anyio.Event()
        target = max(1, n // callers) * callers
        actor = _KeptEcho if records else _Echo

        class Counting(actor):  # type: ignore[valid-type, misc]
            async def handle(self, msg: Num) -> int:
                nonlocal counted
                if msg.n >= 0:
                    counted += 1
                    if counted >= target:
                        all_served.set()
                return msg.n

        tree = corral.Supervisor(
            children=[
                corral.child(
                    Counting,
                    name="echo",
                    export=True,
                    durable=not direct,
                    max_concurrency=callers,
                    mailbox=max(1000, 2 * callers),
                )
            ]
        )
        async with corral.Runtime(tree, cluster=cluster), corral.Runtime(cluster=cluster) as rt:
            ref = rt.remote("echo")
            for i in range(10):
                await ref.ask(Num(-1 - i), timeout=30)

            async def one(i: int) -> None:
                if tell:
                    await ref.tell(Num(i))
                else:
                    await ref.ask(Num(i), timeout=30)

            started = time.perf_counter()
            metrics = await _callers(n, callers, one)
            if tell:
                await all_served.wait()
                metrics["per_s"] = target / (time.perf_counter() - started)
        return Result(metrics)
    finally:
        await anyio.to_thread.run_sync(servers.stop)
