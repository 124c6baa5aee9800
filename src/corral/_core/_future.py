"""A one-shot future that works on every anyio backend."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

import anyio

from ._exceptions import CallCancelled, InvalidStateError

if TYPE_CHECKING:
    from ._calls import Call

__all__ = ["Future", "Waitable", "pending", "set_cancelled", "set_exception", "set_result"]

T = TypeVar("T")
logger = logging.getLogger("corral")


class Waitable(Protocol):
    """What a future's waiters wait on: an :class:`anyio.Event`, or as cheap a thing."""

    async def wait(self) -> Any: ...

    def set(self) -> None: ...


class _State(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    CANCELLED = "cancelled"


_PENDING = _State.PENDING
_DONE = _State.DONE
_CANCELLED = _State.CANCELLED


class Future(Generic[T]):
    """The eventual outcome of one call: its reply, or the error that ended it.

    Made by :meth:`ActorRef.submit`; it has no public constructor. Await it
    for the reply (or the exception), or poll it with :meth:`done`,
    :meth:`result` and :meth:`exception`. It needs no event loop of its own,
    so it works the same on asyncio and trio.

    Every future resolves: with the reply, with the handler's exception, with
    :class:`DeadlineExceeded` when the call's deadline passes, with
    :class:`CallCancelled` after :meth:`cancel`, or with
    :class:`ActorStopped` (:class:`ActorCrashed`) when its actor stops.

    Awaiting a future and being cancelled while waiting does not cancel the
    call (the future may have other readers); :meth:`cancel` does, and so does
    cancelling a caller of :meth:`ActorRef.ask`, which owns its future.
    """

    __slots__ = (
        "_call",
        "_callbacks",
        "_deadline",
        "_event",
        "_exc",
        "_new_event",
        "_result",
        "_state",
        "_tb",
    )

    _state: _State
    _result: Any
    _exc: BaseException | None
    _tb: TracebackType | None
    _event: Waitable | None
    _callbacks: list[Callable[[Future[T]], object]] | None
    _call: Call | None
    _deadline: float | None
    _new_event: Callable[[], Waitable]

    def __init__(self) -> None:
        raise TypeError(
            "Future has no public constructor; ActorRef.submit() returns the future of a call"
        )

    @classmethod
    def _make(
        cls,
        call: Call | None = None,
        deadline: float | None = None,
        new_event: Callable[[], Waitable] = anyio.Event,
    ) -> Future[Any]:
        """A pending future, of *call* if given (the runtime's constructor).

        Waiters enforce *deadline* (the call's, on the loop clock) and wait
        on events from *new_event* (its actor's event factory).
        """
        fut: Future[Any] = object.__new__(cls)
        fut._state = _PENDING
        fut._result = None
        fut._exc = None
        fut._tb = None
        fut._event = None
        fut._callbacks = None
        fut._call = call
        fut._deadline = deadline
        fut._new_event = new_event
        return fut

    def __repr__(self) -> str:
        if self._state is _PENDING:
            detail = "pending"
        elif self._state is _CANCELLED:
            detail = "cancelled"
        elif self._exc is not None:
            detail = f"failed {type(self._exc).__name__}"
        else:
            detail = "done"
        return f"<corral.Future {detail}>"

    # --- reading -----------------------------------------------------------

    def done(self) -> bool:
        """Return whether the future has an outcome (reply, error or cancellation)."""
        return self._state is not _PENDING

    def cancelled(self) -> bool:
        """Return whether the future was cancelled."""
        return self._state is _CANCELLED

    def result(self) -> T:
        """Return the reply, or raise the error the call ended with.

        Raises:
            InvalidStateError: The future is still pending.
            CallCancelled: The future was cancelled.
        """
        if self._state is _PENDING:
            raise InvalidStateError("the future is pending; await it or check done() first")
        if self._exc is not None:
            self._raise()
        return self._result  # type: ignore[no-any-return]

    def _raise(self) -> NoReturn:
        """Raise the call's error with the traceback it had when the call ended.

        Every reader gets the handler's frames and its own, not those of each
        reader before it (raising one exception object again appends to it).
        """
        assert self._exc is not None
        raise self._exc.with_traceback(self._tb)

    def exception(self) -> BaseException | None:
        """Return the error the call ended with, or ``None`` if it succeeded.

        Raises:
            InvalidStateError: The future is still pending.
        """
        if self._state is _PENDING:
            raise InvalidStateError("the future is pending; await it or check done() first")
        return self._exc

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait_result().__await__()

    async def _wait_result(self) -> T:
        if self._state is _PENDING:
            await self._wait_done()
        if self._exc is not None:
            self._raise()
        return self._result  # type: ignore[no-any-return]

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until the future is done, at most *timeout* seconds.

        Returns whether it is done. Never raises the call's error; read it with
        :meth:`result` or :meth:`exception`. Timing out does not cancel the call.
        """
        if self._state is _PENDING:
            if timeout is None:
                await self._wait_done()
            else:
                with anyio.move_on_after(timeout):
                    await self._wait_done()
        else:
            await anyio.lowlevel.checkpoint()
        return self._state is not _PENDING

    async def _wait_done(self) -> None:
        event = self._event
        if event is None:
            event = self._event = self._new_event()
        deadline = self._deadline
        if deadline is None:
            await event.wait()
            return
        # Whoever waits enforces the deadline, so a call that nobody runs in
        # time still resolves exactly at its deadline without a timer per call.
        with anyio.CancelScope(deadline=deadline):
            await event.wait()
        call = self._call
        if self._state is _PENDING and call is not None and anyio.current_time() >= deadline:
            _calls.expire(call)

    # --- cancelling and callbacks -------------------------------------------

    def cancel(self) -> bool:
        """Cancel the call: take it out of the queue, or cancel its running handler.

        The future resolves with :class:`CallCancelled` at once. Returns
        ``False`` if the future was already done.
        """
        if self._state is not _PENDING:
            return False
        call = self._call
        if call is not None:
            _calls.cancel(call)
        set_cancelled(self)
        return True

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(future)`` when the future is done (at once if it already is).

        Callbacks run synchronously in the task that resolves the future, in
        the order they were added; they must not block. An exception from a
        callback is logged on the ``corral`` logger and does not affect the
        call or the other callbacks.
        """
        if self._state is not _PENDING:
            self._run_callback(fn)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Future[T]], object]) -> int:
        """Remove every registration of *fn*; return how many were removed."""
        if not self._callbacks:
            return 0
        before = len(self._callbacks)
        self._callbacks = [cb for cb in self._callbacks if cb != fn]
        return before - len(self._callbacks)

    def _wake(self) -> None:
        # A done future needs its call no more; dropping it breaks the
        # call <-> future cycle so that both are freed by reference counting.
        self._call = None
        event = self._event
        if event is not None:
            # Waiters hold the event themselves; a done future need not keep it.
            self._event = None
            event.set()
        if self._callbacks:
            callbacks, self._callbacks = self._callbacks, None
            for fn in callbacks:
                self._run_callback(fn)

    def _run_callback(self, fn: Callable[[Future[T]], object]) -> None:
        try:
            fn(self)
        except Exception:
            # The resolver cannot take a callback's error (it may be the
            # runtime itself), and the call's outcome is already settled.
            logger.exception("done-callback %r of %r raised", fn, self)


