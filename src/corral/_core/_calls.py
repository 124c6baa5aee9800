"""A call's life: its legal moves, written down once, and the one place that makes them.

::

    new --accept--> QUEUED --start--> RUNNING <--retry / next attempt--> RETRYING
                         |                  |  \\                              |
                         |                  |   requeue (its actor crashed;    |
                         |                  |   retry_interrupted): QUEUED     |
                      drop: taken out    resolve: the future gets its outcome, |
                      of the queue       the handler is cancelled if need be   |
                      (cancelled,           |  <-------------------------------+
                      expired, stopped)  leave: the pile records the outcome
                         |                  |
                         +--> SUCCEEDED, FAILED, CANCELLED or EXPIRED (finished)

A call's future resolves exactly once (:func:`resolve`), possibly while its
handler still unwinds; the call's status becomes its outcome when it leaves
the pile (:func:`leave`). :data:`LEGAL` lists every move; each function here
checks its move against it (an ``assert``: the tests run with them).

The functions take the call; the actor cell it belongs to supplies the
mailbox, the pile, the clock and the instruments.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._checks import check_timeout
from ._exceptions import DeadlineExceeded
from ._future import _PENDING
from ._messages import Envelope, Kind, new_id
from ._pile import Call, CallStatus, Handler

if TYPE_CHECKING:
    from ._cell import ActorCell

__all__ = [
    "LEGAL",
    "accept",
    "cancel",
    "deadline_error",
    "drop",
    "expire",
    "from_envelope",
    "leave",
    "new",
    "next_attempt",
    "requeue",
    "resolve",
    "retry_scheduled",
    "start",
]

logger = logging.getLogger("corral")

_QUEUED = CallStatus.QUEUED
_RUNNING = CallStatus.RUNNING
_RETRYING = CallStatus.RETRYING
_CANCELLED = CallStatus.CANCELLED
_EXPIRED = CallStatus.EXPIRED
_FAILED = CallStatus.FAILED
_DONE: Final = frozenset(
    {CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.CANCELLED, CallStatus.EXPIRED}
)

#: Every status a call may move to from each status (``None``: not yet accepted).
LEGAL: Final[Mapping[CallStatus | None, frozenset[CallStatus]]] = {
    None: frozenset({_QUEUED}),
    # Started; or dropped from the queue: cancelled, expired, its actor stopped.
    _QUEUED: frozenset({_RUNNING, _CANCELLED, _EXPIRED, _FAILED}),
    # Between attempts; back in line after a crash; or finished.
    _RUNNING: frozenset({_RETRYING, _QUEUED}) | _DONE,
    # The next attempt; back in line after a crash; or finished while waiting.
    _RETRYING: frozenset({_RUNNING, _QUEUED}) | _DONE,
    CallStatus.SUCCEEDED: frozenset(),
    CallStatus.FAILED: frozenset(),
    CallStatus.CANCELLED: frozenset(),
    CallStatus.EXPIRED: frozenset(),
}


def _move(call: Call, to: CallStatus) -> None:
    assert to in LEGAL[call._status], f"a call cannot go from {call._status} to {to}"
    call._status = to


def new(
    cell: ActorCell, msg: object, kind: Kind, timeout: float | None, func: Handler | None = None
) -> Call:
    """The call of *msg* to the actor of *cell* (validated, with its deadline), not yet queued.

    Raises:
        UnhandledMessage: The actor does not take *msg*.
        TypeError, ValueError: A bad *timeout*.
    """
    if func is None:
        func = cell.lookup(msg)
    now = cell.clock()
    created = time.time()
    if timeout is None:
        deadline = wall_deadline = None
    else:
        check_timeout(timeout)
        deadline = now + timeout
        wall_deadline = created + timeout
    envelope = Envelope(
        payload=msg,
        target=cell.name,
        kind=kind,
        id=new_id(),
        deadline=wall_deadline,
        created_at=created,
    )
    call = Call._make(cell, envelope, func, deadline)
    call._enqueued_at = now
    return call


def from_envelope(cell: ActorCell, envelope: Envelope, func: Handler) -> Call:
    """The call of an envelope that arrived from elsewhere; its wall-clock deadline made local."""
    now = cell.clock()
    deadline = None
    if envelope.deadline is not None:
        deadline = now + (envelope.deadline - time.time())
    call = Call._make(cell, envelope, func, deadline)
    call._enqueued_at = now
    return call


def accept(call: Call) -> None:
    """The mailbox took *call*: it waits for a worker."""
    _move(call, _QUEUED)
    instruments = call._cell.instruments
    if instruments is not None:
        instruments.call("call_submitted", call)


def start(call: Call, now: float) -> None:
    """A worker runs *call*'s handler from *now* on."""
    _move(call, _RUNNING)
    call._started_at = now
    cell = call._cell
    cell.pile.running[call] = None
    instruments = cell.instruments
    if instruments is not None:
        instruments.call("call_started", call)


