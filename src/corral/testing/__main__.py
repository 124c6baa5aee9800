"""``python -m corral.testing``: run the fake LLM server in a process of its own.

Prints ``listening on <port>`` once it is up and serves until killed (or
until its standard input closes). Options: ``--latency``, ``--jitter``,
``--port``.
"""

from __future__ import annotations

import argparse
import sys
import threading

import anyio

from ._fake_llm import FakeLLMServer


async def _serve(args: argparse.Namespace) -> None:
    async with FakeLLMServer(latency=args.latency, jitter=args.jitter) as server:
        print(f"listening on {server.port}", flush=True)
        closed = anyio.Event()
        token = anyio.lowlevel.current_token()

        def watch_stdin() -> None:
            sys.stdin.read()
            anyio.from_thread.run_sync(closed.set, token=token)

        threading.Thread(target=watch_stdin, daemon=True).start()
        await closed.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m corral.testing", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.005)
    parser.add_argument("--jitter", type=float, default=0.0)
    args = parser.parse_args()
    anyio.run(_serve, args)


if __name__ == "__main__":
    main()
