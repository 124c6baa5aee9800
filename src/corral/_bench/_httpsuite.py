"""The HTTP workloads (W8, W8L, W8E, W8EL, W8T, W8S, W8X): clients side by side, one server.

Each workload runs several clients in the same run, against the benchmark
server (:mod:`._server`) in a process of its own: the floors (raw aiohttp
and raw httpx), corral's actors, and for W8X other transports. Every row's
throughput is divided by each floor's, run by run, and the median printed,
as the rest of the suite does; "overhead" is the row's wall time per call
minus the floor's (µs), run by run.

Before the workloads, the server's capacity is measured (raw aiohttp, 256
in flight, its CPU time read from ``/proc``); ratios are withheld, and the
reason printed, when that capacity is under twice the fastest client of
the run: then the server, not the client, could be what was measured.
"""

from __future__ import annotations

import gc
import importlib.util
import math
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import attrs

from . import _http as h
from ._server import ServerProcess, missing_modules
from ._workloads import Result

#: Seconds the server waits before each reply.
LATENCY: Final = 0.005
#: The server's capacity must be at least this many times the fastest client.
HEADROOM: Final = 2.0
CAPACITY_CALLS: Final = 20_000
FLOORS: Final = ("aiohttp", "httpx")


@attrs.frozen
class Client:
    """One client of an HTTP workload."""

    key: str
    label: str
    run: Callable[[str, int], Awaitable[Result]]
    #: aiohttp and its transport run on asyncio only.
    asyncio_only: bool = False
    #: An optional module the client needs (beyond the bench extra's).
    needs: str | None = None


@attrs.frozen
class Target:
    """What issue 11 asks of corral's row: *metric* against *floor*, on *backend*."""

    client: str
    metric: str
    floor: str
    better: str
    value: float
    backend: str


@attrs.frozen
class HttpWorkload:
    """An HTTP workload: its clients, in the order they first run."""

    key: str
    title: str
    calls: int
    clients: tuple[Client, ...]
    targets: tuple[Target, ...] = ()


_AIOHTTP_OPEN = Client("aiohttp", "raw aiohttp", h.aiohttp_open, asyncio_only=True)
_HTTPX_OPEN = Client("httpx", "raw httpx", h.httpx_open)


def _throughput_targets(clients: Sequence[str] = ("corral", "corral-http")) -> tuple[Target, ...]:
    return tuple(
        target
        for client in clients
        for target in (
            Target(client, "per_s", "aiohttp", "higher", 0.7, "asyncio"),
            Target(client, "per_s", "httpx", "higher", 1.0, "trio"),
        )
    )


def _latency_targets(clients: Sequence[str] = ("corral", "corral-http")) -> tuple[Target, ...]:
    return tuple(
        Target(client, metric, "aiohttp", "lower", 1.5, "asyncio")
        for client in clients
        for metric in ("p50_us", "p99_us")
    )


