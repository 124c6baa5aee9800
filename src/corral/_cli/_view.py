"""What ``corral demo`` shows as it runs: a live table on a terminal, else progress lines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TextIO

import attrs

__all__ = ["ActorRow", "Columns", "Snapshot", "View", "render"]

#: The live table's count columns: (title, ActorRow field).
_COUNTS = (
    ("queue", "queued"),
    ("run", "running"),
    ("ok", "ok"),
    ("fail", "failed"),
    ("retry", "retries"),
    ("restart", "restarts"),
)
#: Widest state of the circuit breaker (``half_open``).
_CIRCUIT = 9
_BAR = 50


@attrs.frozen(kw_only=True)
class ActorRow:
    """One actor's counts."""

    actor: str
    queued: int
    running: int
    ok: int
    failed: int
    retries: int
    restarts: int


@attrs.frozen(kw_only=True)
class Snapshot:
    """The demo at one moment: its actors, the shared rate limiter and circuit, progress."""

    rows: Sequence[ActorRow]
    #: Calls waiting for the rate limiter, and how long it is paused for (a 429).
    waiting: int
    paused_for: float
    circuit: str
    done: int
    total: int


@attrs.frozen(kw_only=True)
class Columns:
    """Widths fixed for the whole run, so the table does not change shape as counts grow."""

    actor: int
    count: int

    @classmethod
    def for_run(cls, actors: Sequence[str], calls: int, max_attempts: int) -> Columns:
        """Room for the largest count the run can reach: every retry of every call."""
        return cls(
            actor=max(len("actor"), *(len(a) for a in actors)),
            count=len(str(calls * max(1, max_attempts))),
        )


def render(snapshot: Snapshot, columns: Columns, width: int | None = None) -> Any:
    """The live view of *snapshot* (a rich renderable), as wide at the end as at the start."""
    from rich import box
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    table = Table(title="corral demo", box=box.SIMPLE_HEAD, expand=False, title_justify="left")
    table.add_column("actor", width=columns.actor, no_wrap=True)
    for title, _ in _COUNTS:
        table.add_column(title, justify="right", width=max(len(title), columns.count))
    for row in snapshot.rows:
        table.add_row(row.actor, *(str(getattr(row, field)) for _, field in _COUNTS))
    count = columns.count
    paused = f", paused {snapshot.paused_for:4.1f}s" if snapshot.paused_for else ""
    shared = (
        f"rate limiter: {snapshot.waiting:>{count}} waiting{paused:<15}  "
        f"circuit: {snapshot.circuit:<{_CIRCUIT}}"
    )
    done = f"{snapshot.done:>{len(str(snapshot.total))}}/{snapshot.total} calls done"
    bar_width = _BAR if width is None else max(10, min(_BAR, width - len(done) - 2))
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=snapshot.total, completed=snapshot.done, width=bar_width), done
    )
    return Group(table, shared, progress)


class View:
    """The live view (rich) on a terminal, plain progress lines otherwise."""

    def __init__(self, out: TextIO, live: bool, columns: Columns, width: int | None = None) -> None:
        self.out = out
        self.live = live
        self.columns = columns
        self.width = width
        self._last_line = 0.0
        self._live: Any = None

    def __enter__(self) -> View:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out, width=self.width)
            self._live = Live(console=console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, snapshot: Snapshot, final: bool = False) -> None:
        """Show *snapshot*: redraw the live view, or print a line at most once a second."""
        if self._live is not None:
            self._live.update(render(snapshot, self.columns, self.width))
            return
        now = time.monotonic()
        if not final and now - self._last_line < 1.0:
            return
        self._last_line = now
        parts = " | ".join(
            f"{r.actor} q={r.queued} run={r.running} ok={r.ok} "
            f"fail={r.failed} retry={r.retries} restart={r.restarts}"
            for r in snapshot.rows
        )
        print(f"progress {snapshot.done}/{snapshot.total} | {parts}", file=self.out, flush=True)
