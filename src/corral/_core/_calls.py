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

import contextvars
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from ._checks import check_timeout
from ._exceptions import DeadlineExceeded
from ._future import Future, set_cancelled, set_exception, set_result
from ._messages import Envelope, Kind, new_id
from ._pile import CallInfo, CallStatus

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._instrument import Instrument
    from ._ref import ActorRef, StreamState

__all__ = [
    "LEGAL",
    "Call",
    "Handler",
    "accept",
    "arrival",
    "cancel",
    "current_call",
    "current_call_var",
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

Handler = Callable[[Any, Any], Coroutine[Any, Any, Any]]

_seq = itertools.count()

#: The call whose handler the current task is running (set by the worker).
current_call_var: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "corral_current_call", default=None
)


def current_call() -> Call | None:
    """Return the call whose handler is running in this task, or ``None`` outside handlers.

    Handlers and the libraries they use can read the call's deadline,
    attempt and envelope from it.
    """
    return current_call_var.get()


class Call:
    """One accepted call, as the pile and instruments see it.

    Calls are made by the runtime; read them, do not construct them. The
    attributes are read-only views of the runtime's own record.
    """

    __slots__ = (
        "__weakref__",
        "_cell",
        "_deadline",
        "_enqueued_at",
        "_envelope",
        "_finished_at",
        "_func",
        "_future",
        "_outcome",
        "_scope",
        "_seq",
        "_started_at",
        "_status",
        "_stream",
        "instrument_data",
    )

    _cell: ActorCell
    _envelope: Envelope
    _func: Handler
    _deadline: float | None
    _future: Future[Any]
    _status: CallStatus | None
    _outcome: CallStatus | None
    _seq: int
    _enqueued_at: float
    _started_at: float | None
    _finished_at: float | None
    _scope: anyio.CancelScope | None
    _stream: StreamState | None
    #: Free slot for one instrument's per-call state (the tracing
    #: instrument keeps its spans here); ``None`` otherwise.
    instrument_data: Any

    def __init__(self) -> None:
        raise TypeError(
            "Call has no public constructor; the runtime makes one for each message sent"
        )

    @classmethod
    def _make(
        cls, cell: ActorCell, envelope: Envelope, func: Handler, deadline: float | None
    ) -> Call:
        """A call not yet queued (the runtime's constructor)."""
        call = object.__new__(cls)
        call._cell = cell
        call._envelope = envelope
        call._func = func
        call._deadline = deadline
        call._future = Future._make(call, deadline, cell.new_event)
        call._status = None
        call._outcome = None
        call._seq = next(_seq)
        call._enqueued_at = 0.0
        call._started_at = None
        call._finished_at = None
        call._scope = None
        call._stream = None
        call.instrument_data = None
        return call

    def __repr__(self) -> str:
        status = self._status.value if self._status is not None else "unaccepted"
        return (
            f"<corral.Call {type(self._envelope.payload).__name__} to "
            f"{self._envelope.target!r} {status}>"
        )

    @property
    def chunks(self) -> int:
        """Chunks a streamed call has delivered so far (0 for other calls)."""
        return self._stream.count if self._stream is not None else 0

    @property
    def is_stream(self) -> bool:
        """Whether the call is streamed (:meth:`corral.ActorRef.stream`)."""
        return self._stream is not None

    @property
    def last_chunk(self) -> Any:
        """The last chunk a streamed call delivered (``None`` before one, and for other calls).

        What a policy reads of a stream's outcome: a stream's handler
        returns no reply, and its last chunk may sum the stream up (as
        :class:`corral.OpenAIChat`'s does).
        """
        return self._stream.last if self._stream is not None else None

    @property
    def first_chunk_at(self) -> float | None:
        """When a streamed call delivered its first chunk, on the anyio clock."""
        return self._stream.first_at if self._stream is not None else None

    @property
    def envelope(self) -> Envelope:
        """The envelope the call arrived in."""
        return self._envelope

    @property
    def actor_name(self) -> str:
        """Name of the actor serving the call."""
        return self._cell.name

    @property
    def actor(self) -> Any:
        """The actor instance serving the call (the current incarnation)."""
        return self._cell.instance

    @property
    def actor_class(self) -> type:
        """The class of the actor the call is addressed to."""
        return self._cell.actor_class

    @property
    def actor_ref(self) -> ActorRef[Any, Any]:
        """The ref of the actor the call is addressed to."""
        return self._cell.ref

    @property
    def instruments(self) -> Iterable[Instrument]:
        """The instruments of the runtime serving the call (none when it has none)."""
        instruments = self._cell.instruments
        return () if instruments is None else instruments

    @property
    def outcome(self) -> CallStatus | None:
        """How the call ended, from the moment its future resolved; ``None`` before.

        :attr:`status` follows once the call has left the pile (a handler
        cancelled for a deadline is already ``EXPIRED`` here while it unwinds).
        """
        return self._outcome

    @property
    def future(self) -> Future[Any]:
        """The call's future."""
        return self._future

    @property
    def status(self) -> CallStatus | None:
        """Current status; ``None`` while the call waits for room in a full mailbox."""
        return self._status

    @property
    def attempt(self) -> int:
        """Attempt number of the current or last attempt, from 1."""
        return self._envelope.attempt

    @property
    def deadline(self) -> float | None:
        """Local deadline on the anyio clock (:func:`anyio.current_time`), or ``None``."""
        return self._deadline

    @property
    def enqueued_at(self) -> float:
        """When the call was accepted, on the anyio clock."""
        return self._enqueued_at

    @property
    def started_at(self) -> float | None:
        """When a worker first started the call, on the anyio clock."""
        return self._started_at

    @property
    def finished_at(self) -> float | None:
        """When the call left the pile, on the anyio clock."""
        return self._finished_at

    def remaining(self) -> float | None:
        """Seconds left until the call's deadline (never below 0), or ``None`` without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._cell.clock())

    def attempt_started(self) -> int:
        """Record that a policy starts another attempt of the handler; return its number.

        The first attempt is 1 and is recorded by the runtime; each call of
        this makes the next one. The call is ``RUNNING`` again and its
        envelope carries the new attempt number.
        """
        attempt = next_attempt(self)
        instruments = self._cell.instruments
        if instruments is not None:
            instruments.call("attempt_started", self)
        return attempt

    def attempt_finished(self, error: BaseException | None) -> None:
        """Record the end of the current attempt (``error`` is ``None`` for a success)."""
        instruments = self._cell.instruments
        if instruments is not None:
            instruments.call("attempt_finished", self, error)

    def retry_scheduled(self, delay: float, error: BaseException) -> None:
        """Record that the call will be tried again after *delay* seconds because of *error*."""
        retry_scheduled(self)
        instruments = self._cell.instruments
        if instruments is not None:
            instruments.call("retry_scheduled", self, delay, error)

    def waited(self, reason: str, seconds: float) -> None:
        """Record that the call waited *seconds* for *reason* (``"rate limit"``, ...)."""
        instruments = self._cell.instruments
        if instruments is not None:
            instruments.call("call_waited", self, reason, seconds)

    def info(self) -> CallInfo:
        """Return a frozen snapshot of the call for status views."""
        fut = self._future
        exc = fut.exception() if fut.done() else None
        error = None if exc is None else f"{type(exc).__name__}: {exc}"
        return CallInfo(
            id=str(self._envelope.id),
            message_type=type(self._envelope.payload).__qualname__,
            status=self._status if self._status is not None else CallStatus.QUEUED,
            attempt=self._envelope.attempt,
            enqueued_at=self._enqueued_at,
            started_at=self._started_at,
            finished_at=self._finished_at,
            error=error,
        )


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
    cell: ActorCell,
    msg: object,
    kind: Kind,
    timeout: float | None,
    func: Handler | None = None,
    stream: StreamState | None = None,
) -> Call:
    """The call of *msg* to the actor of *cell* (validated, with its deadline), not yet queued.

    A streamed call's handler (*func*) delivers its chunks to *stream*.

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
    call._stream = stream
    return call


