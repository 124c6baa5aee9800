"""Run the workloads, each beside its floor in the same process, and report ratios."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs

from . import _failover as fo
from . import _http as h
from . import _httpsuite as hs
from . import _natsload as nl
from . import _scaling as sc
from . import _workloads as w

Side = Callable[..., Awaitable[w.Result]]


@attrs.frozen
class Check:
    """One figure compared between corral and the floor."""

    metric: str
    #: "higher" when more is better (throughput), "lower" for times and bytes.
    better: str
    #: Target on corral/floor, or on corral's absolute figure when ``absolute``.
    target: float | None = None
    absolute: bool = False


@attrs.frozen
class Workload:
    """A named workload: its two sides, their arguments and the figures to compare."""

    key: str
    title: str
    floor: Side
    corral: Side
    args: Callable[[float], tuple[Any, ...]]
    checks: tuple[Check, ...]
    #: Run each side in a fresh interpreter (for memory figures).
    subprocess: bool = False
    #: What the "floor" column holds, when it is not the raw anyio floor.
    baseline: str = "anyio floor"


def _scaled(n: int, scale: float, least: int = 1) -> int:
    return max(least, round(n * scale))


def _w1_args(scale: float) -> tuple[Any, ...]:
    return (_scaled(20_000, scale),)


def _w2_args(scale: float) -> tuple[Any, ...]:
    return (_scaled(100_000, scale, 64),)


#: What W10B and W10C compare: throughput, CPU per call of all processes, cores kept busy.
_SCALING_CHECKS = (
    Check("per_s", "higher"),
    Check("cpu_us_per_call", "lower"),
    Check("cores_busy", "higher"),
)


def _nats(
    key: str,
    title: str,
    n: int,
    callers: int,
    replicas: int,
    *,
    tell: bool = False,
    records: bool = False,
    direct: bool = False,
) -> Workload:
    """A W9 workload: remote calls through NATS, beside raw nats-py doing the same path."""
    floor = nl.floor_core if direct else functools.partial(nl.floor_nats, tell=tell)
    return Workload(
        key,
        title,
        floor,
        functools.partial(nl.corral_nats, tell=tell, records=records, direct=direct),
        lambda scale: (_scaled(n, scale, callers), callers, replicas),
        (Check("per_s", "higher", 0.7), Check("p50_us", "lower"), Check("p99_us", "lower")),
        baseline=(
            "raw nats-py, core request/reply" if direct else "raw nats-py, the same JetStream path"
        ),
    )


def _ceiling(
    key: str, of: str, untraced: Side, bound: Side, args: Callable[[float], tuple[Any, ...]]
) -> Workload:
    """The most a tracing workload could reach: its calls untraced, wrapped in the
    SDK's own work for their spans (see ``_workloads._SpansAlone``)."""
    return Workload(
        key,
        f"ceiling for {of}: untraced, each ask wrapped in the SDK's own work for its spans",
        untraced,
        bound,
        args,
        (Check("per_s", "higher"),),
        baseline="corral with tracing off",
    )


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "W1",
        "ask-serial: 20,000 sequential asks to one actor",
        w.floor_w1,
        w.corral_w1,
        _w1_args,
        (Check("per_s", "higher", 0.5), Check("p50_us", "lower"), Check("p99_us", "lower")),
    ),
    Workload(
        "W2",
        "ask-concurrent: 64 callers, 100,000 asks",
        w.floor_w2,
        w.corral_w2,
        _w2_args,
        (Check("per_s", "higher", 0.5), Check("p50_us", "lower"), Check("p99_us", "lower")),
    ),
    Workload(
        "W3",
        "tell: 200,000 one-way messages until all processed",
        w.floor_w3,
        w.corral_w3,
        lambda s: (_scaled(200_000, s),),
        (Check("per_s", "higher", 0.5),),
    ),
    Workload(
        "W4",
        "fan-out: 1,000 actors x 100 asks, at most 256 outstanding",
        w.floor_w4,
        w.corral_w4,
        lambda s: (_scaled(1_000, s), _scaled(100, s)),
        (Check("per_s", "higher"),),
    ),
    Workload(
        "W5",
        "spawn: 10,000 actors, memory per idle actor, stop all",
        w.floor_w5,
        w.corral_w5,
        lambda s: (_scaled(10_000, s, 10),),
        (
            Check("spawn_s", "lower", 1.0, absolute=True),
            Check("bytes_idle", "lower", 1.0),
            Check("bytes_after_call", "lower", 1.0),
            Check("stop_s", "lower"),
        ),
        subprocess=True,
    ),
    Workload(
        "W6",
        "io-bound: 10 ms handler, 100 concurrent, 5,000 asks",
        w.floor_w6,
        w.corral_w6,
        lambda s: (_scaled(5_000, s, 100),),
        (Check("per_s", "higher", 0.95),),
    ),
    Workload(
        "W7",
        "crash-restart: crash on every 100th of 100,000 asks (64 callers) vs no crashes",
        w.nocrash_w7,
        w.corral_w7,
        lambda s: (_scaled(100_000, s, 640),),
        (
            Check("per_s", "higher", 0.8),
            Check("restart_p50_us", "lower", 1000.0, absolute=True),
        ),
        baseline="corral without crashes",
    ),
    Workload(
        "W8M",
        "batch memory: 100,000 chat calls queued at once to one OpenAIChat (mailbox holds them)",
        h.floor_w8m,
        h.corral_w8m,
        lambda s: (_scaled(100_000, s, 100),),
        (Check("bytes_per_queued_call", "lower", 2048.0, absolute=True),),
        subprocess=True,
        baseline="a task per call waiting on a semaphore",
    ),
    Workload(
        "W1T",
        "W1 with tracing on (SDK, always-on sampler, batch processor, dropping exporter)",
        w.corral_w1,
        w.traced_w1,
        _w1_args,
        (Check("per_s", "higher", 1 / 3), Check("p50_us", "lower")),
        baseline="corral with tracing off",
    ),
    Workload(
        "W2T",
        "W2 with tracing on (as W1T)",
        w.corral_w2,
        w.traced_w2,
        _w2_args,
        (Check("per_s", "higher", 1 / 3), Check("p50_us", "lower")),
        baseline="corral with tracing off",
    ),
    Workload(
        "W1S",
        "W1 with tracing on and the parent-based 1 % ratio sampler",
        w.corral_w1,
        w.sampled_w1,
        _w1_args,
        (Check("per_s", "higher", 0.8),),
        baseline="corral with tracing off",
    ),
    Workload(
        "W2S",
        "W2 with tracing on and the parent-based 1 % ratio sampler",
        w.corral_w2,
        w.sampled_w2,
        _w2_args,
        (Check("per_s", "higher", 0.8),),
        baseline="corral with tracing off",
    ),
    _ceiling("W1TB", "W1T", w.corral_w1, w.sdk_bound_w1, _w1_args),
    _ceiling("W2TB", "W2T", w.corral_w2, w.sdk_bound_w2, _w2_args),
    _ceiling("W1SB", "W1S", w.corral_w1, w.sdk_bound_sampled_w1, _w1_args),
    _ceiling("W2SB", "W2S", w.corral_w2, w.sdk_bound_sampled_w2, _w2_args),
    _nats("W9", "remote ask, serial, one NATS node: 1,000 calls", 1_000, 1, 1),
    _nats("W9C", "remote ask, 64 callers, one NATS node: 5,000 calls", 5_000, 64, 1),
    _nats("W9T", "remote tell, 64 callers, one NATS node: 5,000 messages", 5_000, 64, 1, tell=True),
    _nats("W9CK", "W9C with result records (not idempotent)", 5_000, 64, 1, records=True),
    _nats("W9R3", "remote ask, serial, 3 NATS nodes, R3: 500 calls", 500, 1, 3),
    _nats("W9R3C", "remote ask, 64 callers, 3 NATS nodes, R3: 3,000 calls", 3_000, 64, 3),
    _nats("W9D", "remote ask, durable=False, serial: 3,000 calls", 3_000, 1, 1, direct=True),
    _nats("W9DC", "remote ask, durable=False, 64 callers: 20,000", 20_000, 64, 1, direct=True),
    Workload(
        "W9F",
        "failover: SIGKILL a serving process holding 8 calls; until all are answered elsewhere "
        "(ack_wait 2 s)",
        fo.floor_failover,
        fo.corral_failover,
        lambda scale: (_scaled(8, scale), 2.0),
        (Check("failover_s", "lower", 1.5),),
        baseline="JetStream's own redelivery (raw nats-py, the same ack_wait)",
    ),
    Workload(
        "W10",
        "one exported OpenAIChat served by 1 process, 64 callers, the fast HTTP server: "
        "3,000 calls",
        sc.in_process,
        functools.partial(sc.served_by, 1),
        lambda scale: (_scaled(3_000, scale, 64), 64),
        (
            Check("per_s", "higher"),
            Check("p50_us", "lower"),
            Check("cpu_us_per_call", "lower"),
            Check("cores_busy", "higher"),
        ),
        baseline="the same actor in the caller's process (no cluster)",
    ),
    Workload(
        "W10B",
        "W10 served by 2 processes",
        functools.partial(sc.served_by, 1),
        functools.partial(sc.served_by, 2),
        lambda scale: (_scaled(3_000, scale, 64), 64),
        (
            Check("per_s", "higher"),
            Check("cpu_us_per_call", "lower"),
            Check("cores_busy", "higher"),
        ),
        baseline="served by 1 process",
    ),
    Workload(
        "W10C",
        "W10 served by 3 processes",
        functools.partial(sc.served_by, 1),
        functools.partial(sc.served_by, 3),
        lambda scale: (_scaled(3_000, scale, 64), 64),
        (
            Check("per_s", "higher"),
            Check("cpu_us_per_call", "lower"),
            Check("cores_busy", "higher"),
        ),
        baseline="served by 1 process",
    ),
)

