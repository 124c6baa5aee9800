"""Retry policies, rate limiters and circuit breakers, in virtual time where time matters."""

from __future__ import annotations

import contextlib
import email.utils
from typing import Any

import anyio
import pytest

import corral
from corral import BreakerState, HttpStatusError, TransportError
from corral._services._buckets import refill, wait_for
from corral._services._retry import parse_retry_after
from corral.testing import ManualClock

pytestmark = pytest.mark.anyio


def status(code: int, retry_after: float | None = None) -> HttpStatusError:
    return HttpStatusError(f"status {code}", status=code, retry_after=retry_after)


# --- retry policy -----------------------------------------------------------------------


def test_default_retry_rules() -> None:
    """Connect errors, timeouts, 408, 409, 429 and 5xx retry; 400/401/403/404/422 never."""
    policy = corral.RetryPolicy()
    for code in (408, 409, 429, 500, 502, 503, 504, 599):
        assert policy.should_retry(status(code)), code
    for code in (400, 401, 403, 404, 422, 418):
        assert not policy.should_retry(status(code)), code
    assert policy.should_retry(TransportError("connect failed"))
    assert policy.should_retry(TransportError("timed out", timeout=True))
    assert not policy.should_retry(ValueError("bad input"))
    assert not policy.should_retry(corral.CircuitOpen("open"))
    custom = corral.RetryPolicy(predicate=lambda e: isinstance(e, ValueError))
    assert custom.should_retry(ValueError())


def test_full_jitter_delays_stay_between_min_and_the_growing_ceiling() -> None:
    """Retry n waits uniformly between min and min(max, min * 2**(n-1)); Retry-After wins."""
    p = corral.RetryPolicy(min_delay=0.1, max_delay=1.0, max_retry_after=5.0)
    assert p.delay(1, 0.0) == pytest.approx(0.1)
    assert p.delay(1, 0.999) == pytest.approx(0.1)
    assert p.delay(3, 0.0) == pytest.approx(0.1)
    assert p.delay(3, 0.5) == pytest.approx(0.25)  # between 0.1 and 0.4
    assert p.delay(10, 0.999) == pytest.approx(0.1 + 0.9 * 0.999)
    assert p.delay(1, 0.5, retry_after=3.0) == pytest.approx(3.0)
    assert p.delay(1, 0.5, retry_after=30.0) == pytest.approx(5.0)  # capped


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"min_delay": -1}, "min_delay must be finite and >= 0"),
        ({"min_delay": 2, "max_delay": 1}, "min_delay must be <= max_delay"),
        ({"retry_statuses": frozenset({401})}, r"must not contain \[401\]"),
        ({"max_delay": float("inf")}, "max_delay must be finite"),
    ],
)
def test_bad_retry_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    """Out-of-range retry settings raise at configuration time, naming the setting."""
    with pytest.raises((ValueError, TypeError), match=message):
        corral.RetryPolicy(**settings)


def test_retry_after_in_seconds_and_http_date() -> None:
    """Retry-After is read as delta-seconds or as an HTTP-date; junk is ignored."""
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("1.5", now) == 1.5
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None


# --- token buckets and the rate limiter ---------------------------------------------------------


def test_bucket_arithmetic() -> None:
    """A bucket refills continuously up to its capacity; the wait is the deficit over the rate."""
    assert refill(0, 0, 5, 10, 1) == 5
    assert refill(0, 0, 50, 10, 1) == 10
    assert refill(-3, 0, 1, 10, 1) == -2
    assert refill(4, 5, 5, 10, 1) == 4
    assert wait_for(0.5, 1, 2) == 0.25
    assert wait_for(3, 1, 2) == 0


async def test_requests_are_spaced_and_any_window_holds_limit_plus_burst() -> None:
    """Over any window of one interval, admissions never exceed limit + burst."""
    clock = ManualClock()
    limiter = corral.RateLimiter(requests=10, per=1.0, burst=3, clock=clock)
    admitted: list[float] = []

    async def one() -> None:
        await limiter.admit()
        admitted.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        while len(admitted) < 40:
            await clock.advance(0.05)
    assert admitted[:3] == [0.0, 0.0, 0.0]  # the burst goes at once
    window = 1.0
    for i, t in enumerate(admitted):
        inside = [u for u in admitted[i:] if u - t < window]
        assert len(inside) <= 10 + 3
    assert admitted[-1] == pytest.approx((40 - 3) / 10, abs=0.06)


