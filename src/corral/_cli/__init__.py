"""The ``corral`` command: ``demo``, ``bench`` and ``trace``."""

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
    return parser


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
