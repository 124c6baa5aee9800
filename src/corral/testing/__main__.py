"""``python -m corral.testing``: run the fake LLM server in a process of its own.

Prints ``listening on <port>`` once it is up and serves until killed (or
until its standard input closes). Options: ``--latency``, ``--jitter``,
``--port``, ``--host``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

import anyio

from ._fake_llm import FakeLLMServer

_PROG = "python -m corral.testing"
_DESCRIPTION = (
    "Run the fake OpenAI-compatible server (POST /v1/chat/completions and /v1/embeddings) "
    "in a process of its own. It prints 'listening on PORT' once it is up, and serves until "
    "it is killed or its standard input closes."
)


async def _serve(args: argparse.Namespace) -> None:
    async with FakeLLMServer(
        latency=args.latency, jitter=args.jitter, host=args.host, port=args.port
    ) as server:
        print(f"listening on {server.port}", flush=True)
        closed = anyio.Event()
        token = anyio.lowlevel.current_token()

        def watch_stdin() -> None:
            sys.stdin.read()
            anyio.from_thread.run_sync(closed.set, token=token)

        threading.Thread(target=watch_stdin, daemon=True).start()
        await closed.wait()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming what is wrong; no usage dump.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> _Parser:
    parser = _Parser(prog=_PROG, description=_DESCRIPTION)
    parser.add_argument(
        "--latency", type=float, default=0.005, help="seconds each answer takes (default 0.005)"
    )
    parser.add_argument(
        "--jitter", type=float, default=0.0, help="up to this many extra seconds (default 0)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; return the exit status (2 for bad options or a refused port)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.latency >= 0:
        parser.error(f"--latency must be >= 0 seconds, got {args.latency}")
    if not args.jitter >= 0:
        parser.error(f"--jitter must be >= 0 seconds, got {args.jitter}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    try:
        anyio.run(_serve, args)
    except OSError as exc:
        # The server names the address and the reason: cannot listen on ...
        print(f"{_PROG}: error: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
