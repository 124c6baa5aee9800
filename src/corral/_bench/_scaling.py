"""W10: one exported chat actor served by 1, 2 and 3 processes, against the fast HTTP server.

Each side of a row starts a nats-server, the benchmark's HTTP server (its
own process, answering a chat completion after 5 ms), and *k* serving
processes that each export one ``OpenAIChat`` (64 calls at once); 64 callers
in the benchmark's process ask it through the cluster, closed loop. W10
compares one serving process with the same actor in the caller's own
process (what the cluster costs); W10B and W10C compare two and three
serving processes with one (how it scales). Every process shares the
machine's cores with the others: the server, NATS, the caller and the
serving nodes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from typing import Any

import anyio

import corral

from ._natsload import _callers, _servers
from ._server import ServerProcess, group_cpu_seconds
from ._workloads import Result

__all__ = ["in_process", "served_by"]

_PROMPT = corral.ChatRequest(
    messages=(corral.ChatMessage(role="user", content="hello"),), max_tokens=8
)
#: Calls each serving process runs at once (the callers' count).
CONCURRENCY = 64


def _chat(base_url: str) -> corral.OpenAIChat:
    return corral.OpenAIChat(model="bench", base_url=base_url, api_key_env=None)


def _tree(base_url: str, export: bool) -> corral.Supervisor:
    child = corral.child(
        lambda: _chat(base_url),
        name="chat",
        export=export,
        max_concurrency=CONCURRENCY,
        mailbox=4 * CONCURRENCY,
        policy=corral.ServicePolicy(retry=None),
    )
    return corral.Supervisor(children=[child])


def _spec(url: str, cluster: str, node: str) -> corral.Cluster:
    return corral.Cluster(
        servers=[url], name=cluster, node=node, replicas=1, types=(corral.ChatReply,)
    )


def _serve(argv: list[str]) -> None:
    """A serving process: ``python -m corral._bench._scaling NATS CLUSTER NODE BASE_URL``."""
    parser = argparse.ArgumentParser(prog="corral._bench._scaling")
    parser.add_argument("url")
    parser.add_argument("cluster")
    parser.add_argument("node")
    parser.add_argument("base_url")
    args = parser.parse_args(argv)

    async def serve() -> None:
        spec = _spec(args.url, args.cluster, args.node)
        async with corral.Runtime(_tree(args.base_url, export=True), cluster=spec):
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(serve, backend="asyncio")


def _start(argv: list[str]) -> subprocess.Popen[str]:
    # A process group of its own, so that its CPU time is read as the server's is.
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _cpu(groups: list[int]) -> float:
    """CPU seconds used so far by this process and the process groups *groups*."""
    return time.process_time() + sum(group_cpu_seconds(pgid) for pgid in groups)


async def _measured(ref: Any, n: int, callers: int, groups: list[int]) -> dict[str, float]:
    """:func:`_ask_all`, plus the CPU every process involved spent per call, and the cores busy."""
    for _ in range(20):  # connections, consumers and caches warm
        await ref.ask(_PROMPT, timeout=30)
    cpu, wall = _cpu(groups), time.perf_counter()

    async def one(_: int) -> None:
        await ref.ask(_PROMPT, timeout=30)

    metrics = await _callers(n, callers, one)
    cpu, wall = _cpu(groups) - cpu, time.perf_counter() - wall
    calls = metrics["per_s"] * wall
    metrics["cpu_us_per_call"] = cpu / calls * 1e6
    metrics["cores_busy"] = cpu / wall
    return metrics


async def served_by(processes: int, n: int, callers: int) -> Result:
    """*n* remote asks from *callers* tasks to a chat actor served by *processes* processes."""
    servers = await _servers(1)
    procs: list[subprocess.Popen[str]] = []
    try:
        with ServerProcess(latency=0.005) as http:
            url = servers.urls[0]
            cluster = f"w10_{uuid.uuid4().hex[:8]}"
            for i in range(processes):
                argv = [sys.executable, "-m", __name__, url, cluster, f"s{i}", http.base_url]
                procs.append(await anyio.to_thread.run_sync(_start, argv))
            for proc in procs:
                assert proc.stdout is not None
                with anyio.fail_after(60):
                    line = await anyio.to_thread.run_sync(proc.stdout.readline)
                if line.strip() != "ready":
                    raise RuntimeError(f"a serving process printed {line!r}, not 'ready'")
            groups = [http.pid, *(p.pid for p in procs), *(p.pid for p in servers.procs if p)]
            async with corral.Runtime(cluster=_spec(url, cluster, "caller")) as rt:
                metrics = await _measured(rt.remote("chat"), n, callers, groups)
        return Result(metrics)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        await anyio.to_thread.run_sync(servers.stop)


async def in_process(n: int, callers: int) -> Result:
    """The same asks to the same actor in the caller's own runtime (no cluster)."""
    with ServerProcess(latency=0.005) as http:
        async with corral.Runtime(_tree(http.base_url, export=False)) as rt:
            metrics = await _measured(rt.ref("chat"), n, callers, [http.pid])
    return Result(metrics)


if __name__ == "__main__":
    _serve(sys.argv[1:])
