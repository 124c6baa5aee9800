"""Helpers for testing code that uses corral."""

from .._core._clock import ManualClock as ManualClock

__all__ = ["ManualClock"]

ManualClock.__module__ = __name__
