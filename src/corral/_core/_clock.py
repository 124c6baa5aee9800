"""Clocks for time-based policies: restart intensity, backoff, rate limits.

Call deadlines use the event loop's own clock (they are cancel scope
deadlines). Policies that count and wait use a :class:`Clock`, so tests can
drive them with a :class:`ManualClock` on any backend instead of waiting.
"""

from __future__ import annotations

import heapq
import itertools
import math

import anyio

__all__ = ["Clock", "LoopClock", "ManualClock"]


class Clock:
    """What a time-based policy needs: the time, and a way to sleep until a time.

    Subclass it to drive policies from another time source.
    """

    def now(self) -> float:
        """Return the current time in seconds (any fixed origin)."""
        raise NotImplementedError

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until :meth:`now` reaches *deadline* (return at once if it has)."""
        raise NotImplementedError


class LoopClock(Clock):
    """The event loop's clock (:func:`anyio.current_time`); the default."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)

    def __repr__(self) -> str:
        return "LoopClock()"


class ManualClock(Clock):
    """A clock that moves only when told to, for deterministic tests.

    ``await clock.advance(5.0)`` moves time forward and wakes every sleeper
    whose deadline it passed, in deadline order; nothing happens in real time.
    Works on every anyio backend.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now})"

    def now(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return sum(1 for _, _, event in self._sleepers if not event.is_set())

    def next_deadline(self) -> float | None:
        """The earliest deadline a task sleeps until, or ``None``."""
        for deadline, _, event in sorted(self._sleepers):
            if not event.is_set():
                return deadline
        return None

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), event))
        await event.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward by *seconds*, waking the sleepers it passes, and let them run."""
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"seconds must be finite and >= 0, got {seconds!r}")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            event.set()
            await anyio.wait_all_tasks_blocked()
        self._now = target
        await anyio.wait_all_tasks_blocked()