async def test_waiters_are_served_first_come_first_served() -> None:
    """Calls waiting for the limiter get in in arrival order, whatever their size."""
    clock = ManualClock()
    limiter = corral.RateLimiter(tokens=100, per=1.0, token_burst=100, clock=clock)
    order: list[str] = []

    async def one(name: str, tokens: float) -> None:
        await limiter.admit(tokens)
        order.append(name)

    await limiter.admit(100)  # empty the bucket
    async with anyio.create_task_group() as tg:
        for name, tokens in (("big", 90), ("small1", 5), ("small2", 5)):
            tg.start_soon(one, name, tokens)
            await anyio.wait_all_tasks_blocked()
        await clock.advance(2.0)
    assert order == ["big", "small1", "small2"]


async def test_a_call_bigger_than_the_bucket_is_refused_at_once() -> None:
    """An estimate larger than the token bucket can never fit: RateLimitRefused, no wait."""
    limiter = corral.RateLimiter(tokens=1000, per=60, clock=ManualClock())
    with pytest.raises(corral.RateLimitRefused, match="never fit a token bucket of 1000"):
        await limiter.admit(1001)
    assert limiter.status().waiting == 0


async def test_pause_holds_everyone_and_adjust_corrects_tokens() -> None:
    """A 429 pause stops all admissions for its length; usage corrections refund or owe."""
    clock = ManualClock()
    # Slow refill (0.1 a second), so that what is taken and given back shows.
    limiter = corral.RateLimiter(requests=1000, tokens=100, per=1000, burst=10, clock=clock)
    limiter.pause(2.0)
    done = anyio.Event()

    async def one() -> None:
        await limiter.admit(10)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        await clock.advance(1.9)
        assert not done.is_set()
        assert limiter.status().paused_for == pytest.approx(0.1)
        await clock.advance(0.2)
        assert done.is_set()
    assert limiter.status().tokens_available == pytest.approx(90, abs=0.1)
    limiter.adjust(10, 4)  # used fewer than estimated: 6 come back
    assert limiter.status().tokens_available == pytest.approx(96, abs=0.1)
    limiter.adjust(10, 50)  # used more: 40 owed
    assert limiter.status().tokens_available == pytest.approx(56, abs=0.1)


async def test_a_share_scales_rates_and_sizes_and_never_raises_a_level() -> None:
    """set_share: rate, burst and concurrency scale; a level is cut to a smaller bucket and
    never raised; share 0 admits nothing until a larger share wakes the waiting head."""
    clock = ManualClock()
    limiter = corral.RateLimiter(requests=12, per=1.0, burst=6, max_concurrency=4, clock=clock)
    limiter.set_share(1 / 3)
    status = limiter.status()
    assert (status.share, status.requests_available) == (pytest.approx(1 / 3), 2.0)
    limiter.set_share(0.5)  # a node left: the bucket grows, the level does not jump
    assert limiter.status().requests_available == 2.0
    admitted: list[float] = []

    async def one() -> None:
        await limiter.admit()
        admitted.append(clock.now())

    limiter.set_share(0.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        await clock.advance(100)
        assert admitted == []  # no part: nothing goes
        limiter.empty()
        limiter.set_share(0.5)  # 6 a second: the head wakes and waits 1/6 s
        await anyio.wait_all_tasks_blocked()
        await clock.advance(0.2)
    assert admitted == [pytest.approx(100 + 1 / 6)]  # woken at once, not after 100 s
    limiter.set_share(0.25)
    slots = []
    async with limiter.slot(), contextlib.AsyncExitStack() as stack:
        # 4 * 0.25 = 1 slot, the one held: the next waits.
        with anyio.move_on_after(0) as scope:
            await stack.enter_async_context(limiter.slot())
            slots.append(1)
        assert scope.cancelled_caught and slots == []
    with pytest.raises(ValueError, match="a share is between 0 and 1"):
        limiter.set_share(1.5)


async def test_a_pause_is_told_to_listeners_unless_it_came_from_a_peer() -> None:
    """on_pause listeners hear this process's pauses, not those passed on with tell=False."""
    limiter = corral.RateLimiter(requests=1, per=1.0, clock=ManualClock(), shared="key-1")
    heard: list[float] = []
    remove = limiter.on_pause(heard.append)
    limiter.pause(2.0)
    limiter.pause(3.0, tell=False)
    remove()
    limiter.pause(4.0)
    assert heard == [2.0]
    assert limiter.status().shared == "key-1"


async def test_a_cancelled_waiter_does_not_block_the_line() -> None:
    """Cancelling the head of the line passes the turn on; nothing is taken."""
    clock = ManualClock()
    limiter = corral.RateLimiter(requests=1, per=1.0, clock=clock)
    await limiter.admit()
    got: list[str] = []

    async def one(name: str, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await limiter.admit()
            got.append(name)

    async with anyio.create_task_group() as tg:
        first = await tg.start(one, "first")
        await anyio.wait_all_tasks_blocked()
        await tg.start(one, "second")
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await anyio.wait_all_tasks_blocked()
        await clock.advance(1.0)
    assert got == ["second"]
    assert limiter.status().waiting == 0


async def test_concurrency_slots_are_handed_over_in_order() -> None:
    """max_concurrency caps calls in progress; freed slots go to the longest waiter."""
    limiter = corral.RateLimiter(max_concurrency=2)
    inside: list[str] = []
    release = {name: anyio.Event() for name in "abcd"}

    async def one(name: str) -> None:
        async with limiter.slot():
            inside.append(name)
            await release[name].wait()

    async with anyio.create_task_group() as tg:
        for name in "abcd":
            tg.start_soon(one, name)
            await anyio.wait_all_tasks_blocked()
        assert inside == ["a", "b"]
        assert limiter.status().waiting_for_slot == 2
        release["a"].set()
        await anyio.wait_all_tasks_blocked()
        assert inside == ["a", "b", "c"]
        for name in "bcd":
            release[name].set()
    assert limiter.status().in_use == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"requests": 0}, "requests must be finite and > 0"),
        ({"requests": -5}, "requests must be finite and > 0"),
        ({"tokens": float("nan")}, "tokens must be finite and > 0"),
        ({"requests": 1, "per": 0}, "per must be finite and > 0"),
        ({}, "needs requests=, tokens= or max_concurrency="),
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1"),
        ({"burst": 3, "tokens": 5}, "give requests= too"),
        ({"requests": 1, "shared": ""}, "shared must be a name"),
        ({"requests": 1, "shared": "key 1"}, "shared must be a name"),
    ],
)
def test_bad_rate_limits_are_refused(settings: dict[str, Any], message: str) -> None:
    """Zero, negative or missing rates are configuration errors, named."""
    with pytest.raises((ValueError, TypeError), match=message):
        corral.RateLimiter(**settings)


