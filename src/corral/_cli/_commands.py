"""The commands themselves."""

from __future__ import annotations

import argparse
import importlib.util

import anyio

from . import CommandError
from ._waterfall import draw_trace, summarise


def demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    if args.calls < 1:
        raise CommandError(f"--calls must be >= 1, got {args.calls}")
    if not 0 <= args.fail_rate <= 1:
        raise CommandError(f"--fail-rate must be between 0 and 1, got {args.fail_rate}")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, got {args.port}")
    result = anyio.run(
        lambda: run_demo(
            calls=args.calls,
            seed=args.seed,
            fail_rate=args.fail_rate,
            trace_file=args.traces,
            otlp=args.otlp,
            port=args.port,
            live=False if args.plain else None,
        )
    )
    return result.exit_code


def bench(args: argparse.Namespace) -> int:
    from .._bench._runner import run_and_print

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
        report = run_and_print(
            args.only, args.backend, args.uvloop, args.repeat, args.scale, args.json
        )
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


def trace(args: argparse.Namespace) -> int:
    from ..telemetry import TraceFileError, read_otlp_json

    try:
        spans = read_otlp_json(args.file)
    except TraceFileError as exc:
        raise CommandError(
            f"{exc}; is it an OTLP JSON file (corral demo --traces writes one)?"
        ) from exc
    traces = summarise(spans)
    if not traces:
        print(f"{args.file}: no spans")
        return 0
    chosen = None
    if args.id:
        matches = [t for t in traces if t.trace_id.startswith(args.id.lower())]
        if not matches:
            raise CommandError(
                f"no trace {args.id!r} in {args.file}; list them with: corral trace {args.file}"
            )
        chosen = matches[0]
    elif args.slowest:
        chosen = max(traces, key=lambda t: t.duration_s)
    elif args.errors:
        failing = [t for t in traces if t.outcome == "error"]
        if not failing:
            print(f"{args.file}: no trace with an error")
            return 0
        chosen = max(failing, key=lambda t: t.duration_s)
    if chosen is None:
        print(f"{len(traces)} traces in {args.file}:")
        print(f"{'trace id':<34}{'duration':>12}  {'spans':>5}  {'outcome':<8}root span")
        for t in traces[: args.limit]:
            print(
                f"{t.trace_id:<34}{t.duration_s * 1000:>9.2f} ms  {t.spans:>5}  "
                f"{t.outcome:<8}{t.root}"
            )
        if len(traces) > args.limit:
            print(f"... and {len(traces) - args.limit} more (--limit N)")
        return 0
    for line in draw_trace(
        [s for s in spans if s.trace_id == chosen.trace_id], attributes=args.attributes
    ):
        print(line)
    return 0
