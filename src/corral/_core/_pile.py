"""The pile: every call an actor accepted, with its status, in arrival order."""

from __future__ import annotations

import contextvars
import enum
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._future import Future
from ._messages import Envelope

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._instrument import Instrument
    from ._ref import ActorRef

__all__ = [
    "DEFAULT_HISTORY",
    "ActorState",
    "ActorStatus",
    "Call",
    "CallInfo",
    "CallStatus",
    "Pile",
    "current_call",
]

#: How many finished calls an actor keeps for its status view.
DEFAULT_HISTORY: Final = 32

Handler = Callable[[Any, Any], Coroutine[Any, Any, Any]]


class CallStatus(enum.StrEnum):
    """Where a call is in its life.

    A member is its name as a string (``CallStatus.FAILED == "failed"``), so
    either spelling indexes :attr:`ActorStatus.counts`.
    """

    #: Accepted into the mailbox, waiting for a worker.
    QUEUED = "queued"
    #: A worker is running its handler.
    RUNNING = "running"
    #: Between attempts, waiting to try again (set by retry policies).
    RETRYING = "retrying"
    #: The handler returned a reply.
    SUCCEEDED = "succeeded"
    #: The handler raised, or the actor stopped before the call finished.
    FAILED = "failed"
    #: The caller cancelled the call.
    CANCELLED = "cancelled"
    #: The call's deadline passed.
    EXPIRED = "expired"


#: The statuses a call can leave the pile with.
FINISHED: Final = (
    CallStatus.SUCCEEDED,
    CallStatus.FAILED,
    CallStatus.CANCELLED,
    CallStatus.EXPIRED,
)

_OUTCOME_INDEX: Final[dict[CallStatus | None, int]] = {s: i for i, s in enumerate(FINISHED)}


class ActorState(enum.Enum):
    """Lifecycle state of an actor (its cell, which outlives instances)."""

    #: ``on_start`` is running; calls are accepted and wait.
    STARTING = "starting"
    #: Serving calls.
    RUNNING = "running"
    #: Waiting to be restarted by its supervisor; calls are accepted and wait.
    RESTARTING = "restarting"
    #: Draining: no new calls are accepted, queued ones still run.
    STOPPING = "stopping"
    #: Stopped for good after a normal stop.
    STOPPED = "stopped"
    #: Stopped for good after a crash that was not repaired by a restart.
    CRASHED = "crashed"


_seq = itertools.count()

#: The call whose handler the current task is running (set by the worker).
_current_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "corral_current_call", default=None
)


def current_call() -> Call | None:
    """Return the call whose handler is running in this task, or ``None`` outside handlers.

    Handlers and the libraries they use can read the call's deadline,
    attempt and envelope from it.
    """
    return _current_call.get()


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
        call._future = Future._make(call)
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
        attempt = _calls.next_attempt(self)
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
        _calls.retry_scheduled(self)
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
        error = None
        if fut.done() and fut._exc is not None:
            error = f"{type(fut._exc).__name__}: {fut._exc}"
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

    # Called by Future.cancel() and by waiters whose deadline passed.
    def _cancel(self) -> None:
        _calls.cancel(self)

    def _expire(self) -> None:
        _calls.expire(self)


class StreamState:
    """Where a streamed call's chunks go, how many went, and the last one."""

    __slots__ = ("count", "first_at", "last", "send")

    def __init__(self, send: MemoryObjectSendStream[Any]) -> None:
        self.send = send
        self.count = 0
        self.first_at: float | None = None
        self.last: Any = None


def stream_pump(
    gen: Callable[[Any, Any], AsyncIterator[Any]], state: StreamState, clock: Callable[[], float]
) -> Handler:
    """The handler a streamed call runs: drive the actor's generator into the caller's channel.

    It returns how many chunks it delivered; the channel is closed when the
    call's future resolves, however it ends.
    """

    async def pump(instance: Any, payload: Any) -> int:
        agen = gen(instance, payload)
        try:
            async for chunk in agen:
                if state.first_at is None:
                    state.first_at = clock()
                await state.send.send(chunk)
                state.count += 1
                state.last = chunk
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
        return state.count

    return pump


@attrs.frozen(kw_only=True)
class CallInfo:
    """A snapshot of one call, for status views."""

    #: The envelope id, as a string.
    id: str
    #: The message class name.
    message_type: str
    status: CallStatus
    attempt: int
    #: Times on the anyio clock.
    enqueued_at: float
    started_at: float | None
    finished_at: float | None
    #: ``"ErrorType: message"`` for a call that ended with an error.
    error: str | None

    def __str__(self) -> str:
        line = f"{self.id[:8]}  {self.message_type}  {self.status}  attempt {self.attempt}"
        if self.started_at is not None:
            end = self.finished_at
            if end is not None:
                line += f"  ran {_ms(end - self.started_at)}"
            line += f"  waited {_ms(self.started_at - self.enqueued_at)}"
        if self.error is not None:
            line += f"  {self.error}"
        return line