def from_envelope(
    cell: ActorCell, envelope: Envelope, func: Handler, stream: StreamState | None = None
) -> Call:
    """The call of an envelope that arrived from elsewhere; its wall-clock deadline made local."""
    now = cell.clock()
    deadline = None
    if envelope.deadline is not None:
        deadline = now + (envelope.deadline - time.time())
    call = Call._make(cell, envelope, func, deadline)
    call._enqueued_at = now
    call._stream = stream
    return call


def accept(call: Call, now: float | None = None) -> None:
    """The mailbox took *call*: it waits for a worker.

    A call whose sender waited for room counts from its admission (*now*).
    """
    _move(call, _QUEUED)
    if now is not None:
        call._enqueued_at = now
    instruments = call._cell.instruments
    if instruments is not None:
        instruments.call("call_submitted", call)


def start(call: Call, now: float, scope: anyio.CancelScope) -> Handler:
    """A worker runs *call*'s handler from *now* on, in *scope*; return the handler.

    Cancelling or expiring the call cancels *scope* until the call leaves
    the pile (or goes back in line).
    """
    _move(call, _RUNNING)
    call._started_at = now
    call._scope = scope
    cell = call._cell
    cell.pile.running[call] = None
    instruments = cell.instruments
    if instruments is not None:
        instruments.call("call_started", call)
    return call._func


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
    assert outcome in _DONE, f"{outcome} is not an outcome"
    before = call._outcome
    call._outcome = outcome  # before the future resolves: its callbacks read it
    if outcome is _CANCELLED:
        resolved = set_cancelled(fut)
    elif exc is not None:
        resolved = set_exception(fut, exc)
    else:
        resolved = set_result(fut, value)
    if not resolved:
        call._outcome = before
        return False
    if exc is not None and call._envelope.kind is Kind.ONE_WAY and outcome is _FAILED:
        # Nobody holds a one-way message's future: the error is kept
        # in the pile's history and reported here.
        logger.warning(
            "one-way %s to actor %r failed",
            type(call._envelope.payload).__qualname__,
            call._cell.name,
            exc_info=exc,
        )
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
    call._scope = None
    cell = call._cell
    call._finished_at = cell.clock()
    cell.pile.running.pop(call, None)
    cell.pile.record(call, outcome)
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
    call._scope = None
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


def arrival(call: Call) -> int:
    """*call*'s place in its actor's line: its arrival number (kept when it goes back in line)."""
    return call._seq
