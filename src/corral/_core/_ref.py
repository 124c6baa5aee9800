"""Refs: the handles users hold on actors (and their streams) and on supervisors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _calls as calls
from ._calls import Call, Handler, current_call_var
from ._checks import check_timeout
from ._exceptions import InvalidStateError, MailboxFull
from ._future import Future
from ._messages import UNSET, Kind, Ping, _Unset
from ._pile import ActorState, ActorStatus

if TYPE_CHECKING:
    from ._actor import Actor
    from ._cell import ActorCell
    from ._policy import CallPolicy
    from ._specs import ChildInfo, ChildSpec, Strategy, Supervisor
    from ._supervisor import SupervisorNode

__all__ = ["STREAM_BUFFER", "ActorRef", "Stream", "StreamState", "SupervisorRef", "stream_pump"]

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")

_REQUEST = Kind.REQUEST
_ONE_WAY = Kind.ONE_WAY


class ActorRef(Generic[ReqT, ReplyT]):
    """A handle for sending calls to one actor.

    Returned by :meth:`Runtime.spawn` and :meth:`Runtime.ref`; it has no public
    constructor. A ref stays valid across restarts of its actor; once the
    actor has stopped for good, sending raises :class:`ActorStopped`.

    Every send checks the message first: a message the actor does not handle
    is refused with :class:`UnhandledMessage` and nothing is queued.

    The awaiting sends (``submit``, ``ask``, ``tell``) are cancellation
    points; they only switch tasks when they have to wait, like trio's
    ``*_nowait`` calls plus a cancellation check.
    """

    __slots__ = ("_cell",)

    _cell: ActorCell

    def __init__(self) -> None:
        raise TypeError("ActorRef has no public constructor; use Runtime.spawn() or Runtime.ref()")

    @classmethod
    def _make(cls, cell: ActorCell) -> ActorRef[Any, Any]:
        ref = object.__new__(cls)
        ref._cell = cell
        return ref

    def __repr__(self) -> str:
        return f"<corral.ActorRef {self._cell.name!r} {self._cell.state.value}>"

    @property
    def name(self) -> str:
        """The actor's registered name."""
        return self._cell.name

    @property
    def actor_class(self) -> type[Actor[Any, Any]]:
        """The class of the actor (the declared message types are on it)."""
        return self._cell.actor_class

    @property
    def policy(self) -> CallPolicy | None:
        """The policy the actor's calls run under (its child spec's, else its class's), if any."""
        return self._cell.policy

    @property
    def queue_depth(self) -> int:
        """Calls waiting in the actor's mailbox now (cheap; :meth:`status` has the rest)."""
        return len(self._cell.mailbox.queue)

    @property
    def in_flight(self) -> int:
        """Calls whose handler is running now."""
        return len(self._cell.pile.running)

    @property
    def state(self) -> ActorState:
        """The actor's lifecycle state."""
        return self._cell.state

    async def submit(self, msg: ReqT, *, timeout: float | None = None) -> Future[ReplyT]:
        """Send a request and return its future once the mailbox accepted it.

        Waits while the mailbox is full (back-pressure), first come first
        served. *timeout* sets the call's deadline, counted from now: it
        covers the wait for room, the queue and the handler.

        Raises:
            UnhandledMessage: The actor does not handle this message type.
            ActorStopped: The actor is stopping or stopped.
            ValueError: *timeout* is negative.
        """
        cell = self._cell
        await cell.checkpoint_if_cancelled()
        call = calls.new(cell, msg, _REQUEST, timeout)
        if not cell.enqueue_nowait(call):
            await cell.mailbox.put(call)
        return call.future

    def try_submit(self, msg: ReqT, *, timeout: float | None = None) -> Future[ReplyT]:
        """Send a request if the mailbox has room, else refuse at once.

        Raises:
            MailboxFull: The mailbox is full; nothing was queued.
            UnhandledMessage: The actor does not handle this message type.
            ActorStopped: The actor is stopping or stopped.
        """
        cell = self._cell
        call = calls.new(cell, msg, _REQUEST, timeout)
        if not cell.enqueue_nowait(call):
            raise MailboxFull(
                f"mailbox of actor {cell.name!r} is full ({cell.mailbox.capacity} calls)"
            )
        return call.future

    async def ask(self, msg: ReqT, *, timeout: float | None = None) -> ReplyT:
        """Send a request and wait for the reply.

        If the caller is cancelled while waiting, the call is cancelled too
        (taken out of the queue, or its handler cancelled).

        Raises:
            DeadlineExceeded: *timeout* passed before the reply came.
            ActorStopped: The actor stopped before replying.
            InvalidStateError: An actor with ``max_concurrency=1`` asks itself
                (the reply could never come).
            UnhandledMessage: The actor does not handle this message type.
            Exception: Whatever the handler raised.
        """
        cell = self._cell
        current = current_call_var.get()
        if current is not None and cell.max_concurrency == 1 and current.actor_ref == self:
            raise InvalidStateError(
                f"actor {cell.name!r} asked itself from its own handler; with "
                "max_concurrency=1 the reply could never come (use tell, or submit "
                "without awaiting)"
            )
        call = calls.new(cell, msg, _REQUEST, timeout)
        if not cell.enqueue_nowait(call):
            await cell.mailbox.put(call)
        fut: Future[ReplyT] = call.future
        try:
            return await fut
        finally:
            if not fut.done():
                fut.cancel()

    async def tell(self, msg: ReqT) -> None:
        """Send a one-way message, waiting while the mailbox is full.

        Nobody receives its outcome: a handler error is logged on the
        ``corral`` logger and counted in the actor's status.

        Raises:
            UnhandledMessage: The actor does not handle this message type.
            ActorStopped: The actor is stopping or stopped.
        """
        cell = self._cell
        await cell.checkpoint_if_cancelled()
        call = calls.new(cell, msg, _ONE_WAY, None)
        if not cell.enqueue_nowait(call):
            await cell.mailbox.put(call)

    def try_tell(self, msg: ReqT) -> None:
        """Send a one-way message if the mailbox has room, else refuse at once.

        Raises:
            MailboxFull: The mailbox is full; nothing was queued.
        """
        cell = self._cell
        call = calls.new(cell, msg, _ONE_WAY, None)
        if not cell.enqueue_nowait(call):
            raise MailboxFull(
                f"mailbox of actor {cell.name!r} is full ({cell.mailbox.capacity} calls)"
            )

    async def ping(self, *, timeout: float | None = None) -> None:
        """Round-trip a :class:`corral.Ping` system message through the mailbox.

        Returns once the actor took it, which proves that everything queued
        before it was taken too. System messages get in even when the
        mailbox is full.

        Raises:
            DeadlineExceeded: *timeout* passed first.
            ActorStopped: The actor stopped first.
        """
        cell = self._cell
        await cell.checkpoint_if_cancelled()
        from ._actor import pong as _pong

        call = calls.new(cell, Ping(), Kind.SYSTEM, timeout, _pong)
        cell.enqueue_nowait(call, force=True)
        fut = call.future
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def stream(self, msg: ReqT, *, timeout: float | None = None) -> Stream[Any]:
        """Send a request whose reply comes in chunks, and read them as they arrive.

        ::

            async with chat.stream(ChatRequest(...), timeout=30) as chunks:
                async for chunk in chunks:
                    print(chunk.content, end="")

        The call is admitted like any other (mailbox, the actor's policy: rate
        limit, concurrency, deadline) and is one call in the pile and in
        traces. Leaving the ``async with`` early cancels it at once and
        releases what it held. The actor declares the handler with
        :func:`corral.streams`.

        Raises:
            UnhandledMessage: The actor streams no replies to this type (on entering).
            ActorStopped: The actor is not accepting calls (on entering).
        """
        return Stream._make(self._cell, msg, timeout)

    async def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the actor has stopped for good; return whether it has.

        For good means not to be restarted: stopped by its supervisor, a
        temporary actor that ended, or its runtime closing. Every call sent
        to it has resolved by then. With *timeout*, waits at most that many
        seconds and returns ``False`` if the actor is still there; waiting
        (and timing out) changes nothing for the actor.
        """
        cell = self._cell
        if timeout is None:
            await cell.wait_finalized()
        else:
            check_timeout(timeout)
            with anyio.move_on_after(timeout):
                await cell.wait_finalized()
        return cell.finalized

    def status(self) -> ActorStatus:
        """Return a snapshot of the actor's pile: counts, queue depth, in-flight, recent calls."""
        return self._cell.status()

    async def stop(self, *, timeout: float | _Unset | None = UNSET) -> None:
        """Stop the actor for good and wait until it has stopped.

        Intake stops at once (new sends raise :class:`ActorStopped`); queued
        and running calls are served for up to *timeout* seconds (default:
        the actor's ``shutdown`` time; ``None`` waits without limit), then cancelled and failed with
        :class:`ActorStopped`; then ``on_stop`` runs.
        """
        cell = self._cell
        cell.request_stop(cell.shutdown if isinstance(timeout, _Unset) else timeout)
        await cell.wait_settled()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return hash(self._cell)


