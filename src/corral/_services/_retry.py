"""Retry policies: what retries, and how long to wait — pure arithmetic plus settings."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ._exceptions import HttpStatusError, ProviderError, TransportError

__all__ = [
    "DEFAULT_NEVER_RETRY_CODES",
    "DEFAULT_RETRY_CODES",
    "DEFAULT_RETRY_STATUSES",
    "NEVER_RETRY_STATUSES",
    "RetryPolicy",
    "parse_retry_after",
    "parse_retry_after_ms",
    "retry_after_from_headers",
]

#: Statuses retried by default besides every 5xx.
DEFAULT_RETRY_STATUSES: Final = frozenset({408, 409, 429})
#: Statuses a retry policy refuses to retry, whatever it is told.
NEVER_RETRY_STATUSES: Final = frozenset({400, 401, 403, 404, 422})
#: Provider error codes and types that say a call cannot succeed as it is, so it
#: is not retried under any status: no quota or billing, a bad or revoked key,
#: no such model, a request the model refuses (too long, a bad parameter).
DEFAULT_NEVER_RETRY_CODES: Final = frozenset(
    {
        "access_terminated",
        "account_deactivated",
        "authentication_error",
        "billing_hard_limit_reached",
        "billing_not_active",
        "context_length_exceeded",
        "insufficient_quota",
        "invalid_api_key",
        "invalid_request_error",
        "model_not_found",
        "not_found_error",
        "permission_error",
        "unsupported_parameter",
        "unsupported_value",
    }
)
#: Provider error codes and types of a passing condition: a
#: :class:`corral.ProviderError` carrying one is retried.
DEFAULT_RETRY_CODES: Final = frozenset(
    {
        "api_error",
        "internal_error",
        "overloaded",
        "overloaded_error",
        "rate_limit_error",
        "rate_limit_exceeded",
        "server_error",
        "service_unavailable",
        "timeout",
    }
)


def _seconds(name: str, value: float, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (positive and value == 0):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {rule}, got {value!r}")


def _codes(name: str, value: object) -> None:
    if not isinstance(value, frozenset) or not all(isinstance(c, str) and c for c in value):
        raise TypeError(f"{name} must be a frozenset of non-empty strings, got {value!r}")


def parse_retry_after_ms(value: str | None) -> float | None:
    """Seconds to wait from a ``retry-after-ms`` header (milliseconds, maybe fractional).

    Returns ``None`` for a missing or unreadable value; never negative.
    """
    if value is None:
        return None
    try:
        millis = float(value.strip())
    except ValueError:
        return None
    if math.isnan(millis) or math.isinf(millis):
        return None
    return max(0.0, millis / 1000.0)


def retry_after_from_headers(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a response asks to wait: ``retry-after-ms`` if readable, else ``Retry-After``.

    *headers* are looked up by lower-case name (``httpx.Headers`` ignores
    case); *now* is as for :func:`parse_retry_after`. OpenAI and Azure
    send both, the milliseconds being the more precise.
    """
    millis = parse_retry_after_ms(headers.get("retry-after-ms"))
    if millis is not None:
        return millis
    return parse_retry_after(headers.get("retry-after"), now)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    *now* is the wall-clock time (epoch seconds) the HTTP-date is measured
    from. Returns ``None`` for a missing or unreadable value; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how often a failed call is tried again.

    The delay before retry number n (from 1) is drawn uniformly between
    *min_delay* and ``min(max_delay, min_delay * 2**(n-1))`` ("full
    jitter"), and is at least the service's ``Retry-After`` (capped at
    *max_retry_after*). A retry never outlives the call's deadline: when the
    next delay would pass it, the call fails at once with
    :class:`corral.DeadlineExceeded`, the last error chained.

    By default it retries :class:`corral.TransportError` (connect errors,
    timeouts) and :class:`corral.HttpStatusError` with status 408, 409, 429
    or 5xx — never 400, 401, 403, 404 or 422 — unless the provider's error
    ``code`` or ``type`` is one of *never_retry_codes*: a 429 with code
    ``insufficient_quota`` will fail the same way each time. A
    :class:`corral.ProviderError` (an error reported inside a successful
    response) is retried when its ``code`` or ``type`` is one of
    *retry_codes* (a passing condition: ``server_error``,
    ``rate_limit_exceeded``, ``overloaded_error``, ``timeout``, ...), or
    when it is listed in *retry_on* and its code is not one of
    *never_retry_codes*. Codes and types are compared exactly as sent. A
    stream is retried only before its first chunk, whatever the error.

    Args:
        max_attempts: Attempts in all, the first included (1: no retry).
        min_delay: Shortest delay, seconds.
        max_delay: Longest delay before jitter, seconds; >= *min_delay*.
        retry_on: Exception types that are retried (besides HTTP statuses).
        retry_statuses: HTTP statuses retried besides every 5xx.
        retry_5xx: Whether every 5xx status is retried.
        max_retry_after: Cap on a ``Retry-After`` wait, seconds.
        predicate: Overrides the rules above: ``predicate(exc) -> bool``.
        never_retry_codes: Provider error codes and types never retried,
            whatever the status (default :data:`DEFAULT_NEVER_RETRY_CODES`).
        retry_codes: Provider error codes and types under which a
            :class:`corral.ProviderError` is retried (default
            :data:`DEFAULT_RETRY_CODES`); none may be in *never_retry_codes*.
    """

    max_attempts: int = 3
    min_delay: float = 0.1
    max_delay: float = 10.0
    retry_on: tuple[type[BaseException], ...] = (TransportError,)
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_5xx: bool = True
    max_retry_after: float = 60.0
    predicate: Callable[[BaseException], bool] | None = None
    never_retry_codes: frozenset[str] = DEFAULT_NEVER_RETRY_CODES
    retry_codes: frozenset[str] = DEFAULT_RETRY_CODES

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        _seconds("min_delay", self.min_delay)
        _seconds("max_delay", self.max_delay)
        _seconds("max_retry_after", self.max_retry_after)
        if self.min_delay > self.max_delay:
            raise ValueError(
                f"min_delay must be <= max_delay, got {self.min_delay} > {self.max_delay}"
            )
        bad = [s for s in self.retry_statuses if s in NEVER_RETRY_STATUSES]
        if bad:
            raise ValueError(f"retry_statuses must not contain {sorted(bad)}: never retried")
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on):
            raise TypeError(f"retry_on must be exception classes, got {self.retry_on!r}")
        _codes("never_retry_codes", self.never_retry_codes)
        _codes("retry_codes", self.retry_codes)
        both = self.never_retry_codes & self.retry_codes
        if both:
            raise ValueError(
                f"retry_codes must not contain {sorted(both)}: they are in never_retry_codes"
            )

    def should_retry(self, exc: BaseException) -> bool:
        """Whether *exc* is worth another attempt."""
        if self.predicate is not None:
            return bool(self.predicate(exc))
        if isinstance(exc, (HttpStatusError, ProviderError)) and (
            exc.code in self.never_retry_codes or exc.type in self.never_retry_codes
        ):
            return False
        if isinstance(exc, HttpStatusError):
            status = exc.status
            if status in NEVER_RETRY_STATUSES:
                return False
            return status in self.retry_statuses or (self.retry_5xx and 500 <= status <= 599)
        if isinstance(exc, ProviderError) and (
            exc.code in self.retry_codes or exc.type in self.retry_codes
        ):
            return True
        return isinstance(exc, self.retry_on)

    def delay(self, retry: int, rand: float, retry_after: float | None = None) -> float:
        """The wait before retry number *retry* (from 1), for *rand* uniform in [0, 1)."""
        ceiling = min(self.max_delay, self.min_delay * 2.0 ** min(retry - 1, 64))
        wait = self.min_delay + (ceiling - self.min_delay) * rand
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


def retry_after_of(exc: BaseException) -> float | None:
    """The ``Retry-After`` an error carries, if any."""
    value: Any = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, (int, float)) else None
