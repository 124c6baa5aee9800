"""Fast paths to the running event loop, fetched once instead of on every call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

__all__ = ["LoopHooks"]


class LoopHooks:
    """The two loop operations a call makes, bound to the running event loop.

    ``anyio.current_time()`` and ``anyio.lowlevel.checkpoint_if_cancelled()``
    look the backend up on every call, which costs more than the rest of a
    call's bookkeeping; these are the same operations, resolved once. Make
    it inside the event loop it serves.

    Attributes:
        clock: Reads the loop's clock, the one :func:`anyio.current_time`
            reads (and cancel scope deadlines use; trio's ``MockClock`` when
            one is installed). On asyncio it is the loop's own ``time``.
        checkpoint_if_cancelled: Raises the pending cancellation, if any,
            without yielding to the event loop.
        new_event: Makes an :class:`anyio.Event` of the loop's backend
            (``anyio.Event()`` looks the backend up each time: a call makes two).
    """

    __slots__ = ("checkpoint_if_cancelled", "clock", "new_event")

    def __init__(self) -> None:
        token = anyio.lowlevel.current_token()
        native_time = getattr(token.native_token, "time", None)
        self.clock: Callable[[], float] = (
            native_time if callable(native_time) else token.backend_class.current_time
        )
        self.checkpoint_if_cancelled: Callable[[], Awaitable[None]] = (
            token.backend_class.checkpoint_if_cancelled
        )
        self.new_event: Callable[[], anyio.Event] = type(anyio.Event())
