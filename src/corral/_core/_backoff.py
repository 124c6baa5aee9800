"""The restart backoff schedule (Akka's form), as a pure function plus its settings."""

from __future__ import annotations

from typing import Final

import attrs

from ._checks import check_non_negative

__all__ = ["DEFAULT_BACKOFF_JITTER", "Backoff"]

#: Default random factor of a :class:`Backoff`.
DEFAULT_BACKOFF_JITTER: Final = 0.2


@attrs.frozen(kw_only=True)
class Backoff:
    """How long a supervisor waits before restarting a child that crashed.

    The n-th consecutive restart of a child (n = 0, 1, ...) waits
    ``min(max, min * 2**n) * (1 + jitter * r)`` seconds, r uniform in [0, 1)
    (Akka's restart-with-backoff). After the child has run for *reset_after*
    seconds without crashing, n starts again from 0.

    Args:
        min: Delay before the first restart, seconds.
        max: Ceiling of the delay (before jitter), seconds; >= *min*.
        jitter: Random factor, >= 0: 0.2 adds up to 20 %.
        reset_after: Quiet time that resets the count; default ``(min + max) / 2``.

    Raises:
        ValueError: A negative, infinite or NaN setting, or *min* > *max*.
    """

    min: float
    max: float
    jitter: float = DEFAULT_BACKOFF_JITTER
    reset_after: float | None = None

    def __attrs_post_init__(self) -> None:
        check_non_negative(self.min, "Backoff min")
        check_non_negative(self.max, "Backoff max")
        check_non_negative(self.jitter, "Backoff jitter")
        if self.reset_after is not None:
            check_non_negative(self.reset_after, "Backoff reset_after")
        if self.min > self.max:
            raise ValueError(f"Backoff min must be <= max, got min={self.min} > max={self.max}")

    @property
    def quiet_period(self) -> float:
        """Seconds without a crash after which the count resets."""
        return (self.min + self.max) / 2 if self.reset_after is None else self.reset_after

    def delay(self, attempt: int, rand: float) -> float:
        """Return the delay before restart number *attempt* (from 0), given *rand* in [0, 1)."""
        base = self.min * 2.0 ** min(attempt, 64) if self.min > 0 else 0.0
        return min(self.max, base) * (1.0 + self.jitter * rand)
