"""``corral status``: a cluster's nodes and actors, live, once, or as JSON."""

from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from .._extras import need
from . import CommandError

if TYPE_CHECKING:
    from .._cluster._members import ActorReport
    from .._cluster._status import ClusterStatus

__all__ = ["render_text", "status"]

#: (title, what a row shows) of the table's columns after actor and node.
_COLUMNS = (
    "stream",
    "queue",
    "run",
    "ok/s",
    "fail/s",
    "ok",
    "fail",
    "retry",
    "restart",
    "limiter",
    "circuit",
)
#: Joins and leaves shown under the live table.
_EVENTS_SHOWN = 6


def status(args: argparse.Namespace) -> int:
    """Show the cluster ``corral status`` names; see ``corral status --help``."""
    need("nats", "cluster", "corral status")
    if not args.interval > 0:
        raise CommandError(f"--interval must be > 0, got {args.interval}")
    for url in args.nats:
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise CommandError(f"--nats takes nats://HOST:PORT URLs, got {url!r}")
    return anyio.run(_show, args, backend="asyncio")


async def _show(args: argparse.Namespace) -> int:
    from .._cluster._exceptions import ClusterUnavailable
    from .._cluster._status import StatusReader, dumps

    try:
        async with StatusReader(args.nats, args.cluster) as reader:
            if args.json or args.once:
                snapshot = await reader.snapshot()
                print(dumps(snapshot) if args.json else render_text(snapshot), flush=True)
                return 0
            await _watch(reader, args.interval, sys.stdout)
    except ClusterUnavailable as exc:
        raise CommandError(str(exc)) from None
    return 0


async def _watch(reader: Any, interval: float, out: TextIO) -> None:
    """Redraw the table every *interval* (a terminal), or print it and each join and leave."""
    from .._cluster._exceptions import ClusterUnavailable

    live = None
    if out.isatty():
        try:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text
        except ModuleNotFoundError:
            pass  # without the cli extra: plain lines
        else:
            live = Live(console=Console(file=out), auto_refresh=False)
    events: collections.deque[str] = collections.deque(maxlen=_EVENTS_SHOWN)
    known: set[str] | None = None
    if live is not None:
        live.__enter__()
    try:
        while True:
            stamp = time.strftime("%H:%M:%S")
            try:
                snapshot = await reader.snapshot(wait=min(1.0, interval))
            except ClusterUnavailable as exc:
                text = f"{stamp} {exc} (trying again)"
                new = [text]
                snapshot = None
            else:
                names = {n.node for n in snapshot.nodes}
                new = []
                if known is not None:
                    new += [f"{stamp} node {n!r} joined" for n in sorted(names - known)]
                    new += [f"{stamp} node {n!r} left" for n in sorted(known - names)]
                known = names
            events.extend(new)
            if live is not None:
                body = "" if snapshot is None else render_text(snapshot)
                live.update(Text("\n".join([body, "", *events])), refresh=True)
            else:
                for line in new:
                    print(line, file=out)
                if snapshot is not None:
                    print(render_text(snapshot), file=out)
                    print(file=out, flush=True)
            await anyio.sleep(interval)
    finally:
        if live is not None:
            live.__exit__(None, None, None)


def render_text(snapshot: ClusterStatus) -> str:
    """*snapshot* as a table a person reads: a row per actor and node, totals, the nodes."""
    data = snapshot.to_json()
    totals = data["totals"]
    taken = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
    header = (
        f"cluster {snapshot.cluster!r} at {taken}: "
        f"{len(snapshot.nodes)} node{'s' if len(snapshot.nodes) != 1 else ''}, "
        f"{totals['succeeded']} succeeded, {totals['failed'] + totals['expired']} failed, "
        f"{totals['succeeded_per_s']:.1f}/s ok, {totals['failed_per_s']:.1f}/s failed, "
        f"{totals['stream_waiting']} waiting in the stream"
    )
    rows: list[list[str]] = [["actor", "node", *_COLUMNS]]
    for name in snapshot.actors():
        per_node = snapshot.rows(name)
        depth = snapshot.stream.get(name)
        stream = "-" if depth is None else str(depth.waiting)
        for i, (node, actor) in enumerate(per_node):
            stale = " (stale)" if node in snapshot.stale else ""
            rows.append(
                [name if i == 0 else "", node + stale, stream if i == 0 else "", *_cells(actor)]
            )
        if len(per_node) > 1:
            total = next(a for a in data["actors"] if a["actor"] == name)["totals"]
            rows.append(["", "total", stream, *_total_cells(total)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [header, ""]
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(width) if i < 2 or i >= 11 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    now = time.time()
    nodes = ", ".join(
        f"{n.node} ({n.host}, pid {n.pid}, up {_age(now - n.started_at)})" for n in snapshot.nodes
    )
    lines += ["", f"nodes: {nodes or 'none'}"]
    return "\n".join(lines)


def _cells(actor: ActorReport) -> list[str]:
    return [
        str(actor.queued),
        str(actor.running),
        f"{actor.succeeded_per_s:.1f}",
        f"{actor.failed_per_s:.1f}",
        str(actor.succeeded),
        str(actor.failed + actor.expired),
        str(actor.retries),
        str(actor.restarts),
        _limiter(actor),
        actor.circuit or "-",
    ]


def _total_cells(total: dict[str, Any]) -> list[str]:
    return [
        str(total["queued"]),
        str(total["running"]),
        f"{total['succeeded_per_s']:.1f}",
        f"{total['failed_per_s']:.1f}",
        str(total["succeeded"]),
        str(total["failed"] + total["expired"]),
        str(total["retries"]),
        str(total["restarts"]),
        "",
        "",
    ]


def _limiter(actor: ActorReport) -> str:
    limiter = actor.limiter
    if limiter is None:
        return "-"
    if limiter.paused_for > 0:
        return f"paused {limiter.paused_for:.1f}s"
    if limiter.waiting:
        return f"{limiter.waiting} waiting"
    return "ok"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