@attrs.frozen(kw_only=True)
class ActorStatus:
    """A snapshot of one actor's pile, returned by :meth:`ActorRef.status`.

    ``counts`` holds the calls queued and running now, and the calls that
    finished with each outcome since the actor was spawned, keyed by status
    name (``counts["failed"]``; a :class:`CallStatus` member works as a key
    too). ``str()`` of a status is a few lines a person can read at a glance;
    ``repr()`` shows every field.
    """

    name: str
    actor_class: str
    state: ActorState
    counts: Mapping[str, int]
    #: Calls waiting in the mailbox.
    queue_depth: int
    #: Calls whose handler is running.
    in_flight: int
    #: Senders waiting for room in the full mailbox (their calls not yet queued).
    waiting_senders: int
    #: Seconds the oldest queued call has waited, or ``None`` when none waits.
    oldest_wait: float | None
    mailbox_capacity: int
    max_concurrency: int
    #: How often the actor was restarted by its supervisor.
    restarts: int
    #: The calls queued and running now, in arrival order.
    active: tuple[CallInfo, ...]
    #: The most recent finished calls, oldest first.
    recent: tuple[CallInfo, ...]

    def __str__(self) -> str:
        counts = self.counts
        finished = ", ".join(f"{counts.get(s, 0)} {s}" for s in FINISHED)
        wait = "-" if self.oldest_wait is None else _ms(self.oldest_wait)
        lines = [
            f"actor {self.name!r} ({self.actor_class}): {self.state.value}, "
            f"restarts {self.restarts}",
            f"  calls:   {finished}",
            f"  now:     {self.queue_depth} queued of {self.mailbox_capacity} "
            f"(oldest waited {wait}), {self.in_flight} running of {self.max_concurrency}"
            + (f", {self.waiting_senders} senders waiting" if self.waiting_senders else ""),
        ]
        for title, calls in (("active", self.active), ("recent", self.recent)):
            if calls:
                lines.append(f"  {title}:")
                lines.extend(f"    {call}" for call in calls)
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


class Pile:
    """The inventory of one actor's calls.

    Queued calls live in the mailbox (its queue is the pile's queued part, in
    arrival order); running calls in an ordered dict; finished calls leave the
    pile, and the last few are kept in a bounded history. The pile is bounded
    by the mailbox capacity plus the concurrency limit.
    """

    __slots__ = ("_history", "_next", "_outcomes", "queue", "running")

    def __init__(self, queue: deque[Call]) -> None:
        self.queue = queue
        self.running: dict[Call, None] = {}
        self._outcomes = [0, 0, 0, 0]  # indexed like FINISHED
        # A ring of the last DEFAULT_HISTORY finished calls: a list that grows
        # to its bound and then wraps (a deque's first block alone would
        # double the memory of an idle actor).
        self._history: list[Call] = []
        self._next = 0

    def record(self, call: Call) -> None:
        """Count a call that left the pile with its final status."""
        self._outcomes[_OUTCOME_INDEX[call._status]] += 1
        history = self._history
        if len(history) < DEFAULT_HISTORY:
            history.append(call)
        else:
            history[self._next] = call
            self._next = (self._next + 1) % DEFAULT_HISTORY

    def snapshot(
        self,
        *,
        name: str,
        actor_class: str,
        state: ActorState,
        mailbox_capacity: int,
        waiting_senders: int,
        max_concurrency: int,
        restarts: int,
        now: float | None,
    ) -> ActorStatus:
        """The :class:`ActorStatus` of the pile's actor, at *now* (``None``: no clock to read)."""
        queue = self.queue
        counts: dict[str, int] = {str(s): n for s, n in self.outcomes().items()}
        counts["queued"] = len(queue)
        counts["running"] = len(self.running)
        oldest = None
        if queue and now is not None:
            oldest = max(0.0, now - queue[0]._enqueued_at)
        return ActorStatus(
            name=name,
            actor_class=actor_class,
            state=state,
            counts=counts,
            queue_depth=len(queue),
            in_flight=len(self.running),
            waiting_senders=waiting_senders,
            oldest_wait=oldest,
            mailbox_capacity=mailbox_capacity,
            max_concurrency=max_concurrency,
            restarts=restarts,
            active=tuple(c.info() for c in self.active()),
            recent=tuple(c.info() for c in self.recent()),
        )

    def outcomes(self) -> dict[CallStatus, int]:
        """Return how many calls finished with each outcome."""
        return dict(zip(FINISHED, self._outcomes, strict=True))

    def active(self) -> list[Call]:
        """Return the queued and running calls in arrival order."""
        return sorted([*self.running, *self.queue], key=lambda c: c._seq)

    def recent(self) -> tuple[Call, ...]:
        """Return the most recent finished calls, oldest first."""
        history = self._history
        return (*history[self._next :], *history[: self._next])


# The transitions' module needs CallStatus from this one: imported last.
from . import _calls  # noqa: E402