#: The workloads that need NATS (the ``cluster`` extra) and the asyncio backend.
NATS_KEYS = (
    "W9",
    "W9C",
    "W9T",
    "W9CK",
    "W9R3",
    "W9R3C",
    "W9D",
    "W9DC",
    "W9F",
    "W10",
    "W10B",
    "W10C",
)


def _run_side(
    workload: Workload, side: str, scale: float, backend: str, uvloop: bool
) -> dict[str, float]:
    fn = workload.floor if side == "floor" else workload.corral
    args = workload.args(scale)
    if workload.subprocess:
        cmd = [
            sys.executable,
            "-m",
            "corral._bench._runner",
            "--one",
            f"{workload.key}:{side}",
            "--scale",
            str(scale),
            "--backend",
            backend,
        ]
        if uvloop:
            cmd.append("--uvloop")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    options: dict[str, Any] = {}
    if backend == "asyncio" and uvloop:
        options["use_uvloop"] = True
    result: w.Result = anyio.run(lambda: fn(*args), backend=backend, backend_options=options)
    return dict(result.metrics)


def _nats_skip(backend: str) -> str | None:
    """Why the NATS workloads cannot run here, or ``None``."""
    keys = ", ".join(NATS_KEYS)
    if backend != "asyncio":
        return f"{keys} skipped: nats-py runs on asyncio only (--backend asyncio)"
    if importlib.util.find_spec("nats") is None:
        return f"{keys} skipped: they need the cluster extra (pip install 'corral[cluster]')"
    from .._cluster._local import nats_server_binary

    try:
        nats_server_binary()
    except FileNotFoundError as exc:
        return f"{keys} skipped: {exc}"
    return None