# --- circuit breaker ----------------------------------------------------------------------------


async def test_breaker_opens_fails_fast_probes_and_closes() -> None:
    """N consecutive failures open it; after the cool-down one probe decides."""
    clock = ManualClock()
    breaker = corral.CircuitBreaker(failure_threshold=3, cooldown=10, clock=clock, name="api")
    changes: list[tuple[str, str]] = []
    breaker.on_change.append(lambda b, old, new: changes.append((old.value, new.value)))
    for _ in range(2):
        breaker.before_call()
        breaker.on_failure(status(503))
    breaker.before_call()
    breaker.on_failure(ValueError("the request's fault"))  # not counted; resets the run
    for _ in range(3):
        breaker.before_call()
        breaker.on_failure(status(500))
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(corral.CircuitOpen, match="'api' is open") as info:
        breaker.before_call()
    assert info.value.retry_in == pytest.approx(10)
    await clock.advance(10)
    breaker.before_call()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(corral.CircuitOpen, match="probe is out"):
        breaker.before_call()
    breaker.on_failure(TransportError("down"))
    assert breaker.state is BreakerState.OPEN
    await clock.advance(10)
    breaker.before_call()
    breaker.on_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert breaker.status().opened == 2
    assert breaker.status().closed == 1


def test_breaker_failure_ratio_over_a_window() -> None:
    """With failure_ratio, half the last `window` calls failing opens it."""
    breaker = corral.CircuitBreaker(
        failure_threshold=100, failure_ratio=0.5, window=4, clock=ManualClock()
    )
    for ok in (True, False, True, False):
        breaker.before_call()
        breaker.on_success() if ok else breaker.on_failure(status(502))
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be >= 1"),
        ({"failure_ratio": 1.5}, r"failure_ratio must be in \(0, 1\]"),
        ({"cooldown": 0}, "cooldown must be finite and > 0"),
        ({"window": 0}, "window must be an int >= 1"),
    ],
)
def test_bad_breaker_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    """Out-of-range breaker settings raise at configuration time."""
    with pytest.raises(ValueError, match=message):
        corral.CircuitBreaker(**settings)


