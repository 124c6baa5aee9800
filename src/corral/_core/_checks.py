"""The argument checks corral shares, each refusing with an error that names the value.

Every public constructor and method that takes a number checks it here, so
that the same mistake reads the same everywhere: a ``TypeError`` for the
wrong type (``True`` is not a number), a ``ValueError`` for one out of range
(NaN and infinity included where a finite value is needed).
"""

from __future__ import annotations

import math

__all__ = ["check_finite_positive", "check_non_negative", "check_positive_int", "check_timeout"]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_timeout(timeout: float | None, what: str = "timeout") -> None:
    """Refuse a timeout that is not a number, negative or NaN (``None``: no limit)."""
    if timeout is None:
        return
    if not _is_number(timeout):
        raise TypeError(
            f"{what} must be a number of seconds or None, got {type(timeout).__name__} "
            f"{timeout!r:.40}"
        )
    if not (timeout >= 0):
        raise ValueError(f"{what} must be >= 0 seconds or None, got {timeout!r}")


def check_positive_int(value: object, what: str) -> int:
    """Return *value* if it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value!r}")
    return value


def check_non_negative(value: float, what: str) -> None:
    """Refuse seconds (or a factor) that are not a finite number >= 0."""
    if not _is_number(value):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    if not (value >= 0) or math.isinf(value):
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")


def check_finite_positive(value: float | None, what: str) -> None:
    """Refuse a rate or interval that is not a finite number > 0 (``None`` passes)."""
    if value is None:
        return
    if not _is_number(value):
        raise TypeError(f"{what} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
