"""W9F: how long the calls of a SIGKILLed serving process take to be served elsewhere.

corral's side: a serving node in a process of its own takes *n* calls that
would run for a minute, then is SIGKILLed; a second node (in the
benchmark's process) serves them as their second attempt, quickly. The
figure is the time from the kill until every caller has its answer. The
floor is JetStream's own redelivery on the same settings: a raw nats-py
consumer takes *n* messages and its connection is dropped without an ack;
the time until another consumer has them all. Both should be about
``ack_wait``, which the row's title names.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import anyio

import corral

from ._natsload import _servers
from ._workloads import Result

__all__ = ["corral_failover", "floor_failover"]


@corral.message(name="bench.Hold")
class Hold:
    """Runs for *ms* on its first attempt, at once on a later one."""

    ms: int


class _Holder(corral.Actor[Hold, int]):
    async def handle(self, msg: Hold) -> int:
        call = corral.current_call()
        if call is not None and call.attempt == 1:
            print("started", flush=True)
            await anyio.sleep(msg.ms / 1000)
        return 0 if call is None else call.attempt


def _spec(url: str, cluster: str, ack_wait: float) -> corral.Cluster:
    return corral.Cluster(
        servers=[url], name=cluster, ack_wait=ack_wait, heartbeat=ack_wait / 4, replicas=1
    )


def _tree(n: int) -> corral.Supervisor:
    child = corral.child(_Holder, name="hold", export=True, max_concurrency=n, mailbox=2 * n)
    return corral.Supervisor(children=[child])


def _serve(argv: list[str]) -> None:
    """The serving process: ``python -m corral._bench._failover URL CLUSTER ACK_WAIT N``."""
    parser = argparse.ArgumentParser(prog="corral._bench._failover")
    parser.add_argument("url")
    parser.add_argument("cluster")
    parser.add_argument("ack_wait", type=float)
    parser.add_argument("n", type=int)
    args = parser.parse_args(argv)

    async def serve() -> None:
        spec = _spec(args.url, args.cluster, args.ack_wait)
        async with corral.Runtime(_tree(args.n), cluster=spec):
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(serve, backend="asyncio")


async def corral_failover(n: int, ack_wait: float) -> Result:
    """corral: the calls of a killed serving process, answered by another node."""
    servers = await _servers(1)
    proc: subprocess.Popen[str] | None = None
    try:
        url = servers.urls[0]
        cluster = f"failover_{uuid.uuid4().hex[:8]}"
        argv = [sys.executable, "-m", "corral._bench._failover", url, cluster, str(ack_wait)]
        proc = await anyio.to_thread.run_sync(
            lambda: subprocess.Popen(
                [*argv, str(n)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        )
        stdout = proc.stdout
        assert stdout is not None

        def lines(count: int, what: str) -> None:
            for _ in range(count):
                line = stdout.readline()
                if line.strip() != what:
                    raise RuntimeError(f"the serving process printed {line!r}, not {what!r}")

        with anyio.fail_after(60):
            await anyio.to_thread.run_sync(lines, 1, "ready")
        spec = _spec(url, cluster, ack_wait)
        async with corral.Runtime(cluster=spec) as caller:
            ref = caller.remote("hold")
            futures = [await ref.submit(Hold(60_000), timeout=60 + 4 * ack_wait) for _ in range(n)]
            with anyio.fail_after(60):
                await anyio.to_thread.run_sync(lines, n, "started")
            async with corral.Runtime(_tree(n), cluster=spec):
                proc.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                attempts = [await f for f in futures]
                elapsed = time.perf_counter() - killed
        if attempts != [2] * n:
            raise RuntimeError(f"expected every call served again as attempt 2: {attempts}")
        return Result({"failover_s": elapsed})
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        await anyio.to_thread.run_sync(servers.stop)


async def floor_failover(n: int, ack_wait: float) -> Result:
    """Raw nats-py: messages taken and never acknowledged, until another consumer has them."""
    import nats
    from nats.errors import TimeoutError as FetchTimeout
    from nats.js import api

    servers = await _servers(1)
    try:
        url = servers.urls[0]
        name = f"FLOOR_{uuid.uuid4().hex[:8]}"
        dying, living = await nats.connect(url), await nats.connect(url)
        js = living.jetstream()
        await js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[f"floor.{name}"],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
            )
        )
        config = api.ConsumerConfig(
            durable_name="serve",
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=3,
            max_ack_pending=-1,
        )
        await js.add_consumer(name, config)
        for i in range(n):
            await js.publish(f"floor.{name}", b"%d" % i)
        taken: list[Any] = []
        dsub = await dying.jetstream().pull_subscribe_bind(durable="serve", stream=name)
        while len(taken) < n:
            taken += await dsub.fetch(batch=n - len(taken), timeout=5)
        await dying.close()  # gone without an ack, as a killed process
        killed = time.perf_counter()
        sub = await js.pull_subscribe_bind(durable="serve", stream=name)
        got = 0
        while got < n:
            try:
                msgs = await sub.fetch(batch=n - got, timeout=1)
            except FetchTimeout:
                continue
            for msg in msgs:
                await msg.ack()
            got += len(msgs)
        elapsed = time.perf_counter() - killed
        await living.close()
        return Result({"failover_s": elapsed})
    finally:
        await anyio.to_thread.run_sync(servers.stop)


if __name__ == "__main__":
    _serve(sys.argv[1:])
