"""The bounded mailbox in front of an actor.

A purpose-built FIFO on a ``deque`` and :class:`anyio.Event` wake-ups rather
than an anyio memory object stream, for three reasons the stream cannot
serve: a cancelled or expired call must leave the queue at once (so it stops
taking room), the queue must survive the actor instance behind it (restarts
keep queued work), and system messages must get in even when it is full. It is
also cheaper per message (see ``benchmarks/``).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

import anyio

from . import _calls
from ._exceptions import ActorStopped

if TYPE_CHECKING:
    from ._calls import Call

__all__ = ["DEFAULT_MAILBOX_CAPACITY", "Mailbox"]

#: Default number of calls a mailbox holds before senders wait.
DEFAULT_MAILBOX_CAPACITY: Final = 1000


class _Putter:
    __slots__ = ("accepted", "call", "event")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.event = anyio.Event()
        self.accepted = False


class Mailbox:
    """A bounded FIFO of calls with back-pressure.

    ``put_nowait`` refuses when full; ``put`` waits for room, first come first
    served: a freed slot goes to the sender that has waited longest, whose
    call is moved into the queue before it even wakes up. ``close`` stops
    intake but leaves the queued calls to be drained.
    """

    __slots__ = ("_putters", "capacity", "closed", "getters", "name", "on_accept", "queue")

    def __init__(self, capacity: int, name: str = "") -> None:
        self.capacity = capacity
        self.name = name
        self.queue: deque[Call] = deque()
        self.closed = False
        #: Events of workers parked waiting for a call; put wakes the last one.
        self.getters: list[anyio.Event] = []
        self._putters: deque[_Putter] | None = None
        #: Called with each call as it is accepted (set by the actor cell).
        self.on_accept: object = None

    def __len__(self) -> int:
        return len(self.queue)

    @property
    def idle_getters(self) -> int:
        """Number of workers parked waiting for a call."""
        return len(self.getters)

    @property
    def waiting_senders(self) -> int:
        """Number of senders waiting for room."""
        return len(self._putters) if self._putters else 0

    def _stopped_error(self) -> ActorStopped:
        return ActorStopped(
            f"actor {self.name!r} is not accepting calls (it is stopping or stopped)"
        )

    # --- sending ---------------------------------------------------------------

    def put_nowait(self, call: Call, *, force: bool = False) -> bool:
        """Queue *call* if there is room (or *force*); return whether it was queued.

        Raises:
            ActorStopped: The mailbox is closed.
        """
        if self.closed:
            raise self._stopped_error()
        if not force and (len(self.queue) >= self.capacity or self._putters):
            return False
        self.queue.append(call)
        if self.getters:
            self.getters.pop().set()
        return True

    async def put(self, call: Call) -> None:
        """Queue *call*, waiting in line while the mailbox is full.

        If the sender is cancelled after its call was already moved into the
        queue, the call is taken out again before the cancellation goes on, so
        a call nobody holds a future for is never run.

        Raises:
            ActorStopped: The mailbox is closed, now or while waiting.
        """
        if self.put_nowait(call):
            return
        putters = self._putters
        if putters is None:
            putters = self._putters = deque()
        putter = _Putter(call)
        putters.append(putter)
        try:
            await putter.event.wait()
        except BaseException:
            if putter.accepted:
                self.remove(call)
            else:
                putters.remove(putter)
            raise
        if not putter.accepted:
            raise self._stopped_error()

    # --- receiving -------------------------------------------------------------

    def get_nowait(self) -> Call | None:
        """Take the oldest call, or return ``None`` if the queue is empty."""
        queue = self.queue
        if not queue:
            return None
        call = queue.popleft()
        if self._putters:
            self._admit()
        return call

    def remove(self, call: Call) -> bool:
        """Take *call* out of the queue; return whether it was there."""
        try:
            self.queue.remove(call)
        except ValueError:
            return False
        if self._putters:
            self._admit()
        return True

    def _admit(self) -> None:
        # Move waiting senders' calls in while there is room, oldest first.
        putters = self._putters
        assert putters is not None
        while putters and len(self.queue) < self.capacity:
            putter = putters.popleft()
            putter.accepted = True
            self.queue.append(putter.call)
            callback = self.on_accept
            if callback is not None:
                callback(putter.call)  # type: ignore[operator]
            putter.event.set()
        if self.queue and self.getters:
            self.getters.pop().set()

    def park(self, event: anyio.Event) -> None:
        """Register *event* of a worker waiting for a call; the next put sets it."""
        self.getters.append(event)

    def unpark(self, event: anyio.Event) -> None:
        """Forget *event* of a worker that stopped waiting before a put set it."""
        if not event.is_set():
            self.getters.remove(event)

    def wake_getters(self) -> None:
        """Wake every parked worker (each finds out why: a halt, a close)."""
        for event in self.getters:
            event.set()
        self.getters.clear()

    def requeue(self, call: Call) -> None:
        """Put *call* back in its place in line: before every call that arrived after it.

        No room is checked: the call held its place already.
        """
        queue = self.queue
        index = len(queue)
        place = _calls.arrival(call)
        for i, other in enumerate(queue):
            if _calls.arrival(other) > place:
                index = i
                break
        queue.insert(index, call)

    def check_open(self) -> None:
        """Raise :class:`ActorStopped` if the mailbox takes no more calls."""
        if self.closed:
            raise self._stopped_error()

    def reopen(self) -> None:
        """Take calls again (the next incarnation); what is queued stays."""
        self.closed = False

    def close(self) -> None:
        """Stop intake: refuse new calls and fail waiting senders; queued calls stay."""
        self.closed = True
        self.wake_getters()
        if self._putters:
            for putter in self._putters:
                putter.event.set()
            self._putters.clear()