#: Chunks a streamed call may have delivered ahead of its reader.
STREAM_BUFFER = 16


class Stream(Generic[ReplyT]):
    """The chunks of one streamed call (made by :meth:`ActorRef.stream`).

    Use it as an async context manager and iterate it. When the handler
    fails, iterating raises its error after the chunks that came before it;
    when the deadline passes, :class:`DeadlineExceeded`.
    """

    _cell: ActorCell
    _msg: Any
    _timeout: float | None
    _call: Call | None
    _recv: MemoryObjectReceiveStream[Any] | None

    def __init__(self) -> None:
        raise TypeError("Stream has no public constructor; use ActorRef.stream()")

    @classmethod
    def _make(cls, cell: ActorCell, msg: Any, timeout: float | None) -> Stream[Any]:
        stream: Stream[Any] = object.__new__(cls)
        stream._cell = cell
        stream._msg = msg
        stream._timeout = timeout
        stream._call = None
        stream._recv = None
        return stream

    @property
    def future(self) -> Future[int]:
        """The call's future: the number of chunks, once the stream ended."""
        if self._call is None:
            raise InvalidStateError("the stream has not been opened: use 'async with'")
        return self._call.future

    async def __aenter__(self) -> Stream[ReplyT]:
        cell = self._cell
        await cell.checkpoint_if_cancelled()
        gen = cell.lookup_stream(self._msg)
        send, recv = anyio.create_memory_object_stream[Any](STREAM_BUFFER)
        state = StreamState(send)
        call = calls.new(
            cell, self._msg, _REQUEST, self._timeout, stream_pump(gen, state, cell.clock), state
        )
        try:
            if not cell.enqueue_nowait(call):
                await cell.mailbox.put(call)
        except BaseException:
            send.close()
            recv.close()
            raise
        self._call = call
        self._recv = recv
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        call, recv = self._call, self._recv
        if call is not None and not call.future.done():
            call.future.cancel()  # the caller stopped reading: release everything now
        if recv is not None:
            recv.close()

    def __aiter__(self) -> Stream[ReplyT]:
        return self

    async def __anext__(self) -> ReplyT:
        call, recv = self._call, self._recv
        if call is None or recv is None:
            raise InvalidStateError("the stream has not been opened: use 'async with'")
        try:
            deadline = call.deadline
            if deadline is None:
                return await recv.receive()  # type: ignore[no-any-return]
            with anyio.CancelScope(deadline=deadline) as scope:
                chunk = await recv.receive()
            if not scope.cancelled_caught:
                return chunk  # type: ignore[no-any-return]
            calls.expire(call)  # the deadline passed while waiting for a chunk
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        await call.future  # the handler's error, if it failed
        raise StopAsyncIteration


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