HTTP_WORKLOADS: Final = (
    HttpWorkload(
        "W8",
        "open loop: 10,000 chat calls, all submitted, 64 in flight",
        10_000,
        (
            _AIOHTTP_OPEN,
            _HTTPX_OPEN,
            Client("corral", "corral OpenAIChat", h.corral_open),
            Client("corral-http", "corral HttpService", h.corral_http_open),
            Client(
                "corral-httpx",
                "corral OpenAIChat, http_client=httpx",
                h.corral_httpx_open,
                asyncio_only=True,
            ),
            Client(
                "corral-ha",
                "corral OpenAIChat, httpx-aiohttp",
                h.corral_aiohttp_open,
                asyncio_only=True,
                needs="httpx_aiohttp",
            ),
        ),
        _throughput_targets(),
    ),
    HttpWorkload(
        "W8L",
        "closed loop: 64 callers, each asking again when answered, 10,000 calls",
        10_000,
        (
            Client("aiohttp", "raw aiohttp", h.aiohttp_closed, asyncio_only=True),
            Client("httpx", "raw httpx", h.httpx_closed),
            Client("corral", "corral OpenAIChat", h.corral_closed),
            Client("corral-http", "corral HttpService", h.corral_http_closed),
            Client(
                "corral-httpx",
                "corral OpenAIChat, http_client=httpx",
                h.corral_httpx_closed,
                asyncio_only=True,
            ),
            Client(
                "corral-ha",
                "corral OpenAIChat, httpx-aiohttp",
                h.corral_aiohttp_closed,
                asyncio_only=True,
                needs="httpx_aiohttp",
            ),
        ),
        (*_throughput_targets(), *_latency_targets()),
    ),
    HttpWorkload(
        "W8E",
        "open loop: 10,000 embeddings calls (one input each), all submitted, 64 in flight",
        10_000,
        (
            Client("aiohttp", "raw aiohttp", h.aiohttp_embed_open, asyncio_only=True),
            Client("httpx", "raw httpx", h.httpx_embed_open),
            Client("corral", "corral OpenAIEmbeddings", h.corral_embed_open),
        ),
        _throughput_targets(("corral",)),
    ),
    HttpWorkload(
        "W8EL",
        "closed loop: 64 callers asking for embeddings, 10,000 calls",
        10_000,
        (
            Client("aiohttp", "raw aiohttp", h.aiohttp_embed_closed, asyncio_only=True),
            Client("httpx", "raw httpx", h.httpx_embed_closed),
            Client("corral", "corral OpenAIEmbeddings", h.corral_embed_closed),
        ),
        (*_throughput_targets(("corral",)), *_latency_targets(("corral",))),
    ),
    HttpWorkload(
        "W8T",
        "W8 traced: SDK provider, always on, batch processor, dropping exporter",
        10_000,
        (_AIOHTTP_OPEN, _HTTPX_OPEN, Client("corral", "corral OpenAIChat, traced", h.traced_open)),
    ),
    HttpWorkload(
        "W8S",
        "W8 with the parent-based 1 % ratio sampler",
        10_000,
        (
            _AIOHTTP_OPEN,
            _HTTPX_OPEN,
            Client("corral", "corral OpenAIChat, 1 % sampled", h.sampled_open),
        ),
    ),
    HttpWorkload(
        "W8X",
        "transports, raw (no corral): open loop, 10,000 chat calls, 64 in flight",
        10_000,
        (
            _AIOHTTP_OPEN,
            _HTTPX_OPEN,
            Client("httpx-keep20", "raw httpx, 20 kept alive", h.httpx_keep20_open),
            Client(
                "httpx-aiohttp",
                "httpx over httpx-aiohttp",
                h.httpx_aiohttp_open,
                asyncio_only=True,
                needs="httpx_aiohttp",
            ),
        ),
    ),
)
HTTP_KEYS: Final = tuple(wl.key for wl in HTTP_WORKLOADS)


def skip_message(keys: Sequence[str]) -> str | None:
    """The one line printed instead of *keys* when the bench extra is missing, else None."""
    missing = missing_modules()
    if not missing:
        return None
    return (
        f"skipped {', '.join(keys)}: they need the bench extra ({', '.join(missing)} "
        "not installed): pip install -e '.[bench]'"
    )


def _unavailable(client: Client, backend: str) -> str | None:
    if client.asyncio_only and backend != "asyncio":
        return f"asyncio only, not on {backend}"
    if client.needs is not None and importlib.util.find_spec(client.needs) is None:
        return f"{client.needs.replace('_', '-')} is not installed"
    return None


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _scaled(n: int, scale: float, least: int) -> int:
    return max(least, round(n * scale))


def _run_one(
    server: ServerProcess,
    fn: Callable[[str, int], Awaitable[Result]],
    count: int,
    backend: str,
    uvloop: bool,
    gc_freeze: bool = False,
) -> dict[str, float]:
    options: dict[str, Any] = {"use_uvloop": True} if backend == "asyncio" and uvloop else {}
    if gc_freeze:
        # What was alive before the load (modules, earlier loads' leftovers)
        # is left out of the collector's full scans during it.
        gc.collect()
        gc.freeze()
    cpu = server.cpu_seconds()
    try:
        result = anyio.run(
            lambda: fn(server.base_url, count), backend=backend, backend_options=options
        )
    finally:
        if gc_freeze:
            gc.unfreeze()
    metrics = dict(result.metrics)
    server_us = (server.cpu_seconds() - cpu) / count * 1e6
    metrics["server_cpu_us_per_call"] = server_us
    # The share of a core the server used while this client ran.
    metrics["server_busy"] = server_us * metrics["per_s"] / 1e6
    return metrics


def _capacity(
    server: ServerProcess, repeat: int, scale: float, progress: Callable[[str], None] | None
) -> dict[str, Any]:
    count = _scaled(CAPACITY_CALLS, scale, h.CAPACITY_IN_FLIGHT)
    # The load runs on uvloop where it can: the faster the load, the surer the figure.
    uvloop = importlib.util.find_spec("uvloop") is not None
    runs = []
    for i in range(repeat):
        if progress:
            progress(f"server capacity run {i + 1}/{repeat}")
        runs.append(_run_one(server, h.capacity_load, count, "asyncio", uvloop))
    load = statistics.median(r["per_s"] for r in runs)
    server_us = statistics.median(r["server_cpu_us_per_call"] for r in runs)
    return {
        "in_flight": h.CAPACITY_IN_FLIGHT,
        "calls": count,
        "load_per_s": load,
        "server_cpu_us_per_call": server_us,
        "server_busy": statistics.median(r["server_busy"] for r in runs),
        # What the server serves with a core to itself; the load's own rate
        # where its CPU time cannot be read.
        "capacity_per_s": 1e6 / server_us if server_us > 0 else load,
        "latency_s": LATENCY,
        "loop": server.loop,
        "description": server.description,
    }


