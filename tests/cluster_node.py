"""A serving node for the cluster tests, in a process of its own (the tests SIGKILL it).

``python -m tests.cluster_node --servers URL[,URL] --cluster NAME --node NAME --ledger FILE``
serves an exported ``work`` actor and prints ``ready`` once it does. Every call
it starts and finishes is appended to the ledger file (outside the process),
so a test can tell what ran where even after the process died. SIGTERM stops
it gracefully (as ``corral serve`` will).
"""

from __future__ import annotations

import argparse
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import anyio

import corral


@corral.message(name="clustertest.Work")
class Work:
    key: str
    ms: int = 0
    #: How long a second or later attempt sleeps (default: *ms*).
    retry_ms: int | None = None
    #: Raise ValueError after sleeping (a failed call, not a crash).
    fail: bool = False
    #: Streamed (``stream``): the chunk before which the sleep comes (3 chunks in all).
    pause_at: int = 0


class Worker(corral.Actor[Work, str]):
    """Sleeps *ms* per call; answers ``node:attempt``."""

    def __init__(self, node: str, ledger: IO[str]) -> None:
        self.node = node
        self.ledger = ledger

    def _log(self, what: str, msg: Work, attempt: int) -> None:
        self.ledger.write(f"{what} {msg.key} {self.node} {attempt} {time.time():.3f}\n")
        self.ledger.flush()

    async def handle(self, msg: Work) -> str:
        call = corral.current_call()
        assert call is not None
        self._log("start", msg, call.attempt)
        ms = msg.ms if call.attempt == 1 or msg.retry_ms is None else msg.retry_ms
        await anyio.sleep(ms / 1000)
        self._log("failed" if msg.fail else "done", msg, call.attempt)
        if msg.fail:
            raise ValueError(f"work {msg.key} fails")
        return f"{self.node}:{call.attempt}"

    @corral.streams(Work)
    async def chunks(self, msg: Work) -> AsyncIterator[str]:
        """Three chunks ``node:attempt:index``, sleeping as ``handle`` does before one."""
        call = corral.current_call()
        assert call is not None
        self._log("start", msg, call.attempt)
        ms = msg.ms if call.attempt == 1 or msg.retry_ms is None else msg.retry_ms
        for i in range(3):
            if i == msg.pause_at:
                await anyio.sleep(ms / 1000)
            yield f"{self.node}:{call.attempt}:{i}"
        self._log("done", msg, call.attempt)


def served_tree() -> corral.Supervisor:
    """The tree ``corral serve tests.cluster_node:served_tree`` runs (settings from the env).

    ``CORRAL_TEST_NODE`` labels the answers and the ledger rows,
    ``CORRAL_TEST_LEDGER`` is the ledger file, ``CORRAL_TEST_CONCURRENCY``
    the worker's ``max_concurrency`` (default 2).
    """
    import os

    node = os.environ["CORRAL_TEST_NODE"]
    ledger = Path(os.environ["CORRAL_TEST_LEDGER"]).open("a")  # noqa: SIM115 - the process's life
    concurrency = int(os.environ.get("CORRAL_TEST_CONCURRENCY", "2"))
    child = corral.child(
        lambda: Worker(node, ledger), name="work", export=True, max_concurrency=concurrency
    )
    return corral.Supervisor(children=[child])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tests.cluster_node")
    parser.add_argument("--servers", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--ledger", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--ack-wait", type=float, default=2.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--otlp", help="export spans over OTLP/HTTP to this endpoint")
    parser.add_argument("--direct", action="store_true", help="export durable=False")
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.otlp:
        corral.telemetry.configure(
            service_name=f"node-{args.node}", endpoint=args.otlp, metrics=False, batch=False
        )
    spec = corral.Cluster(
        servers=args.servers.split(","),
        name=args.cluster,
        ack_wait=args.ack_wait,
        heartbeat=args.heartbeat,
        attempts=args.attempts,
        connect_timeout=10,
        node=args.node,
    )

    async def serve() -> None:
        with args.ledger.open("a") as ledger:
            child = corral.child(
                lambda: Worker(args.node, ledger),
                name="work",
                export=True,
                durable=not args.direct,
                max_concurrency=args.concurrency,
            )
            tree = corral.Supervisor(children=[child])
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async with corral.Runtime(tree, cluster=spec, shutdown_timeout=10):
                    print("ready", flush=True)
                    async for _ in signals:
                        break
        print("stopped", flush=True)

    anyio.run(serve, backend="asyncio")


def start(
    *, servers: list[str], cluster: str, node: str, ledger: Path, **options: object
) -> subprocess.Popen[str]:
    """Start a serving node process and wait for its ``ready`` line."""
    argv = [sys.executable, "-m", "tests.cluster_node", "--servers", ",".join(servers)]
    argv += ["--cluster", cluster, "--node", node, "--ledger", str(ledger)]
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"serving node {node} did not start: {line!r} {err[-2000:]}")
    return proc


def limited_tree() -> corral.Supervisor:
    """An exported OpenAIChat behind a rate limit shared across the nodes (settings from the env).

    ``CORRAL_TEST_LLM_URL`` is the server's base URL; ``CORRAL_TEST_LIMIT``
    ``requests,per,burst`` the shared limit (named ``key-1``); every admitted
    attempt appends its time to ``CORRAL_TEST_ADMITTED``.
    """
    import os

    requests, per, burst = (float(x) for x in os.environ["CORRAL_TEST_LIMIT"].split(","))
    limiter = corral.RateLimiter(requests=requests, per=per, burst=burst, shared="key-1")
    policy = corral.ServicePolicy(
        rate_limiter=limiter,
        retry=corral.RetryPolicy(max_attempts=3, min_delay=0.01, max_delay=0.05),
    )
    url = os.environ["CORRAL_TEST_LLM_URL"]
    # Each admission's wall-clock time, appended to a file the nodes share.
    admitted = Path(os.environ["CORRAL_TEST_ADMITTED"]).open("a", buffering=1)  # noqa: SIM115

    class Chat(corral.OpenAIChat):
        async def handle(self, msg: corral.ChatRequest) -> corral.ChatReply:
            # The policy calls the handler right after the limiter admitted the attempt.
            admitted.write(f"{time.time():.6f}\n")
            return await super().handle(msg)

    child = corral.child(
        lambda: Chat(model="fake-model", base_url=url, api_key_env=None),
        name="chat",
        export=True,
        max_concurrency=8,
        policy=policy,
    )
    return corral.Supervisor(children=[child])


if __name__ == "__main__":
    main()
