"""ServicePolicy: deadline, circuit breaker, rate limit and retries, in one documented order."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
from opentelemetry import trace

from .._core._calls import Call
from .._core._clock import Clock, LoopClock
from .._core._exceptions import DeadlineExceeded
from .._core._policy import CallPolicy
from ._breaker import BreakerState, CircuitBreaker
from ._exceptions import HttpStatusError, RateLimitRefused
from ._ratelimit import RateLimiter
from ._retry import RetryPolicy, retry_after_of

__all__ = ["ServicePolicy"]

#: Waits shorter than this (seconds) are not worth an event.
_NOTABLE_WAIT = 0.001


class _NoSlot:
    """The slot of a policy without a limiter: free, waits for nothing (one, reused)."""

    async def __aenter__(self) -> float:
        return 0.0

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_SLOT: Final = _NoSlot()


def _check(kind: type | tuple[type, ...], name: str) -> Callable[[Any, Any, Any], None]:
    def validator(_: Any, __: Any, value: Any) -> None:
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind!r} or None, got {value!r}")

    return validator


def _callable_or_none(_: Any, attribute: Any, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name} must be callable or None, got {value!r}")


def _trace_change(breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
    # A state change happens inside a call: mark it on that call's span.
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            f"circuit {new.value}",
            {"corral.circuit": breaker.name, "corral.circuit.from": old.value},
        )


@attrs.frozen(kw_only=True)
class ServicePolicy(CallPolicy):
    """How an actor's calls to an outside service run: retries, rate limit, circuit breaker.

    The layers compose in one order, outermost first:

    1. **deadline** — the call's own, set by the caller (``timeout=``). It
       covers the mailbox, every wait, every attempt and every backoff; no
       layer adds a longer timeout of its own, and HTTP requests get what is
       left of it.
    2. **circuit breaker** — an open circuit fails the call at once
       (:class:`corral.CircuitOpen`); each attempt is let through (or not)
       by it, and reports back.
    3. **rate limit** — a concurrency slot is held for the whole call; each
       attempt is admitted by the request and token buckets (so retries count
       against the provider's rate too). A 429 with ``Retry-After`` pauses
       the limiter for everyone.
    4. **retry loop** — a failed attempt the retry policy accepts is tried
       again after a backoff, unless that backoff would pass the deadline (the
       call then fails with :class:`corral.DeadlineExceeded`, the last error
       chained).
    5. **attempt** — the handler itself.

    Each attempt shows in the pile (status ``RETRYING`` between attempts,
    the attempt number in the envelope) and in traces (one span per attempt).

    Token estimates come from *estimate_tokens* (or the actor's
    ``estimate_tokens(msg)`` method); the reply's real usage from
    *reported_tokens* (or the actor's ``reported_tokens(reply)``), which
    for a streamed call is given the stream's last chunk. A limiter
    that counts tokens with no estimate for a call refuses it
    (:class:`corral.RateLimitRefused`): a configuration error, not a bypass.

    Args:
        retry: The :class:`RetryPolicy`, or ``None`` for no retries.
        rate_limiter: A :class:`RateLimiter`, possibly shared by several actors.
        breaker: A :class:`CircuitBreaker`, possibly shared.
        estimate_tokens: ``f(msg) -> tokens | None``.
        reported_tokens: ``f(reply) -> tokens | None``.
        clock: Clock for backoff sleeps; default the limiter's, else the loop's.
    """

    retry: RetryPolicy | None = attrs.field(
        factory=RetryPolicy, validator=_check(RetryPolicy, "retry")
    )
    rate_limiter: RateLimiter | None = attrs.field(
        default=None, validator=_check(RateLimiter, "rate_limiter")
    )
    breaker: CircuitBreaker | None = attrs.field(
        default=None, validator=_check(CircuitBreaker, "breaker")
    )
    estimate_tokens: Callable[[Any], float | None] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    reported_tokens: Callable[[Any], float | None] | None = attrs.field(
        default=None, validator=_callable_or_none
    )
    clock: Clock | None = attrs.field(default=None, validator=_check(Clock, "clock"))
    random: Callable[[], float] = attrs.field(default=random.random, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.breaker is not None and _trace_change not in self.breaker.on_change:
            self.breaker.on_change.append(_trace_change)

    def _clock(self) -> Clock:
        if self.clock is not None:
            return self.clock
        if self.rate_limiter is not None:
            return self.rate_limiter.clock
        return LoopClock()

    def _estimate(self, call: Call) -> float | None:
        limiter = self.rate_limiter
        if limiter is None or not limiter.counts_tokens:
            return None
        payload = call.envelope.payload
        estimator = self.estimate_tokens or getattr(call.actor, "estimate_tokens", None)
        tokens = estimator(payload) if estimator is not None else None
        if tokens is None:
            raise RateLimitRefused(
                f"the rate limiter of actor {call.actor_name!r} counts tokens, but no token "
                f"estimate could be made for {type(payload).__qualname__}: give the policy "
                "estimate_tokens=, or the actor an estimate_tokens(msg) method"
            )
        limiter.check(tokens)
        return tokens

    def _reported(self, call: Call, reply: Any) -> float | None:
        reporter = self.reported_tokens or getattr(call.actor, "reported_tokens", None)
        if reporter is None:
            return None
        if call.is_stream:
            # A stream's handler returns its chunk count: its last chunk tells.
            reply = call.last_chunk
            if reply is None:
                return None
        return reporter(reply)

    async def run(self, call: Call, attempt: Callable[[], Awaitable[Any]]) -> Any:
        breaker = self.breaker
        limiter = self.rate_limiter
        retry = self.retry
        if breaker is not None:
            breaker.before_call()
        tokens = self._estimate(call)
        slot = limiter.slot() if limiter is not None else _NO_SLOT
        async with slot as waited_for_slot:
            if waited_for_slot > _NOTABLE_WAIT:
                call.waited("concurrency", waited_for_slot)
            number = 1
            while True:
                if number > 1 and breaker is not None:
                    breaker.before_call()
                if limiter is not None:
                    waited = await limiter.admit(tokens or 0.0)
                    if waited > _NOTABLE_WAIT:
                        call.waited("rate limit", waited)
                call.attempt_started()
                try:
                    reply = await attempt()
                except Exception as exc:
                    call.attempt_finished(exc)
                    if breaker is not None:
                        breaker.on_failure(exc)
                    if limiter is not None and tokens:
                        limiter.adjust(tokens, 0.0)  # the next attempt is charged again
                    retry_after = retry_after_of(exc)
                    if (
                        limiter is not None
                        and retry_after
                        and isinstance(exc, HttpStatusError)
                        and exc.status == 429
                    ):
                        limiter.pause(retry_after)
                    if (
                        retry is None
                        or number >= retry.max_attempts
                        or not retry.should_retry(exc)
                        or call.chunks > 0  # a stream is retried only before its first chunk
                    ):
                        raise
                    delay = retry.delay(number, self.random(), retry_after)
                    remaining = call.remaining()
                    if remaining is not None and delay >= remaining:
                        raise DeadlineExceeded(
                            f"{type(call.envelope.payload).__qualname__} call to actor "
                            f"{call.actor_name!r}: the next retry (in {delay:.3g}s) would pass "
                            f"its deadline ({remaining:.3g}s left) after attempt {number}"
                        ) from exc
                    call.retry_scheduled(delay, exc)
                    clock = self._clock()
                    await clock.sleep_until(clock.now() + delay)
                    number += 1
                except BaseException:
                    # Cancelled (by the caller, the deadline or a stop): no
                    # outcome for the breaker, but its probe is free again.
                    if breaker is not None:
                        breaker.on_abandon()
                    raise
                else:
                    call.attempt_finished(None)
                    if breaker is not None:
                        breaker.on_success()
                    if limiter is not None and tokens:
                        actual = self._reported(call, reply)
                        if actual is not None:
                            limiter.adjust(tokens, actual)
                    return reply