# --- making and resolving (the call's transitions, and layers that resolve their own) ---


def pending(new_event: Callable[[], Waitable] = anyio.Event) -> Future[Any]:
    """A pending future of no local call: whoever makes it resolves it.

    Its waiters wait on events from *new_event* (a cheaper one than
    :class:`anyio.Event` where the caller knows its event loop).

    The runtime answers system messages with one; the cluster layer gives
    one to each remote call and resolves it when the answer arrives (or
    the deadline passes) with :func:`set_result`, :func:`set_exception` or
    :func:`set_cancelled`.
    """
    return Future._make(new_event=new_event)


def set_result(fut: Future[Any], value: Any) -> bool:
    """Resolve *fut* with the reply *value* if still pending; return whether this did."""
    if fut._state is not _PENDING:
        return False
    fut._result = value
    fut._state = _DONE
    fut._wake()
    return True


def set_exception(fut: Future[Any], exc: BaseException) -> bool:
    """Resolve *fut* with the error *exc* if still pending; return whether this did."""
    if fut._state is not _PENDING:
        return False
    fut._exc = exc
    fut._tb = exc.__traceback__
    fut._state = _DONE
    fut._wake()
    return True


def set_cancelled(fut: Future[Any]) -> bool:
    """Resolve *fut* as cancelled if still pending; return whether this did."""
    if fut._state is not _PENDING:
        return False
    fut._exc = CallCancelled("the call was cancelled")
    fut._state = _CANCELLED
    fut._wake()
    return True


# The calls' module makes futures: imported last.
from . import _calls  # noqa: E402
