"""The circuit breaker: closed, open, half-open — transitions over a clock value."""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Callable

import attrs

from .._core._clock import Clock, LoopClock
from ._exceptions import CircuitOpen, HttpStatusError, TransportError

__all__ = ["BreakerState", "BreakerStatus", "CircuitBreaker"]

logger = logging.getLogger("corral")


class BreakerState(enum.Enum):
    """State of a :class:`CircuitBreaker`."""

    #: Calls go through; failures are counted.
    CLOSED = "closed"
    #: Calls fail fast with :class:`corral.CircuitOpen` until the cool-down ends.
    OPEN = "open"
    #: One probe call goes through; its outcome closes or reopens the circuit.
    HALF_OPEN = "half_open"


@attrs.frozen(kw_only=True)
class BreakerStatus:
    """A snapshot of a :class:`CircuitBreaker`."""

    state: BreakerState
    consecutive_failures: int
    #: How often the circuit opened, and closed again.
    opened: int
    closed: int
    #: Seconds until an open circuit lets a probe through.
    retry_in: float


def _default_counts(exc: BaseException) -> bool:
    # Failures of the service, not of the request: 5xx, 429, transport.
    if isinstance(exc, HttpStatusError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, TransportError)


class CircuitBreaker:
    """Stops calling a service that keeps failing, and tries it again later.

    It opens after *failure_threshold* consecutive failures, or, with
    *failure_ratio*, when that share of the last *window* calls failed (once
    at least *window* calls were seen). While open, calls fail fast with
    :class:`corral.CircuitOpen`. After *cooldown* seconds one probe call goes
    through (half-open): its success closes the circuit, its failure opens it
    again. What counts as a failure: 5xx, 429 and transport errors by default
    (*counts* to change it); other errors are the request's fault and count
    as successes of the service. Each change of state is logged on the
    ``corral`` logger and reported to *on_change* (the tracing layer records
    it as a span event and a metric).

    Share one breaker between actors that call the same service.

    Raises:
        ValueError: A threshold, ratio, window or cool-down out of range.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        failure_ratio: float | None = None,
        window: int = 20,
        cooldown: float = 30.0,
        counts: Callable[[BaseException], bool] = _default_counts,
        clock: Clock | None = None,
        name: str = "circuit",
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise TypeError(f"failure_threshold must be an int, got {failure_threshold!r}")
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if failure_ratio is not None and not (0 < failure_ratio <= 1):
            raise ValueError(f"failure_ratio must be in (0, 1], got {failure_ratio!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        if not (cooldown > 0) or math.isinf(cooldown):
            raise ValueError(f"cooldown must be finite and > 0 seconds, got {cooldown!r}")
        self.failure_threshold = failure_threshold
        self.failure_ratio = failure_ratio
        self.window = window
        self.cooldown = float(cooldown)
        self.counts = counts
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.name = name
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._recent: deque[bool] = deque(maxlen=window)
        self._opened_at = -math.inf
        self._probing = False
        self._opened = 0
        self._closed = 0
        #: Called with (breaker, old state, new state) on every change.
        self.on_change: list[Callable[[CircuitBreaker, BreakerState, BreakerState], object]] = []

    def __repr__(self) -> str:
        return f"<corral.CircuitBreaker {self.name!r} {self.state.value}>"

    def _move(self, new: BreakerState) -> None:
        old = self.state
        if old is new:
            return
        self.state = new
        if new is BreakerState.OPEN:
            self._opened += 1
            self._opened_at = self.clock.now()
            logger.warning("circuit %r opened: calls fail fast for %gs", self.name, self.cooldown)
        elif new is BreakerState.CLOSED:
            self._closed += 1
            self._consecutive = 0
            self._recent.clear()
            logger.warning("circuit %r closed: the service answers again", self.name)
        else:
            logger.info("circuit %r half-open: one probe goes through", self.name)
        for callback in list(self.on_change):
            try:
                callback(self, old, new)
            except Exception:
                logger.exception("on_change callback of circuit %r raised", self.name)

    def before_call(self) -> None:
        """Let a call through, or fail it fast.

        Raises:
            CircuitOpen: The circuit is open (or half-open with its probe out).
        """
        if self.state is BreakerState.CLOSED:
            return
        now = self.clock.now()
        if self.state is BreakerState.OPEN:
            left = self._opened_at + self.cooldown - now
            if left > 0:
                raise CircuitOpen(
                    f"circuit {self.name!r} is open; next probe in {left:.3g}s", retry_in=left
                )
            self._move(BreakerState.HALF_OPEN)
        if self._probing:
            raise CircuitOpen(f"circuit {self.name!r} is half-open and its probe is out")
        self._probing = True

    def on_success(self) -> None:
        """Record that a call let through succeeded (or failed by its own fault)."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
            self._move(BreakerState.CLOSED)
            return
        self._consecutive = 0
        self._recent.append(True)

    def on_failure(self, exc: BaseException) -> None:
        """Record the outcome of a call let through that raised *exc*."""
        if not self.counts(exc):
            self.on_success()
            return
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False
            self._move(BreakerState.OPEN)
            return
        self._consecutive += 1
        self._recent.append(False)
        if self._consecutive >= self.failure_threshold:
            self._move(BreakerState.OPEN)
        elif self.failure_ratio is not None and len(self._recent) == self.window:
            failed = self._recent.count(False) / self.window
            if failed >= self.failure_ratio:
                self._move(BreakerState.OPEN)

    def on_abandon(self) -> None:
        """A call let through ended without an outcome (cancelled): free the probe."""
        if self.state is BreakerState.HALF_OPEN:
            self._probing = False

    def status(self) -> BreakerStatus:
        """Return a snapshot of the breaker."""
        left = 0.0
        if self.state is BreakerState.OPEN:
            left = max(0.0, self._opened_at + self.cooldown - self.clock.now())
        return BreakerStatus(
            state=self.state,
            consecutive_failures=self._consecutive,
            opened=self._opened,
            closed=self._closed,
            retry_in=left,
        )
