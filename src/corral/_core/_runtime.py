"""The runtime: the root scope every actor lives in, and the name registry."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from . import _calls as calls
from ._actor import Actor
from ._actor import pong as _pong
from ._cell import DEFAULT_SHUTDOWN, ActorCell
from ._checks import check_timeout
from ._clock import Clock, LoopClock
from ._context import TreeContext
from ._exceptions import (
    ActorNotFound,
    InvalidStateError,
    MailboxFull,
    NotFound,
    SupervisorGaveUp,
    UnhandledMessage,
)
from ._future import Future, pending, set_result
from ._instrument import Instrument, Instruments, default_instruments
from ._loop import LoopHooks
from ._mailbox import DEFAULT_MAILBOX_CAPACITY
from ._messages import UNSET, Envelope, GetStatus, Kind, Ping, Stop, _Unset
from ._pile import ActorStatus
from ._policy import CallPolicy
from ._ref import ActorRef, StreamState, SupervisorRef, stream_pump
from ._specs import TEMPORARY, Restart, Supervisor, child, exported_children
from ._supervisor import SupervisorNode

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from .._cluster._node import ClusterNode
    from .._cluster._remote import RemoteRef
    from .._cluster._spec import Cluster

__all__ = ["Runtime"]

logger = logging.getLogger("corral")

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")


class _RuntimeState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Runtime:
    """The root scope of a corral application: its supervision tree and name registry.

    ::

        async with corral.Runtime() as rt:
            calc = await rt.spawn(Calculator, name="calc")
            print(await calc.ask(Add(a=1, b=2)))

        async with corral.Runtime(tree) as rt:   # a Supervisor with children
            chat = rt.ref("chat")

    Entering starts the tree (children in order, each ready before the
    next). Everything runs inside the ``async with`` block. On a normal exit
    the runtime stops the tree in reverse start order: each actor stops
    intake and drains its queued and running calls, all within
    *shutdown_timeout* seconds in total; what is left after that is
    cancelled and failed with :class:`ActorStopped`. When the block exits
    with an exception or is cancelled, nothing is drained: every actor is
    cancelled at once (``on_stop`` still runs, bounded) and the exception
    propagates unchanged. When the root supervisor gives up, the block is
    cancelled, everything is stopped, and :class:`SupervisorGaveUp` is raised.
    Either way no task outlives the block and every future is resolved.

    Args:
        tree: The root :class:`Supervisor` spec; default: an empty
            one-for-one supervisor named ``"root"``. The runtime builds its
            running supervisors from it (:meth:`supervisor`); the spec itself
            is not changed, and may run in other runtimes too.
        shutdown_timeout: Seconds the whole drain may take on a normal exit;
            also the default ``shutdown`` of actors made with :meth:`spawn`.
            ``None``: no limit.
        instruments: :class:`Instrument` objects that receive call and
            supervision events.
        clock: The :class:`Clock` for restart intensity and backoff; default
            the event loop's clock. Tests pass a :class:`corral.testing.ManualClock`.
        cluster: A :class:`corral.Cluster` to join (the ``cluster`` extra):
            entering connects to its NATS servers and serves the tree's
            exported children (``child(..., export=True)``) to it;
            :meth:`remote` reaches actors served anywhere in it. asyncio only.
    """

    def __init__(
        self,
        tree: Supervisor | None = None,
        *,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN,
        instruments: Iterable[Instrument] = (),
        clock: Clock | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        check_timeout(shutdown_timeout, "shutdown_timeout")
        if tree is not None and not isinstance(tree, Supervisor):
            raise TypeError(f"the tree must be a corral.Supervisor, got {tree!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must be a corral.Clock, got {clock!r}")
        self.shutdown_timeout = shutdown_timeout
        self.clock: Clock = clock if clock is not None else LoopClock()
        self._given_instruments = Instruments(instruments)
        self._instruments: Instruments | None = None
        self.tree = tree if tree is not None else Supervisor()
        self._root = SupervisorNode(self.tree)
        self._state = _RuntimeState.NEW
        self._context = TreeContext(self.clock)
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._loop: LoopHooks | None = None
        self._root_done: anyio.Event | None = None
        self._failure: SupervisorGaveUp | None = None
        from .._cluster._spec import Cluster

        if cluster is not None and not isinstance(cluster, Cluster):
            raise TypeError(f"cluster must be a corral.Cluster, got {cluster!r}")
        self.cluster = cluster
        self._node: ClusterNode | None = None

    def __repr__(self) -> str:
        return f"<corral.Runtime {self._state.value} actors={len(self._context.cells)}>"

    @property
    def root(self) -> SupervisorRef:
        """The running root supervisor (``supervisor("root")`` when the root has no name)."""
        return self._root.handle

    async def __aenter__(self) -> Runtime:
        if self._state is not _RuntimeState.NEW:
            raise InvalidStateError(
                f"a Runtime can be entered only once; this one is {self._state.value}"
            )
        if self.cluster is not None:
            self._node = _join(self.cluster, self)
        instruments = self._given_instruments
        for extra in default_instruments(instruments):
            instruments.add(extra)
        if self._node is not None:
            # The node's record counts retries per actor.
            instruments.add(self._node.members.instrument)
        self._instruments = instruments if instruments else None
        context = self._context
        context.instruments = self._instruments
        self._root.bind(context, None)
        stack = AsyncExitStack()
        self._loop = context.loop = LoopHooks()
        self._root_done = anyio.Event()
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        self._stack = stack
        self._state = _RuntimeState.RUNNING
        try:
            if self._node is not None:
                await self._node.open(self._tg)
            await self._tg.start(self._run_root, name="corral supervisor root")
        except BaseException:
            self._tg.cancel_scope.cancel()
            await stack.aclose()
            self._state = _RuntimeState.CLOSED
            raise
        error = self._root.start_error
        if error is not None:
            await self._root_done.wait()
            if self._node is not None:
                await self._node.close()
            # The node's loops run until cancelled: the block must not wait for them.
            self._tg.cancel_scope.cancel()
            await stack.aclose()
            self._state = _RuntimeState.CLOSED
            raise error
        if self._node is not None:
            try:
                await self._node.started()
                for spec in exported_children(self.tree):
                    await self._node.serve(spec)
                # Children started later are served (and stopped ones no more) as they come.
                self._context.exports = self._node
            except BaseException as exc:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
                raise
        if self._instruments is not None:
            self._instruments.call("runtime_started", self)
        return self

    async def _run_root(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        assert self._root_done is not None and self._tg is not None
        try:
            await self._root.serve(task_status=task_status)
        except SupervisorGaveUp as exc:
            # The root gave up: nothing repairs it. End the tree, then cancel
            # the block so that __aexit__ raises the failure.
            self._failure = exc
            self._root.end_all()
            self._tg.cancel_scope.cancel()
        finally:
            self._root_done.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._stack is not None
        assert self._tg is not None
        assert self._root_done is not None
        self._state = _RuntimeState.CLOSING
        graceful = exc is None and self._failure is None
        try:
            # On an error or a cancellation the stop sequence must still run,
            # so it is shielded; every step in it is bounded (zero drain time,
            # on_stop limited by each actor's shutdown time).
            with anyio.CancelScope(shield=not graceful):
                if self._node is not None:
                    self._node.stop_fetching()
                self._root.request_stop(
                    final=True, timeout=self.shutdown_timeout if graceful else 0
                )
                await self._root_done.wait()
                if self._node is not None:
                    await self._node.close()
                if self._instruments is not None:
                    for item in self._instruments:
                        try:
                            await item.runtime_closing(self)
                        except Exception:
                            logger.exception("instrument %r raised in runtime_closing", item)
        finally:
            self._tg.cancel_scope.cancel()
            if self._failure is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
                # The block was cancelled by the runtime itself (the root gave
                # up): let the task group take back its own cancellation.
                await self._stack.__aexit__(type(exc), exc, tb)
            else:
                # The task group exits without the block's exception, so the
                # user sees that exception itself, not an exception group.
                await self._stack.aclose()
            self._state = _RuntimeState.CLOSED
        if self._failure is not None:
            raise self._failure
        return False

    def _check_running(self) -> None:
        if self._state is not _RuntimeState.RUNNING:
            raise InvalidStateError(
                f"the runtime is {self._state.value}; spawn actors inside 'async with Runtime()'"
            )

    async def spawn(
        self,
        actor: Callable[[], Actor[ReqT, ReplyT]],
        *,
        name: str,
        mailbox: int = DEFAULT_MAILBOX_CAPACITY,
        max_concurrency: int = 1,
        shutdown: float | _Unset | None = UNSET,
        restart: Restart = TEMPORARY,
        policy: CallPolicy | None = None,
    ) -> ActorRef[ReqT, ReplyT]:
        """Start an actor as a child of the root supervisor and return its ref once ready.

        Args:
            actor: The actor class, or any callable that returns a new
                instance (a restart calls it again).
            name: Unique name to register the actor under.
            mailbox: Capacity of the mailbox: how many calls may wait.
            max_concurrency: How many calls may run at once (1: strictly in
                arrival order).
            shutdown: Seconds the actor gets to drain on stop, and separately
                to run ``on_stop``; ``None`` for no limit. Default: the
                runtime's ``shutdown_timeout``.
            restart: :data:`TEMPORARY` by default: an actor spawned at run
                time is not restarted unless you ask for it
                (:data:`PERMANENT`, :data:`TRANSIENT`), and then counts
                toward the root supervisor's restart intensity.
            policy: How its calls run (a :class:`corral.ServicePolicy`);
                default the actor class's ``policy``.

        Returns once ``on_start`` has finished.

        Raises:
            NameTaken: *name* is registered already.
            ValueError: A capacity, concurrency or timeout is out of range.
            TypeError: *actor* does not make an :class:`Actor` that declares
                at least one message type.
            ActorCrashed: ``on_start`` raised; ``__cause__`` holds its error.
            InvalidStateError: The runtime is not running.
        """
        self._check_running()
        spec = child(
            actor,
            name=name,
            restart=restart,
            shutdown=self.shutdown_timeout if isinstance(shutdown, _Unset) else shutdown,
            mailbox=mailbox,
            max_concurrency=max_concurrency,
            policy=policy,
        )
        self._context.check_name_free(name)
        ref = await self._root.start_child(spec)
        assert isinstance(ref, ActorRef)
        return ref

    def supervisor(self, name: str) -> SupervisorRef:
        """Return the running supervisor named *name* (``"root"`` for a root without a name).

        It is built from the spec of that name in the tree (or given to
        :meth:`SupervisorRef.start_child`), and lives as long as the runtime.

        Raises:
            NotFound: No supervisor has that name.
        """
        try:
            return self._context.supervisors[name].handle
        except KeyError:
            raise NotFound(f"no supervisor named {name!r} in this runtime") from None

    def ref(self, name: str) -> ActorRef[Any, Any]:
        """Return the ref of the live actor registered as *name*.

        Raises:
            ActorNotFound: No live actor has that name.
        """
        return self._cell(name).ref

    def _cell(self, name: str) -> ActorCell:
        cell = self._context.cells.get(name)
        if cell is None:
            known = ", ".join(repr(n) for n in list(self._context.cells)[:10]) or "none"
            raise ActorNotFound(f"no live actor named {name!r} (running: {known})")
        return cell

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        """The instruments the running runtime reports to (its own, and the default one)."""
        return tuple(self._instruments) if self._instruments is not None else ()

    def remote(self, name: str) -> RemoteRef[Any, Any]:
        """Return a ref to the actor served to the cluster as *name*, by whichever node.

        The actor need not be running yet, nor anywhere in particular: its
        calls wait in the cluster's stream for a node that serves it (until
        their deadline, or the mailbox bound).

        Raises:
            InvalidStateError: The runtime has no cluster, or is not running.
            ValueError: *name* is empty.
        """
        self._check_running()
        if self._node is None:
            raise InvalidStateError(
                "this runtime has no cluster: Runtime(tree, cluster=corral.Cluster(...))"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"an actor name must be a non-empty str, got {name!r}")
        from .._cluster._remote import remote_ref

        return remote_ref(self._node, name)

    def refs(self) -> tuple[ActorRef[Any, Any], ...]:
        """Return the refs of all live actors, in spawn order."""
        # list() first: a metrics reader thread may walk it while actors come and go.
        return tuple(cell.ref for cell in list(self._context.cells.values()))

    def status(self) -> dict[str, ActorStatus]:
        """Return a status snapshot of every live actor, by name, in spawn order."""
        return {name: cell.status() for name, cell in self._context.cells.items()}

    async def deliver(
        self,
        envelope: Envelope,
        *,
        track: bool = False,
        wait: bool = True,
        chunks: MemoryObjectSendStream[Any] | None = None,
        checkpoint: bool = True,
    ) -> Future[Any] | None:
        """Deliver an envelope that arrived from elsewhere (another process, a queue).

        Routes it by ``target``. A request returns the call's future; a one-way
        message returns ``None`` once queued (its future too with *track*:
        a cluster node acknowledges a message when it is done). Without
        *wait*, a full mailbox raises :class:`MailboxFull` instead of being
        waited out. System messages: :class:`Stop`
        starts a graceful stop, :class:`Ping` is answered with
        :class:`Pong` after everything queued before it, :class:`GetStatus` is
        answered at once with the :class:`ActorStatus`. The envelope's
        wall-clock deadline becomes the call's local deadline.

        With *chunks*, the request is a streamed call (as
        :meth:`ActorRef.stream` sends): the actor's :func:`corral.streams`
        handler runs and its chunks are sent to *chunks*, which is closed
        when the call's future resolves (with the number of chunks).

        ``checkpoint=False`` skips the cancellation check on entry, for a
        transport's receive loop that has just awaited (a cluster node's:
        the check costs a few per cent of a remote call).

        Raises:
            ActorNotFound: No live actor has the target name.
            UnhandledMessage: The actor does not handle the payload (or,
                with *chunks*, streams no replies to it).
            ActorStopped: The actor is not accepting calls.
            MailboxFull: Without *wait*, the mailbox is full; nothing was queued.
            ValueError: The envelope is a reply (replies go to the caller's future).
        """
        if checkpoint:
            await anyio.lowlevel.checkpoint_if_cancelled()
        cell = self._cell(envelope.target)
        payload = envelope.payload
        kind = envelope.kind
        if kind is Kind.REPLY:
            raise ValueError(
                "a reply envelope goes to the future of the request it answers, not to an actor"
            )
        if kind is Kind.SYSTEM:
            if isinstance(payload, Ping):
                call = calls.from_envelope(cell, envelope, _pong)
                cell.ensure_accepting()
                cell.enqueue_nowait(call, force=True)
                return call.future
            done: Future[Any] = pending()
            if isinstance(payload, GetStatus):
                set_result(done, cell.status())
            elif isinstance(payload, Stop):
                cell.request_stop(cell.shutdown)
                set_result(done, None)
            else:
                raise UnhandledMessage(
                    f"unknown system message {type(payload).__qualname__}; "
                    "system messages are Stop, Ping and GetStatus"
                )
            return done
        if chunks is None:
            call = calls.from_envelope(cell, envelope, cell.lookup(payload))
        else:
            if kind is not Kind.REQUEST:
                raise ValueError("only a request can be a streamed call")
            state = StreamState(chunks)
            pump = stream_pump(cell.lookup_stream(payload), state, cell.clock)
            call = calls.from_envelope(cell, envelope, pump, state)
        if wait:
            await cell.enqueue(call)
        elif not cell.enqueue_nowait(call):
            raise MailboxFull(
                f"mailbox of actor {cell.name!r} is full ({cell.mailbox.capacity} calls)"
            )
        return call.future if kind is Kind.REQUEST or track else None


def _join(cluster: Cluster, runtime: Runtime) -> ClusterNode:
    from .._extras import need

    need("nats", "cluster", "corral.Cluster")
    from .._cluster._node import ClusterNode, on_asyncio

    if not on_asyncio():
        raise InvalidStateError(
            "corral.Cluster runs on anyio's asyncio backend only (nats-py, its NATS client, "
            "is asyncio-only); run this runtime with backend='asyncio'"
        )
    return ClusterNode(cluster, runtime)
