"""The event loop's clock, fetched once instead of looked up on every read."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel

__all__ = ["loop_clock"]


def loop_clock() -> Callable[[], float]:
    """Return a function that reads the running event loop's clock.

    It reads the same clock as :func:`anyio.current_time` (the one cancel
    scope deadlines use, and trio's ``MockClock`` when one is installed), but
    on asyncio it is the loop's own ``time`` method, which costs a tenth of
    the backend lookup ``anyio.current_time`` repeats on every call. Must be
    called inside the event loop whose clock it reads.
    """
    native = anyio.lowlevel.current_token().native_token
    clock = getattr(native, "time", None)
    if callable(clock):
        return clock  # type: ignore[no-any-return]
    return anyio.current_time