def retry_scheduled(call: Call) -> None:
    """A policy will try *call* again: it waits between attempts."""
    _move(call, _RETRYING)


def next_attempt(call: Call) -> int:
    """A policy starts an attempt; return its number (a retry's is one more than the last)."""
    envelope = call._envelope
    if call._status is _RETRYING:
        call._envelope = envelope = attrs.evolve(envelope, attempt=envelope.attempt + 1)
        _move(call, _RUNNING)
    return envelope.attempt


def resolve(
    call: Call, outcome: CallStatus, value: Any = None, exc: BaseException | None = None
) -> bool:
    """Give *call*'s future its outcome (once); return whether this did.

    The status follows when the call leaves the pile (:func:`leave`).
    """
    fut = call._future
    if fut._state is not _PENDING:
        return False
    assert outcome in _DONE, f"{outcome} is not an outcome"
    call._outcome = outcome
    if outcome is _CANCELLED:
        fut._set_cancelled()
    elif exc is not None:
        fut._set_exception(exc)
        if call._envelope.kind is Kind.ONE_WAY and outcome is _FAILED:
            # Nobody holds a one-way message's future: the error is kept
            # in the pile's history and reported here.
            logger.warning(
                "one-way %s to actor %r failed",
                type(call._envelope.payload).__qualname__,
                call._cell.name,
                exc_info=exc,
            )
    else:
        fut._set_result(value)
    if call._stream is not None:
        # The reader stops at once, whatever ended the call.
        call._stream.send.close()
    instruments = call._cell.instruments
    if instruments is not None:
        instruments.call("call_resolved", call)
    return True


def leave(call: Call) -> None:
    """*call* leaves the pile with its outcome, into the recent history."""
    outcome = call._outcome
    assert outcome is not None, "a call leaves the pile once resolved"
    _move(call, outcome)
    cell = call._cell
    call._finished_at = cell.clock()
    cell.pile.running.pop(call, None)
    cell.pile.record(call)
    instruments = cell.instruments
    if instruments is not None:
        instruments.call("call_finished", call)


def drop(call: Call, outcome: CallStatus, exc: BaseException | None) -> None:
    """End a call that is out of the queue (or never got in line) without running it."""
    resolve(call, outcome, None, exc)
    leave(call)


def requeue(call: Call, crash: BaseException) -> None:
    """Put *call*, cut short by its actor's *crash*, back in line as its next attempt.

    Its place is before every call that arrived after it; the next
    incarnation runs it.
    """
    _move(call, _QUEUED)
    cell = call._cell
    cell.pile.running.pop(call, None)
    instruments = cell.instruments
    if instruments is not None:
        instruments.call("call_interrupted", call, crash)
    call._outcome = None
    call._envelope = attrs.evolve(call._envelope, attempt=call._envelope.attempt + 1)
    cell.mailbox.requeue(call)


def deadline_error(call: Call, where: str) -> DeadlineExceeded:
    """The error of *call* passing its deadline *where* (``"queued"``, ``"running"``)."""
    return DeadlineExceeded(
        f"{type(call._envelope.payload).__qualname__} call to actor {call._cell.name!r} "
        f"passed its deadline while {where}"
    )


def cancel(call: Call) -> None:
    """The caller gave up: a queued call leaves the queue; a running one is cancelled."""
    if call._status is _QUEUED:
        if call._cell.mailbox.remove(call):
            drop(call, _CANCELLED, None)
        return
    if resolve(call, _CANCELLED):
        scope = call._scope
        if scope is not None:
            scope.cancel()


def expire(call: Call) -> None:
    """*call*'s deadline passed: as :func:`cancel`, with :class:`DeadlineExceeded`."""
    if call._status is _QUEUED:
        if call._cell.mailbox.remove(call):
            drop(call, _EXPIRED, deadline_error(call, "queued"))
        return
    if resolve(call, _EXPIRED, None, deadline_error(call, "running")):
        scope = call._scope
        if scope is not None:
            scope.cancel()
