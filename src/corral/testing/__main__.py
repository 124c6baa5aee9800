"""``python -m corral.testing``: run the fake LLM server in a process of its own.

Prints ``listening on <port>`` once it is up and serves until killed (or,
when its standard input is a pipe, until that pipe closes). Options: ``--latency``, ``--jitter``,
``--port``, ``--host``, ``--api-key``, ``--seed``, the faults (``--rate-429``,
``--rate-500``, ``--rate-503``, ``--rate-slow``, ``--rate-drop``,
``--rate-malformed``, ``--retry-after``, ``--slow-delay``, ``--faults-by``),
``--rate-limit``/``--rate-burst``, ``--stream-delay`` and ``--model``: the
:class:`~corral.testing.FakeLLMServer` options of the same names.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

import anyio

from ._fake_llm import FakeLLMServer, Faults

_PROG = "python -m corral.testing"
_DESCRIPTION = (
    "Run the fake OpenAI-compatible server (POST /v1/chat/completions and /v1/embeddings, "
    "GET /v1/models) in a process of its own. It prints 'listening on PORT' once it is up, "
    "and serves until it is killed (Ctrl-C), or until its standard input closes when that "
    "is a pipe."
)
#: The fault options: (option, the Faults field, what it means).
_RATES = (
    ("--rate-429", "rate_429", "answer 429 rate_limit_exceeded, with Retry-After"),
    ("--rate-500", "rate_500", "answer 500"),
    ("--rate-503", "rate_503", "answer 503"),
    ("--rate-slow", "rate_slow", "answer after --slow-delay more seconds"),
    ("--rate-drop", "rate_drop", "close the connection without an answer"),
    ("--rate-malformed", "rate_malformed", "answer 200 with a body that is not JSON"),
)


def _server(args: argparse.Namespace) -> FakeLLMServer:
    """The server the parsed options describe."""
    faults = Faults(
        retry_after=args.retry_after,
        slow_delay=args.slow_delay,
        **{field: getattr(args, field) for _, field, _ in _RATES},
    )
    return FakeLLMServer(
        latency=args.latency,
        jitter=args.jitter,
        faults=faults,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        api_key=args.api_key,
        seed=args.seed,
        host=args.host,
        port=args.port,
        stream_delay=args.stream_delay,
        faults_by=args.faults_by,
        models=args.model,
    )


async def _serve(args: argparse.Namespace) -> None:
    async with _server(args) as server:
        print(f"listening on {server.port}", flush=True)
        closed = anyio.Event()
        if _stdin_is_a_pipe():
            # A parent holding our stdin stops us by closing it. /dev/null (nohup,
            # a `&` job, CI) or a terminal is no such signal: serve until killed.
            token = anyio.lowlevel.current_token()

            def watch_stdin() -> None:
                sys.stdin.read()
                anyio.from_thread.run_sync(closed.set, token=token)

            threading.Thread(target=watch_stdin, daemon=True).start()
        await closed.wait()


def _stdin_is_a_pipe() -> bool:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # no stdin at all
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


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
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="answer 401 invalid_api_key unless a request has Authorization: Bearer KEY "
        "(checked before the rate limit; default: no key needed)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the faults and the jitter (default 0)"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="serve this model (repeat for more); others get 404 model_not_found "
        "(default: serve any model)",
    )
    parser.add_argument(
        "--stream-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds between the chunks of a streamed reply (default 0)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="accept this many requests per second, answer 429 beyond (default: no limit)",
    )
    parser.add_argument(
        "--rate-burst",
        type=float,
        default=1.0,
        metavar="N",
        help="requests the rate limit lets through at once (default 1)",
    )
    faults = parser.add_argument_group(
        "faults",
        "Random misbehaviour: each request meets at most one fault, drawn with these "
        "probabilities (seeded by --seed).",
    )
    for option, field, meaning in _RATES:
        faults.add_argument(
            option,
            dest=field,
            type=float,
            default=0.0,
            metavar="P",
            help=f"probability to {meaning} (default 0)",
        )
    faults.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="the wait its 429s ask for (Retry-After in whole seconds, rounded up, and "
        "retry-after-ms; default 1)",
    )
    faults.add_argument(
        "--slow-delay",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="the extra wait of a slow answer (default 2)",
    )
    faults.add_argument(
        "--faults-by",
        choices=("arrival", "body"),
        default="arrival",
        help="draw each fault in the order requests arrive, or from the request's body, "
        "so the same requests meet the same faults on every run (default arrival)",
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
    for option, field, _ in _RATES:
        if not 0 <= getattr(args, field) <= 1:
            parser.error(f"{option} must be a probability in [0, 1], got {getattr(args, field)}")
    for option in ("retry_after", "slow_delay", "stream_delay"):
        if not getattr(args, option) >= 0:
            name = "--" + option.replace("_", "-")
            parser.error(f"{name} must be >= 0 seconds, got {getattr(args, option)}")
    if args.rate_limit is not None and not args.rate_limit > 0:
        parser.error(f"--rate-limit must be > 0 requests per second, got {args.rate_limit}")
    if not args.rate_burst >= 1:
        parser.error(f"--rate-burst must be >= 1, got {args.rate_burst}")
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
