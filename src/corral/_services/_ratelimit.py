"""A rate limiter shared by any number of actors: request and token buckets,
a concurrency cap, first come first served."""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import attrs

from .._core._checks import check_finite_positive
from .._core._clock import Clock, LoopClock
from ._buckets import refill, wait_for
from ._exceptions import RateLimitRefused

__all__ = ["RateLimiter", "RateLimiterStatus"]

_EPSILON = 1e-9
_SHARED = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@attrs.frozen(kw_only=True)
class RateLimiterStatus:
    """A snapshot of a :class:`RateLimiter`."""

    #: Calls waiting for admission (requests/tokens), and for a concurrency slot.
    waiting: int
    waiting_for_slot: int
    #: Concurrency slots in use.
    in_use: int
    #: Seconds left of a pause a 429 asked for (0 when not paused).
    paused_for: float
    #: Requests and tokens available now (``None`` when not limited).
    requests_available: float | None
    tokens_available: float | None
    #: The name it is shared across a cluster under (``None``: this process's alone).
    shared: str | None = None
    #: The part of the limit this process may use now (1.0 unless shared).
    share: float = 1.0


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()


class RateLimiter:
    """Admits calls at a provider's pace: requests and tokens per interval, and concurrency.

    Requests and tokens are token buckets that refill continuously (no fixed
    windows): a bucket holding *burst* refills at ``limit / per`` a second,
    so over any window of *per* seconds at most ``limit + burst`` are
    admitted. Calls wait in arrival order (first come, first served); one
    whose token estimate exceeds the token bucket can never fit and is
    refused at once with :class:`RateLimitRefused`. :meth:`pause` (a 429
    with ``Retry-After``) holds every waiting call for that long, so sibling
    calls stop hammering the provider. Share one limiter between the actors
    that use one API key.

    A limit shared by several processes (the nodes of a :class:`corral.Cluster`
    that call one provider with one key) is declared with *shared*: every
    node that runs an actor using a limiter of that name takes its part of
    the limit (requests, tokens, bursts and concurrency divided by the nodes
    using it, recomputed as nodes join and leave), and a 429 ``Retry-After``
    seen by one node pauses them all. Outside a cluster a shared limiter is
    an ordinary one.

    Args:
        requests: Requests admitted per *per* seconds.
        tokens: Tokens (LLM tokens, or any unit calls estimate) per *per* seconds.
        per: The interval, seconds (default 60).
        burst: Request bucket size (default 1: evenly spaced).
        token_burst: Token bucket size (default *tokens*: one interval's worth).
        max_concurrency: Calls in progress at once, across all actors sharing it.
        clock: The :class:`corral.Clock` to read and sleep on (tests use a
            :class:`corral.testing.ManualClock`).
        shared: The name the limit is shared under across a cluster's
            nodes (letters, digits, ``.``, ``-``, ``_``; e.g. the key's name,
            ``"openai-key-1"``).

    Raises:
        ValueError: A rate, interval or size is zero, negative or not finite,
            or nothing is limited at all.
    """

    def __init__(
        self,
        *,
        requests: float | None = None,
        tokens: float | None = None,
        per: float = 60.0,
        burst: float | None = None,
        token_burst: float | None = None,
        max_concurrency: int | None = None,
        clock: Clock | None = None,
        shared: str | None = None,
    ) -> None:
        check_finite_positive(requests, "requests")
        check_finite_positive(tokens, "tokens")
        check_finite_positive(per, "per")
        check_finite_positive(burst, "burst")
        check_finite_positive(token_burst, "token_burst")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        if requests is None and tokens is None and max_concurrency is None:
            raise ValueError("a RateLimiter needs requests=, tokens= or max_concurrency=")
        if burst is not None and requests is None:
            raise ValueError("burst= sizes the request bucket: give requests= too")
        if token_burst is not None and tokens is None:
            raise ValueError("token_burst= sizes the token bucket: give tokens= too")
        if shared is not None and (not isinstance(shared, str) or not _SHARED.fullmatch(shared)):
            raise ValueError(
                f"shared must be a name of 1-64 letters, digits, '.', '-' or '_', got {shared!r}"
            )
        self.shared = shared
        self.requests = requests
        self.tokens = tokens
        self.per = float(per)
        self.max_concurrency = max_concurrency
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._full_req_capacity = float(burst) if burst is not None else 1.0
        self._full_tok_capacity = float(token_burst if token_burst is not None else tokens or 0)
        self._req_capacity = self._full_req_capacity
        self._tok_capacity = self._full_tok_capacity
        self._req_rate = (requests or 0) / self.per
        self._tok_rate = (tokens or 0) / self.per
        self._req_level = self._req_capacity
        self._tok_level = self._tok_capacity
        self._share = 1.0
        self._concurrency = max_concurrency
        #: The head of the line's sleep, cut short when the share grows.
        self._sleep: anyio.CancelScope | None = None
        self._pause_listeners: list[Callable[[float], None]] = []
        self._updated: float | None = None
        self._paused_until = -math.inf
        self._queue: deque[_Waiter] = deque()
        self._in_use = 0
        self._slot_waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        parts = []
        if self.requests is not None:
            parts.append(f"requests={self.requests:g}")
        if self.tokens is not None:
            parts.append(f"tokens={self.tokens:g}")
        if self.max_concurrency is not None:
            parts.append(f"max_concurrency={self.max_concurrency}")
        return f"<corral.RateLimiter {' '.join(parts)} per={self.per:g}s>"

    @property
    def counts_tokens(self) -> bool:
        """Whether calls must estimate their tokens."""
        return self.tokens is not None

    # --- buckets ---------------------------------------------------------------------

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
            return
        self._req_level = refill(
            self._req_level, self._updated, now, self._req_capacity, self._req_rate
        )
        self._tok_level = refill(
            self._tok_level, self._updated, now, self._tok_capacity, self._tok_rate
        )
        self._updated = max(self._updated, now)

    def _wait_needed(self, tokens: float, now: float) -> float:
        self._refill(now)
        wait = max(0.0, self._paused_until - now)
        if self.requests is not None:
            wait = max(wait, wait_for(self._req_level, 1.0, self._req_rate))
        if self.tokens is not None and tokens > 0:
            wait = max(wait, wait_for(self._tok_level, tokens, self._tok_rate))
        return wait

    def check(self, tokens: float) -> None:
        """Refuse at once a call that could never be admitted.

        Raises:
            RateLimitRefused: *tokens* exceeds the token bucket.
        """
        if self.tokens is not None and tokens > self._tok_capacity:
            raise RateLimitRefused(
                f"a call estimated at {tokens:g} tokens can never fit a token bucket of "
                f"{self._tok_capacity:g} (tokens={self.tokens:g} per {self.per:g}s); "
                "raise token_burst or split the call"
            )

    async def admit(self, tokens: float = 0.0) -> float:
        """Wait, in arrival order, until a request (and *tokens*) may go; take them.

        Returns the seconds waited. Cancelling the wait gives the place up
        and takes nothing.

        Raises:
            RateLimitRefused: *tokens* exceeds the token bucket.
        """
        self.check(tokens)
        clock = self.clock
        started = clock.now()
        me = _Waiter()
        queue = self._queue
        queue.append(me)
        try:
            if queue[0] is not me:
                await me.event.wait()
            while True:
                now = clock.now()
                wait = self._wait_needed(tokens, now)
                # Float rounding can leave a wait too small to move any
                # clock; it counts as none rather than a wait forever.
                if wait <= _EPSILON:
                    if self.requests is not None:
                        self._req_level -= 1.0
                    if self.tokens is not None:
                        self._tok_level -= tokens
                    return now - started
                # Only the head of the line sleeps; it looks again on waking,
                # because a pause may have been added meanwhile (and a
                # larger share wakes it early).
                with anyio.CancelScope() as self._sleep:
                    await clock.sleep_until(now + wait)
                self._sleep = None
        finally:
            if queue and queue[0] is me:
                queue.popleft()
                if queue:
                    queue[0].event.set()
            else:
                try:
                    queue.remove(me)
                except ValueError:
                    pass

    def adjust(self, estimated: float, actual: float) -> None:
        """Correct the token bucket once a call reports what it really used.

        Unused tokens go back; tokens used beyond the estimate are owed and
        delay later calls.
        """
        if self.tokens is None:
            return
        self._refill(self.clock.now())
        self._tok_level = min(self._tok_capacity, self._tok_level + (estimated - actual))

    def pause(self, seconds: float, *, tell: bool = True) -> None:
        """Admit nothing for *seconds* (a provider's 429 ``Retry-After``), for every caller.

        A shared limiter also tells the other nodes sharing it (*tell*:
        ``False`` when the pause came from one of them).
        """
        if not seconds > 0 or math.isinf(seconds):
            return
        self._paused_until = max(self._paused_until, self.clock.now() + seconds)
        if tell:
            for listener in list(self._pause_listeners):
                listener(seconds)

    # --- sharing across processes ----------------------------------------------------

    @property
    def share(self) -> float:
        """The part of the limit this process uses (1.0 unless a cluster set it)."""
        return self._share

    def set_share(self, share: float) -> None:
        """Use *share* (0 to 1) of the limit: rates, bucket sizes and concurrency scaled.

        What the cluster calls as the nodes sharing the limiter come and go.
        A bucket's level is kept (never raised), and cut to the new size
        when that is smaller, so a change never admits more than the sizes
        allow. A share of 0 admits nothing until it grows.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"a share is between 0 and 1, got {share!r}")
        self._refill(self.clock.now())
        self._share = share
        self._req_capacity = self._full_req_capacity * share
        self._tok_capacity = self._full_tok_capacity * share
        self._req_rate = (self.requests or 0) / self.per * share
        self._tok_rate = (self.tokens or 0) / self.per * share
        self._req_level = min(self._req_level, self._req_capacity)
        self._tok_level = min(self._tok_level, self._tok_capacity)
        if self.max_concurrency is not None:
            # At least one slot each, or a node would never call at all.
            self._concurrency = max(1, math.floor(self.max_concurrency * share + _EPSILON))
            while self._slot_waiters and self._in_use < self._concurrency:
                self._in_use += 1
                self._slot_waiters.popleft().event.set()
        if self._sleep is not None:
            self._sleep.cancel()

    def empty(self) -> None:
        """Empty the buckets (a node that starts sharing begins without a burst of its own)."""
        self._refill(self.clock.now())
        self._req_level = min(self._req_level, 0.0)
        self._tok_level = min(self._tok_level, 0.0)

    def on_pause(self, listener: Callable[[float], None]) -> Callable[[], None]:
        """Call *listener* with the seconds of every pause this process asks for.

        Returns a function that removes it. The cluster broadcasts a shared
        limiter's pauses this way.
        """
        self._pause_listeners.append(listener)
        return lambda: self._pause_listeners.remove(listener)

    # --- concurrency -----------------------------------------------------------------

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one of the *max_concurrency* slots (first come, first served).

        Yields the seconds waited. Without a concurrency cap it is free.
        """
        if self._concurrency is None:
            yield 0.0
            return
        started = self.clock.now()
        if self._in_use >= self._concurrency or self._slot_waiters:
            me = _Waiter()
            self._slot_waiters.append(me)
            try:
                await me.event.wait()
            except BaseException:
                if me.event.is_set():
                    self._release()  # the slot was handed over; hand it on
                else:
                    self._slot_waiters.remove(me)
                raise
        else:
            self._in_use += 1
        try:
            yield self.clock.now() - started
        finally:
            self._release()

    def _release(self) -> None:
        if self._slot_waiters and self._in_use <= (self._concurrency or 0):
            # Hand the slot straight to the next in line.
            self._slot_waiters.popleft().event.set()
        else:
            self._in_use -= 1

    def status(self) -> RateLimiterStatus:
        """Return a snapshot: who waits, slots in use, pause, what is available."""
        now = self.clock.now()
        self._refill(now)
        return RateLimiterStatus(
            waiting=len(self._queue),
            waiting_for_slot=len(self._slot_waiters),
            in_use=self._in_use,
            paused_for=max(0.0, self._paused_until - now),
            requests_available=self._req_level if self.requests is not None else None,
            tokens_available=self._tok_level if self.tokens is not None else None,
            shared=self.shared,
            share=self._share,
        )
