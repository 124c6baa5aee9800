"""Token buckets that refill continuously: pure arithmetic over a clock value."""

from __future__ import annotations

import math

__all__ = ["refill", "wait_for"]


def refill(level: float, updated: float, now: float, capacity: float, rate: float) -> float:
    """The bucket's level at *now*: *level* at *updated* plus *rate* per second, capped.

    The level may be negative (tokens used beyond the estimate are owed).
    """
    if now <= updated:
        return level
    return min(capacity, level + (now - updated) * rate)


def wait_for(level: float, need: float, rate: float) -> float:
    """Seconds until a bucket at *level* holds *need* tokens (0 if it does now)."""
    if level >= need:
        return 0.0
    if rate <= 0:
        return math.inf
    return (need - level) / rate