def _summarise(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_suite(
    only: Sequence[str] = (),
    *,
    backend: str = "asyncio",
    uvloop: bool = False,
    repeat: int = 1,
    scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
    gc_freeze: bool = False,
) -> dict[str, Any]:
    """Run the selected workloads (all when *only* is empty) and return the report.

    With *gc_freeze*, each HTTP load starts with the objects already alive
    frozen (:func:`gc.freeze`), for floors and corral alike.

    The HTTP workloads (W8, W8L, W8E, W8EL, W8T, W8S, W8X) need the ``bench`` extra;
    without it they are skipped, and the report's ``skipped`` says why.
    """
    selected = [wl for wl in WORKLOADS if not only or wl.key in only]
    nats_skipped = None
    if any(wl.key in NATS_KEYS for wl in selected):
        nats_skipped = _nats_skip(backend)
        if nats_skipped is not None:
            selected = [wl for wl in selected if wl.key not in NATS_KEYS]
    http = [key for key in hs.HTTP_KEYS if not only or key in only]
    known = [wl.key for wl in WORKLOADS] + list(hs.HTTP_KEYS)
    unknown = set(only) - set(known)
    if unknown:
        raise ValueError(
            f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(known)}"
        )
    report: dict[str, Any] = {
        "backend": backend + ("+uvloop" if uvloop else ""),
        "repeat": repeat,
        "scale": scale,
        "gc_freeze": gc_freeze,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workloads": {},
    }
    if nats_skipped is not None:
        report["skipped"] = nats_skipped
        if progress:
            progress(nats_skipped)
    for wl in selected:
        runs: dict[str, list[dict[str, float]]] = {"floor": [], "corral": []}
        for i in range(repeat):
            # Alternate which side goes first, so warm-up favours neither.
            order = ("floor", "corral") if i % 2 == 0 else ("corral", "floor")
            for side in order:
                if progress:
                    progress(f"{wl.key} {side} run {i + 1}/{repeat}")
                runs[side].append(_run_side(wl, side, scale, backend, uvloop))
        figures = []
        for check in wl.checks:
            floor_vals = [r.get(check.metric, math.nan) for r in runs["floor"]]
            corral_vals = [r.get(check.metric, math.nan) for r in runs["corral"]]
            ratios = [
                c / f if f else float("nan") for c, f in zip(corral_vals, floor_vals, strict=True)
            ]
            med_ratio = statistics.median(ratios)
            ok = None
            if check.target is not None:
                value = statistics.median(corral_vals) if check.absolute else med_ratio
                ok = value >= check.target if check.better == "higher" else value <= check.target
            figures.append(
                {
                    "metric": check.metric,
                    "better": check.better,
                    "floor": _summarise(floor_vals),
                    "corral": _summarise(corral_vals),
                    "ratio": _summarise(ratios),
                    "target": check.target,
                    "target_on": "corral" if check.absolute else "ratio",
                    "met": ok,
                }
            )
        report["workloads"][wl.key] = {
            "title": wl.title,
            "baseline": wl.baseline,
            "figures": figures,
        }
    if http:
        skipped = hs.skip_message(http)
        if skipped is not None:
            report["skipped"] = "\n".join(filter(None, [report.get("skipped"), skipped]))
            if progress:
                progress(skipped)
        else:
            report["server"], workloads = hs.run_http(
                http,
                backend=backend,
                uvloop=uvloop,
                repeat=repeat,
                scale=scale,
                progress=progress,
                gc_freeze=gc_freeze,
            )
            report["workloads"].update(workloads)
    return report


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(report: dict[str, Any]) -> str:
    """Render the report as a plain-text table."""
    lines = [
        f"corral benchmark suite - backend {report['backend']}, repeat {report['repeat']}, "
        f"scale {report['scale']}, Python {report['python']} on {report['cpus']} CPUs"
        + (", gc.freeze() before each HTTP load" if report.get("gc_freeze") else ""),
    ]
    pairs = {k: d for k, d in report["workloads"].items() if d.get("kind") != "http"}
    if pairs:
        lines += [
            "",
            f"{'workload':<9}{'metric':<22}{'floor':>12}{'corral':>12}  {'corral/floor':<22}"
            f"{'target':<16}met",
        ]
    for key, data in pairs.items():
        for fig in data["figures"]:
            ratio = fig["ratio"]
            ratio_txt = _fmt(ratio["median"])
            if report["repeat"] > 1:
                ratio_txt += f" ({_fmt(ratio['min'])}-{_fmt(ratio['max'])})"
            target = ""
            if fig["target"] is not None:
                op = ">=" if fig["better"] == "higher" else "<="
                target = f"{fig['target_on']} {op} {_fmt(fig['target'])}"
            met = {True: "yes", False: "NO", None: ""}[fig["met"]]
            lines.append(
                f"{key:<9}{fig['metric']:<22}{_fmt(fig['floor']['median']):>12}"
                f"{_fmt(fig['corral']['median']):>12}  {ratio_txt:<22}{target:<16}{met}"
            )
    if pairs:
        lines.append("")
        for key, data in pairs.items():
            if data.get("baseline", "anyio floor") != "anyio floor":
                lines.append(f"{key}: the floor column is {data['baseline']}.")
        lines.append("per_s: calls per second (higher is better); *_us: latency in microseconds;")
        lines.append(
            "*_s: seconds; bytes_*: resident memory per actor or queued call (lower is better)."
        )
    http = hs.format_http(report)
    if http:
        lines += ["", *http]
    if "skipped" in report:
        lines += ["", report["skipped"]]
    return "\n".join(lines)


