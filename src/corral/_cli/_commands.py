"""The commands themselves."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import urllib.parse

import anyio

from .._extras import need
from . import CommandError
from ._invocation import command, quote
from ._waterfall import TraceSummary, draw_trace, list_traces, summarise


def terminal_width() -> int | None:
    """Columns of the terminal (or ``COLUMNS``); ``None`` when the output is not a terminal."""
    return shutil.get_terminal_size((0, 0)).columns or None


def _check_url(value: str, where: str) -> None:
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"{where} must be an http:// or https:// URL, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        raise CommandError(
            f"{where} has no valid port (a number from 1 to 65535), got {value!r}"
        ) from None


def demo(args: argparse.Namespace) -> int:
    need("rich", "cli", "corral demo")
    need("opentelemetry.sdk", "cli", "corral demo")
    from ._demo import run_demo

    if args.calls < 1:
        raise CommandError(f"--calls must be >= 1, got {args.calls}")
    if not 0 <= args.fail_rate <= 1:
        raise CommandError(f"--fail-rate must be between 0 and 1, got {args.fail_rate}")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, got {args.port}")
    if args.nodes is not None:
        return _cluster_demo(args)
    if args.otlp is not None:
        _check_url(args.otlp, "--otlp")
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        _check_url(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], "OTEL_EXPORTER_OTLP_ENDPOINT")
    result = anyio.run(
        lambda: run_demo(
            calls=args.calls,
            seed=args.seed,
            fail_rate=args.fail_rate,
            trace_file=args.traces,
            otlp=args.otlp,
            port=args.port,
            live=False if args.plain else None,
            width=terminal_width(),
        )
    )
    return result.exit_code


def _cluster_demo(args: argparse.Namespace) -> int:
    need("nats", "cluster", "corral demo --nodes")
    from ._demo_cluster import run_cluster_demo

    if args.nodes < 2:
        raise CommandError(f"--nodes must be >= 2 (one of them is killed midway), got {args.nodes}")
    if args.otlp is not None:
        _check_url(args.otlp, "--otlp")
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        _check_url(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], "OTEL_EXPORTER_OTLP_ENDPOINT")
    result = anyio.run(
        lambda: run_cluster_demo(
            nodes=args.nodes,
            otlp=args.otlp,
            calls=args.calls,
            seed=args.seed,
            fail_rate=args.fail_rate,
            trace_file=args.traces,
            live=False if args.plain else None,
            width=terminal_width(),
        ),
        backend="asyncio",
    )
    return result.exit_code


def bench(args: argparse.Namespace) -> int:
    from .._bench._runner import run_from_arguments

    if args.repeat < 1:
        raise CommandError(f"--repeat must be >= 1, got {args.repeat}")
    if not args.scale > 0:
        raise CommandError(f"--scale must be > 0, got {args.scale}")
    if args.uvloop and args.backend != "asyncio":
        raise CommandError("--uvloop needs --backend asyncio")
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        raise CommandError("--uvloop needs the uvloop package: pip install 'corral[bench]'")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CommandError("--plot needs matplotlib: pip install 'corral[plot]'")
    import logging

    logging.getLogger("corral").setLevel(logging.CRITICAL)
    try:
        report = run_from_arguments(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if args.plot:
        _plot(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot(report: dict[str, object], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    values: list[float] = []
    workloads = report["workloads"]
    assert isinstance(workloads, dict)
    for key, data in workloads.items():
        for fig in data["figures"]:
            ratio = fig["ratio"]["median"]
            if ratio == ratio:  # not NaN
                labels.append(f"{key} {fig['metric']}")
                values.append(ratio)
    figure, axes = plt.subplots(figsize=(10, max(3, len(labels) * 0.35)))
    axes.barh(labels, values)
    axes.axvline(1.0, color="grey", linewidth=1)
    axes.set_xlabel("corral / floor (same run)")
    axes.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _pick_id(traces: list[TraceSummary], prefix: str, file: str) -> TraceSummary:
    wanted = prefix.lower()
    exact = [t for t in traces if t.trace_id == wanted]
    matches = exact or [t for t in traces if t.trace_id.startswith(wanted)]
    if not matches:
        raise CommandError(
            f"no trace id starts with {prefix!r} in {file}; list them with: "
            f"{command()} trace {quote(file)}"
        )
    if len(matches) > 1:
        shown = ", ".join(t.trace_id for t in matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise CommandError(
            f"trace id prefix {prefix!r} is ambiguous: {len(matches)} traces in {file} "
            f"start with it ({shown}); give more of the id"
        )
    return matches[0]


def trace(args: argparse.Namespace) -> int:
    from ..telemetry import TraceFileError, read_otlp_json

    if args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    drawing = bool(args.id or args.slowest or args.errors)
    if args.attributes and not drawing:
        raise CommandError(
            "--attributes shows the attributes of a drawn trace: add --id TRACE_ID, "
            "--slowest or --errors"
        )
    try:
        spans = read_otlp_json(args.file)
    except TraceFileError as exc:
        if isinstance(exc.__cause__, OSError):  # missing or unreadable: no format hint
            raise CommandError(str(exc)) from exc
        raise CommandError(
            f"{exc}; is it an OTLP JSON file (corral demo --traces writes one)?"
        ) from exc
    traces = summarise(spans)
    width = terminal_width()
    chosen = None
    if args.id:
        chosen = _pick_id(traces, args.id, args.file)
    elif not traces:
        print(f"{args.file}: no spans")
        return 1 if args.errors else 0
    elif args.slowest:
        chosen = max(traces, key=lambda t: t.duration_s)
    elif args.errors:
        failing = [t for t in traces if t.outcome == "error"]
        if not failing:
            print(f"{args.file}: no trace whose root span failed")
            return 1
        chosen = max(failing, key=lambda t: (t.failed_spans, t.duration_s))
    if chosen is None:
        print(f"{len(traces)} trace{'' if len(traces) == 1 else 's'} in {args.file}:")
        for line in list_traces(traces, limit=args.limit, width=width):
            print(line)
        return 0
    for line in draw_trace(
        [s for s in spans if s.trace_id == chosen.trace_id],
        attributes=args.attributes,
        width=width,
    ):
        print(line)
    return 0