def _versus(runs: dict[str, list[dict[str, float]]], key: str, floor: str) -> dict[str, Any]:
    mine, theirs = runs[key], runs[floor]
    figures: dict[str, Any] = {}
    for metric in ("per_s", "p50_us", "p99_us"):
        if metric in mine[0] and metric in theirs[0]:
            figures[metric] = _summary(
                [
                    m[metric] / t[metric] if t[metric] else math.nan
                    for m, t in zip(mine, theirs, strict=True)
                ]
            )
    for metric, name in (("us_per_call", "overhead_us"), ("cpu_us_per_call", "cpu_overhead_us")):
        figures[name] = _summary([m[metric] - t[metric] for m, t in zip(mine, theirs, strict=True)])
    return figures


def run_http(
    keys: Sequence[str],
    *,
    backend: str,
    uvloop: bool,
    repeat: int,
    scale: float,
    progress: Callable[[str], None] | None = None,
    gc_freeze: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the HTTP workloads *keys* against one server; return (server figures, workloads)."""
    selected = [wl for wl in HTTP_WORKLOADS if wl.key in keys]
    workloads: dict[str, Any] = {}
    if progress:
        progress("starting the benchmark server")
    with ServerProcess(LATENCY) as server:
        capacity = _capacity(server, repeat, scale, progress)
        for wl in selected:
            count = _scaled(wl.calls, scale, h.IN_FLIGHT)
            clients = [c for c in wl.clients if _unavailable(c, backend) is None]
            skipped = {c.label: why for c in wl.clients if (why := _unavailable(c, backend))}
            runs: dict[str, list[dict[str, float]]] = {c.key: [] for c in clients}
            for i in range(repeat):
                # Rotate the order, so that warm-up and drift favour no client.
                shift = i % len(clients)
                for client in clients[shift:] + clients[:shift]:
                    if progress:
                        progress(f"{wl.key} {client.key} run {i + 1}/{repeat}")
                    runs[client.key].append(
                        _run_one(server, client.run, count, backend, uvloop, gc_freeze)
                    )
            workloads[wl.key] = {
                "title": wl.title,
                "kind": "http",
                "baseline": "raw aiohttp and raw httpx",
                "calls": count,
                "labels": {c.key: c.label for c in clients},
                "clients": {
                    key: {metric: _summary([r[metric] for r in rs]) for metric in rs[0]}
                    for key, rs in runs.items()
                },
                "versus": {
                    floor: {key: _versus(runs, key, floor) for key in runs if key != floor}
                    for floor in FLOORS
                    if floor in runs
                },
                "skipped_clients": skipped,
                "targets": [attrs.asdict(t) for t in wl.targets if t.backend == backend],
            }
    _verdict(capacity, workloads)
    return capacity, workloads


def _verdict(capacity: dict[str, Any], workloads: dict[str, Any]) -> None:
    # Withhold every ratio when the server may have been the bottleneck.
    fastest, who = 0.0, ""
    for key, data in workloads.items():
        for client, figures in data["clients"].items():
            if figures["per_s"]["median"] > fastest:
                fastest, who = figures["per_s"]["median"], f"{key} {data['labels'][client]}"
    capacity["fastest_per_s"] = fastest
    capacity["fastest"] = who
    enough = capacity["capacity_per_s"] >= HEADROOM * fastest
    capacity["ratios_reported"] = enough
    capacity["why"] = (
        None
        if enough
        else (
            f"the server's capacity ({capacity['capacity_per_s']:,.0f} calls/s) is under "
            f"{HEADROOM:g}x the fastest client ({fastest:,.0f} calls/s, {who}): the server "
            "may be what was measured"
        )
    )
    for data in workloads.values():
        data["withheld"] = capacity["why"]
        if enough:
            data["figures"] = _figures(data)
        else:
            data["figures"], data["versus"] = [], {}


def _figures(data: dict[str, Any]) -> list[dict[str, Any]]:
    # The suite's common shape (floor, corral, ratio), one per target, so
    # that the plot and the JSON readers see the HTTP workloads too.
    figures = []
    for target in data["targets"]:
        versus = data["versus"].get(target["floor"], {}).get(target["client"])
        if versus is None or target["metric"] not in versus:
            continue
        ratio = versus[target["metric"]]
        higher = target["better"] == "higher"
        value = ratio["median"]
        figures.append(
            {
                "metric": f"{target['metric']} {target['client']}/{target['floor']}",
                "better": target["better"],
                "floor": data["clients"][target["floor"]][target["metric"]],
                "corral": data["clients"][target["client"]][target["metric"]],
                "ratio": ratio,
                "target": target["value"],
                "target_on": "ratio",
                "met": value >= target["value"] if higher else value <= target["value"],
            }
        )
    return figures


# --- the table -----------------------------------------------------------------------------


def _n(value: float | None) -> str:
    if value is None or value != value:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _median(figures: dict[str, dict[str, float]], metric: str) -> str:
    fig = figures.get(metric)
    return "" if fig is None else _n(fig["median"])


def _ms(fig: dict[str, float] | None) -> str:
    return "" if fig is None else f"{fig['median'] / 1e3:,.1f}"


def _ratio(fig: dict[str, float] | None, repeat: int) -> str:
    if fig is None:
        return ""
    text = _n(fig["median"])
    return f"{text} ({_n(fig['min'])}-{_n(fig['max'])})" if repeat > 1 else text


def _overhead(fig: dict[str, float] | None) -> str:
    if fig is None:
        return ""
    return f"{fig['median']:+,.0f}"


def format_http(report: dict[str, Any]) -> list[str]:
    """The HTTP workloads' lines of the report table (none if none ran)."""
    server = report.get("server")
    if server is None:
        return []
    repeat = report["repeat"]
    lines = [
        f"HTTP services: the benchmark server ({server.get('description', server['loop'])}) in its "
        f"own process answers after {server['latency_s'] * 1e3:g} ms",
        f"server capacity: raw aiohttp with {server['in_flight']} in flight made "
        f"{_n(server['load_per_s'])} calls/s; the server spent "
        f"{server['server_cpu_us_per_call']:,.0f} µs of CPU per call (busy "
        f"{server['server_busy']:.0%}): {_n(server['capacity_per_s'])} calls/s "
        "on a core of its own",
    ]
    if server["ratios_reported"]:
        lines.append(
            f"fastest client {_n(server['fastest_per_s'])} calls/s ({server['fastest']}): "
            f"the capacity is {server['capacity_per_s'] / server['fastest_per_s']:.1f}x it, "
            f"at least {HEADROOM:g}x: ratios reported"
        )
    else:
        lines.append(f"RATIOS WITHHELD: {server['why']}")
    for key, data in report["workloads"].items():
        if data.get("kind") != "http":
            continue
        lines += ["", f"{key}  {data['title']} ({data['calls']:,} calls)"]
        floors = [f for f in FLOORS if f in data["versus"]]
        header = (
            f"  {'client':<34}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'µs/call':>9}"
            f"{'CPU µs':>9}{'GC µs':>7}{'full GC':>8}{'server':>8}"
        )
        for floor in floors:
            header += f"  {'x ' + floor:<18}{'+µs':>7}"
        lines.append(header)
        for client, figures in data["clients"].items():
            row = (
                f"  {data['labels'][client]:<34}{_n(figures['per_s']['median']):>9}"
                f"{_ms(figures.get('p50_us')):>9}{_ms(figures.get('p99_us')):>9}"
                f"{_n(figures['us_per_call']['median']):>9}"
                f"{_n(figures['cpu_us_per_call']['median']):>9}"
                f"{_median(figures, 'gc_us_per_call'):>7}{_median(figures, 'full_gcs'):>8}"
                f"{figures['server_busy']['median']:>8.0%}"
            )
            for floor in floors:
                versus = data["versus"][floor].get(client)
                shown = data["withheld"] is None and versus is not None
                row += (
                    f"  {_ratio(versus['per_s'], repeat) if shown and versus else '':<18}"
                    f"{_overhead(versus['overhead_us']) if shown and versus else '':>7}"
                )
            lines.append(row.rstrip())
        for client, why in data["skipped_clients"].items():
            lines.append(f"  {client}: not run ({why})")
        for fig in data["figures"]:
            op = ">=" if fig["better"] == "higher" else "<="
            met = "met" if fig["met"] else "NOT met"
            lines.append(
                f"  target {fig['metric']} {op} {_n(fig['target'])}: "
                f"{_n(fig['ratio']['median'])}, {met}"
            )
    lines += [
        "",
        "calls/s; p50/p99 (closed loops): each call's round trip; µs/call: wall, 1e6 / calls/s;",
        "CPU µs: this process's CPU time per call; GC µs: of it, in the garbage collector;",
        "full GC: full (generation 2) collections in the run, each pausing every call in flight;",
        "server: share of a core the server used;",
        "x floor: calls/s over the floor's; +µs: µs/call minus the floor's (corral's overhead).",
    ]
    return lines