class SupervisorRef:
    """A running supervisor: its children, and starting and stopping them while it runs.

    The runtime builds one from each :class:`Supervisor` spec of its tree;
    get it with :meth:`Runtime.supervisor` (``rt.supervisor("root")``, or
    :attr:`Runtime.root`), or from :meth:`start_child` when the child is a
    supervisor. It has no public constructor. It lives as long as its
    runtime: a supervisor that its parent restarts is the same
    ``SupervisorRef`` (and keeps its children's mailboxes).
    """

    __slots__ = ("_node",)

    _node: SupervisorNode

    def __init__(self) -> None:
        raise TypeError(
            "SupervisorRef has no public constructor; describe a tree with corral.Supervisor "
            "and get the running one with Runtime.supervisor(name)"
        )

    @classmethod
    def _make(cls, node: SupervisorNode) -> SupervisorRef:
        ref = object.__new__(cls)
        ref._node = node
        return ref

    def __repr__(self) -> str:
        return repr(self._node)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SupervisorRef) and other._node is self._node

    def __hash__(self) -> int:
        return hash(self._node)

    @property
    def spec(self) -> Supervisor:
        """The spec the supervisor was built from."""
        return self._node.spec

    @property
    def name(self) -> str:
        """The supervisor's name (``"root"`` for a root spec without one)."""
        return self._node.name

    @property
    def strategy(self) -> Strategy:
        """Which children restart when one exits."""
        return self._node.strategy

    def children(self) -> list[ChildInfo]:
        """Return the children in start order: name, kind, state, restart count, last error."""
        return self._node.children()

    def ref(self, name: str) -> ActorRef[Any, Any]:
        """Return the ref of this supervisor's actor child *name*.

        Raises:
            ActorNotFound: No such actor child.
        """
        return self._node.ref(name)

    async def start_child(self, spec: ChildSpec | Supervisor) -> ActorRef[Any, Any] | SupervisorRef:
        """Add a child at the end of the list and start it; return its ref (or the supervisor).

        Raises:
            NameTaken: The name is in use in the runtime.
            ActorCrashed: The child failed to start (``__cause__`` says why).
            InvalidStateError: The supervisor is not running.
            TypeError, ValueError: *spec* is not a child spec or a named Supervisor.
        """
        return await self._node.start_child(spec)

    async def stop_child(self, name: str) -> None:
        """Stop the child *name* for good (draining it first) and remove it.

        Raises:
            NotFound: No child has that name.
        """
        await self._node.stop_child(name)
