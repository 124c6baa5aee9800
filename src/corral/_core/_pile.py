"""The pile: every call an actor accepted, with its status, in arrival order.

The call itself, and the moves that change its status, live in
:mod:`._calls`; the pile is the actor's inventory of them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from ._calls import Call

__all__ = [
    "DEFAULT_HISTORY",
    "ActorState",
    "ActorStatus",
    "CallInfo",
    "CallStatus",
    "Pile",
]

#: How many finished calls an actor keeps for its status view.
DEFAULT_HISTORY: Final = 32


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

    def record(self, call: Call, outcome: CallStatus) -> None:
        """Count a call that left the pile with its final status, *outcome*."""
        self._outcomes[_OUTCOME_INDEX[outcome]] += 1
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
            oldest = max(0.0, now - queue[0].enqueued_at)
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
        return sorted([*self.running, *self.queue], key=_calls.arrival)

    def recent(self) -> tuple[Call, ...]:
        """Return the most recent finished calls, oldest first."""
        history = self._history
        return (*history[self._next :], *history[: self._next])


# The calls' module needs this one's statuses: imported last.
from . import _calls  # noqa: E402