def test_service_policy_validates_its_parts() -> None:
    """The one configuration object refuses parts of the wrong kind."""
    with pytest.raises(TypeError, match="retry must be"):
        corral.ServicePolicy(retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate_limiter must be"):
        corral.ServicePolicy(rate_limiter="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="estimate_tokens must be callable"):
        corral.ServicePolicy(estimate_tokens=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy of child 'x' must be"):
        corral.child(corral.OpenAIChat, name="x", policy=object())  # type: ignore[arg-type]


# --- the policy on a plain actor, in virtual time ------------------------------------------------


@corral.message
class Job:
    n: int


class Flaky(corral.Actor[Job, int]):
    """Fails with 503 the first `fails` attempts of every job."""

    def __init__(self, fails: int, error: Exception | None = None) -> None:
        self.fails = fails
        self.error = error
        self.attempts: dict[int, int] = {}

    async def handle(self, msg: Job) -> int:
        seen = self.attempts.get(msg.n, 0) + 1
        self.attempts[msg.n] = seen
        call = corral.current_call()
        assert call is not None
        assert call.attempt == seen
        if seen <= self.fails:
            raise self.error or status(503)
        return msg.n


async def test_retries_show_in_the_pile_and_recover() -> None:
    """Between attempts the call is RETRYING; the reply comes from the last attempt."""
    clock = ManualClock()
    policy = corral.ServicePolicy(
        retry=corral.RetryPolicy(max_attempts=3, min_delay=1.0, max_delay=1.0), clock=clock
    )
    actor = Flaky(fails=2)
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: actor, name="flaky", policy=policy)
        fut = await ref.submit(Job(7))
        await anyio.wait_all_tasks_blocked()
        (info,) = ref.status().active
        assert info.status is corral.CallStatus.RETRYING
        assert info.attempt == 1
        await clock.advance(1.0)
        (info,) = ref.status().active
        assert info.status is corral.CallStatus.RETRYING
        assert info.attempt == 2
        await clock.advance(1.0)
        assert await fut == 7
        assert ref.status().recent[-1].attempt == 3
    assert actor.attempts == {7: 3}


async def test_a_retry_never_outlives_the_deadline() -> None:
    """When the next backoff would pass the deadline the call fails now, the error chained."""
    policy = corral.ServicePolicy(
        retry=corral.RetryPolicy(max_attempts=5, min_delay=10, max_delay=10)
    )
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Flaky(fails=5), name="flaky", policy=policy)
        started = anyio.current_time()
        with pytest.raises(corral.DeadlineExceeded, match="would pass its deadline") as info:
            await ref.ask(Job(1), timeout=2.0)
        assert anyio.current_time() - started < 1.0
        assert isinstance(info.value.__cause__, HttpStatusError)
        assert ref.status().counts[corral.CallStatus.EXPIRED] == 1


async def test_errors_that_do_not_retry_fail_at_once() -> None:
    """A non-retryable error (or the last attempt's) reaches the caller as it was."""
    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: Flaky(fails=1, error=status(404)), name="flaky", policy=corral.ServicePolicy()
        )
        with pytest.raises(HttpStatusError, match="status 404"):
            await ref.ask(Job(1))
        assert ref.status().recent[-1].attempt == 1


async def test_an_open_circuit_fails_calls_before_the_rate_limiter() -> None:
    """Order: the breaker is asked before the limiter, so a refused call takes no budget."""
    clock = ManualClock()
    breaker = corral.CircuitBreaker(failure_threshold=1, cooldown=60, clock=clock)
    limiter = corral.RateLimiter(requests=1000, per=1, burst=1000, clock=clock)
    policy = corral.ServicePolicy(retry=None, breaker=breaker, rate_limiter=limiter)
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Flaky(fails=10), name="flaky", policy=policy)
        with pytest.raises(HttpStatusError):
            await ref.ask(Job(1))
        available = limiter.status().requests_available
        with pytest.raises(corral.CircuitOpen):
            await ref.ask(Job(2))
        assert limiter.status().requests_available == available


async def test_a_token_limiter_without_an_estimate_is_a_configuration_error() -> None:
    """A limiter that counts tokens refuses calls nothing can estimate, clearly."""
    limiter = corral.RateLimiter(tokens=1000, per=60)
    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: Flaky(fails=0), name="flaky", policy=corral.ServicePolicy(rate_limiter=limiter)
        )
        with pytest.raises(
            corral.RateLimitRefused, match="no token estimate could be made for Job"
        ):
            await ref.ask(Job(1))
        estimating = corral.ServicePolicy(rate_limiter=limiter, estimate_tokens=lambda m: 10)
        other = await rt.spawn(lambda: Flaky(fails=0), name="other", policy=estimating)
        assert await other.ask(Job(2)) == 2
