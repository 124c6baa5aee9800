"""Restart intensity: OTP's "at most N restarts in T seconds", as plain arithmetic."""

from __future__ import annotations

__all__ = ["add_restart"]


def add_restart(
    history: tuple[float, ...], now: float, max_restarts: int, within: float
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at *now*; return the new history and whether the intensity allows it.

    *history* holds the times of earlier restarts, oldest first. Restarts
    older than ``now - within`` are forgotten; one exactly *within* seconds
    old still counts (OTP keeps a restart ``R`` while ``R >= Now - Period``).
    As in OTP's supervisor, the restart is allowed while the restarts in the
    window, this one included, number at most *max_restarts*; one more means
    the supervisor gives up.
    """
    horizon = now - within
    kept = (*(t for t in history if t >= horizon), now)
    return kept, len(kept) <= max_restarts
