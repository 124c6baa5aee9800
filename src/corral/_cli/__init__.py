"""The ``corral`` command: ``demo``, ``bench``, ``trace``, ``serve`` and ``status``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__

__all__ = ["main"]


class CommandError(Exception):
    """A user-facing error: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line saying what is wrong and what to do; no usage dump.
        from ._invocation import command

        help_ = command() + self.prog.removeprefix("corral")
        self.exit(2, f"{self.prog}: error: {message} (see {help_} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="corral",
        description="corral: an actor-style supervisor runtime for calling AI and HTTP services.",
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        help="run a live demo against a fake LLM server with faults",
        description=(
            "Start a fake OpenAI-compatible server with faults (429, 5xx, slow replies), a "
            "supervision tree (chat and embeddings sharing a rate limiter, a flaky tool "
            "under its own supervisor), send calls, and show what happens. Traces go to an "
            "OTLP JSON file, and to an OTLP endpoint (Jaeger) with --otlp or "
            "OTEL_EXPORTER_OTLP_ENDPOINT."
        ),
    )
    demo.add_argument("--calls", type=int, default=300, help="how many calls (default 300)")
    demo.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of what fails: the same seed, the same outcome (default 1)",
    )
    demo.add_argument(
        "--fail-rate", type=float, default=0.15, help="share of faulty answers (default 0.15)"
    )
    demo.add_argument(
        "--traces",
        default="corral-demo-traces.jsonl",
        metavar="FILE",
        help="OTLP JSON file for the traces (default corral-demo-traces.jsonl)",
    )
    demo.add_argument(
        "--otlp",
        metavar="URL",
        help="also send traces to this OTLP/HTTP endpoint, e.g. http://localhost:4318",
    )
    demo.add_argument("--port", type=int, default=0, help="port of the fake server (default: free)")
    demo.add_argument("--plain", action="store_true", help="plain progress lines, no live view")
    demo.add_argument(
        "--nodes",
        type=int,
        metavar="N",
        help="serve the calls from N processes on a local NATS server (the cluster extra), "
        "SIGKILL one midway, and check that no call was lost",
    )

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite (corral beside the raw anyio floor)",
        description="Run the benchmark suite; every figure is a ratio to a floor measured "
        "in the same run.",
    )
    from .._bench._runner import add_arguments

    add_arguments(bench)
    bench.add_argument("--plot", metavar="FILE.png", help="draw the ratios (needs matplotlib)")

    trace = commands.add_parser(
        "trace",
        help="list the traces of an OTLP JSON file, or draw one",
        description="Read an OTLP JSON trace file (corral demo writes one) and list its "
        "traces, or draw one as a waterfall. A trace's outcome is its root span's: a call that "
        "succeeded after retries is ok, with its retries counted.",
        epilog="Exit status: 0 when done, 1 when --errors finds no failed trace, 2 on bad "
        "options or an unreadable file.",
    )
    trace.add_argument("file", help="the OTLP JSON file")
    pick = trace.add_mutually_exclusive_group()
    pick.add_argument(
        "--id", metavar="TRACE_ID", help="draw the trace with this id (a unique prefix will do)"
    )
    pick.add_argument("--slowest", action="store_true", help="draw the slowest trace")
    pick.add_argument(
        "--errors",
        action="store_true",
        help="draw a trace whose root span failed, the one with the most failed spans",
    )
    trace.add_argument(
        "--attributes",
        action="store_true",
        help="show span attributes in the trace drawn (with --id, --slowest or --errors)",
    )
    trace.add_argument("--limit", type=int, default=50, help="traces to list (default 50)")

    serve = commands.add_parser(
        "serve",
        help="run a cluster node serving a tree's exported actors",
        description="Join a corral cluster on NATS JetStream and serve the exported actors "
        "of TARGET (corral.child(..., export=True)) until SIGTERM or Ctrl-C, which drain the "
        "node: it stops taking calls, lets running calls finish within their shutdown time, and "
        "hands unstarted ones back to the cluster at once. A second signal stops at once. One "
        "log line per child started, crashed, restarted or stopped goes to stderr. Traces go to "
        "an OTLP endpoint with --otlp or OTEL_EXPORTER_OTLP_ENDPOINT.",
        epilog="Exit status: 0 after a drain, 1 when a second signal cut it short, 2 on a bad "
        "TARGET or option, unreachable NATS, or a conflict with a live node (its name, or an "
        "actor it serves with other messages).",
    )
    serve.add_argument(
        "target",
        metavar="TARGET",
        help="a tree file (TOML, as corral.load_tree reads) or package.module:attr naming a "
        "corral.Supervisor, or a callable returning one",
    )
    _cluster_arguments(serve)
    serve.add_argument("--name", help="this node's name in the cluster (default: HOST-PID)")
    for option, what in (
        ("--ack-wait", "seconds of silence before a call goes to another node"),
        ("--heartbeat", "seconds between in-progress acks and node records"),
        ("--connect-timeout", "seconds to wait for NATS at start"),
    ):
        serve.add_argument(option, type=float, metavar="S", help=f"{what} (corral.Cluster)")
    serve.add_argument(
        "--attempts", type=int, metavar="N", help="deliveries of a call before NodeLost"
    )
    serve.add_argument(
        "--mailbox", type=int, metavar="N", help="calls that may wait in the stream per actor"
    )
    serve.add_argument("--otlp", metavar="URL", help="send traces to this OTLP/HTTP endpoint")

    status = commands.add_parser(
        "status",
        help="watch a cluster: its nodes, and per actor and node its calls",
        description="Show a corral cluster live: per actor and node the calls waiting in the "
        "stream and queued locally, running, succeeded and failed per second, retries, "
        "restarts, rate limiter and circuit; the totals; nodes joining and leaving. Plain lines "
        "when stdout is not a terminal.",
        epilog="Exit status: 0, or 2 when NATS or the cluster cannot be reached.",
    )
    _cluster_arguments(status)
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument(
        "--json", action="store_true", help="print one snapshot as JSON and exit (for scripts)"
    )
    status.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between snapshots"
    )
    return parser


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats",
        action="append",
        required=True,
        metavar="URL",
        help="a NATS server URL, e.g. nats://127.0.0.1:4222 (repeat for more)",
    )
    parser.add_argument(
        "--cluster",
        default="corral",
        help="the cluster's name (corral.Cluster's name; default corral)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``corral`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "demo":
            from ._commands import demo

            return demo(args)
        if args.command == "bench":
            from ._commands import bench

            return bench(args)
        if args.command == "serve":
            from ._serve import serve

            return serve(args)
        if args.command == "status":
            from ._status import status

            return status(args)
        from ._commands import trace

        return trace(args)
    except BrokenPipeError:
        # The reader went away (| head): not an error of ours.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit flush quiet
        return 0
    except (CommandError, ModuleNotFoundError) as exc:
        # ModuleNotFoundError: an extra is missing; the message names it.
        if args.debug:
            raise
        print(f"corral {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        what = exc.strerror or str(exc)
        if exc.filename is not None:
            what = f"{exc.filename}: {what}"
        print(f"corral {args.command}: error: {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