def _one(spec: str, scale: float, backend: str, uvloop: bool) -> None:
    key, side = spec.split(":")
    wl = next(x for x in WORKLOADS if x.key == key)
    fn = wl.floor if side == "floor" else wl.corral
    options: dict[str, Any] = {"use_uvloop": True} if backend == "asyncio" and uvloop else {}
    result: w.Result = anyio.run(
        lambda: fn(*wl.args(scale)), backend=backend, backend_options=options
    )
    print(json.dumps(result.metrics))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's options, shared by ``python -m benchmarks`` and ``corral bench``."""
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W6")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--uvloop", action="store_true", help="run asyncio on uvloop")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (median, min-max)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="HTTP workloads: gc.freeze() before each load (floors and corral alike)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of the benchmark suite."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure corral beside the raw anyio floor, in the same run.",
    )
    add_arguments(parser)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Crash workloads would otherwise print a traceback per crash: the suite
    # measures the runtime, not the terminal.
    logging.getLogger("corral").setLevel(logging.CRITICAL)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if not args.scale > 0:
        parser.error(f"--scale must be > 0, got {args.scale}")
    if args.uvloop and args.backend != "asyncio":
        parser.error("--uvloop needs --backend asyncio")
    if args.uvloop and importlib.util.find_spec("uvloop") is None:
        parser.error("--uvloop needs the uvloop package: pip install 'corral[bench]'")
    if args.one:
        _one(args.one, args.scale, args.backend, args.uvloop)
        return 0
    try:
        run_from_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        # The benchmark server, if one ran, was stopped on the way out.
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run_from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_and_print` with the options :func:`add_arguments` parsed."""
    return run_and_print(
        args.only,
        args.backend,
        args.uvloop,
        args.repeat,
        args.scale,
        args.json,
        gc_freeze=args.gc_freeze,
    )


def run_and_print(
    only: str,
    backend: str,
    uvloop: bool,
    repeat: int,
    scale: float,
    json_path: str | None,
    *,
    gc_freeze: bool = False,
) -> dict[str, Any]:
    """Run the suite with progress on stderr, print the table, write the JSON; return the report.

    Raises:
        ValueError: An unknown workload.
    """
    selected = [k.strip().upper() for k in only.split(",") if k.strip()]
    report = run_suite(
        selected,
        backend=backend,
        uvloop=uvloop,
        repeat=repeat,
        scale=scale,
        progress=lambda msg: print(f"... {msg}", file=sys.stderr, flush=True),
        gc_freeze=gc_freeze,
    )
    print(format_table(report))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {json_path}")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
