"""The runtime: the root scope every actor lives in, and the name registry."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from ._actor import Actor
from ._cell import DEFAULT_SHUTDOWN, ActorCell, _pong, check_timeout
from ._exceptions import (
    ActorCrashed,
    ActorNotFound,
    InvalidStateError,
    NameTaken,
    UnhandledMessage,
)
from ._future import Future
from ._instrument import Instrument, Instruments
from ._loop import LoopHooks
from ._mailbox import DEFAULT_MAILBOX_CAPACITY
from ._messages import UNSET, Envelope, GetStatus, Kind, Ping, Stop, _Unset
from ._pile import ActorState, ActorStatus
from ._ref import ActorRef

__all__ = ["Runtime", "check_positive_int"]

logger = logging.getLogger("corral")

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")


class _RuntimeState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


def check_positive_int(value: object, what: str) -> int:
    """Return *value* if it is an int >= 1, else raise an error that names it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value!r}")
    return value


class Runtime:
    """The root scope of a corral application and its registry of actors.

    ::

        async with corral.Runtime() as rt:
            calc = await rt.spawn(Calculator, name="calc")
            print(await calc.ask(Add(a=1, b=2)))

    Everything spawned runs inside the ``async with`` block. On a normal exit
    the runtime stops taking new actors and stops the actors in reverse spawn
    order: each stops intake and drains its queued and running calls, all
    within *shutdown_timeout* seconds in total; what is left after that is
    cancelled and failed with :class:`ActorStopped`. When the block exits
    with an exception or is cancelled, nothing is drained: every actor is
    cancelled at once (``on_stop`` still runs, bounded) and the exception
    propagates unchanged. Either way no task outlives the block and every
    future is resolved.

    Args:
        shutdown_timeout: Seconds the whole drain may take on a normal exit;
            also the default ``shutdown`` of each actor. ``None``: no limit.
        instruments: :class:`Instrument` objects that receive call events.
    """

    def __init__(
        self,
        *,
        shutdown_timeout: float | None = DEFAULT_SHUTDOWN,
        instruments: Iterable[Instrument] = (),
    ) -> None:
        check_timeout(shutdown_timeout, "shutdown_timeout")
        self.shutdown_timeout = shutdown_timeout
        self._instruments: Instruments | None = Instruments(instruments) or None
        self._state = _RuntimeState.NEW
        self._cells: dict[str, ActorCell] = {}
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._loop: LoopHooks | None = None

    def __repr__(self) -> str:
        return f"<corral.Runtime {self._state.value} actors={len(self._cells)}>"

    async def __aenter__(self) -> Runtime:
        if self._state is not _RuntimeState.NEW:
            raise InvalidStateError(
                f"a Runtime can be entered only once; this one is {self._state.value}"
            )
        stack = AsyncExitStack()
        self._loop = LoopHooks()
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        self._stack = stack
        self._state = _RuntimeState.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._stack is not None
        assert self._tg is not None
        self._state = _RuntimeState.CLOSING
        graceful = exc is None
        try:
            # On an error or a cancellation the stop sequence must still run,
            # so it is shielded; every step in it is bounded (zero drain time,
            # on_stop limited by each actor's shutdown time).
            with anyio.CancelScope(shield=not graceful):
                await self._stop_all(graceful)
        finally:
            self._tg.cancel_scope.cancel()
            # The task group exits without the body's exception, so the user
            # sees that exception itself rather than an exception group.
            await self._stack.aclose()
            self._state = _RuntimeState.CLOSED
        return False

    async def _stop_all(self, graceful: bool) -> None:
        cells = list(self._cells.values())
        if not graceful:
            for cell in reversed(cells):
                cell.request_stop(0)
                await cell.wait_finalized()
            return
        total = self.shutdown_timeout
        deadline = None if total is None else anyio.current_time() + total
        for cell in reversed(cells):
            limit = cell.shutdown
            if deadline is not None:
                remaining = max(0.0, deadline - anyio.current_time())
                limit = remaining if limit is None else min(limit, remaining)
            cell.request_stop(limit)
            await cell.wait_finalized()

    def _check_running(self) -> anyio.abc.TaskGroup:
        if self._state is not _RuntimeState.RUNNING or self._tg is None:
            raise InvalidStateError(
                f"the runtime is {self._state.value}; spawn actors inside 'async with Runtime()'"
            )
        return self._tg

    async def spawn(
        self,
        actor: Callable[[], Actor[ReqT, ReplyT]],
        *,
        name: str,
        mailbox: int = DEFAULT_MAILBOX_CAPACITY,
        max_concurrency: int = 1,
        shutdown: float | _Unset | None = UNSET,
    ) -> ActorRef[ReqT, ReplyT]:
        """Start an actor and return its ref once it is ready.

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

        Returns once ``on_start`` has finished.

        Raises:
            NameTaken: *name* is registered already.
            ValueError: A capacity, concurrency or timeout is out of range.
            TypeError: *actor* does not make an :class:`Actor` that declares
                at least one message type.
            ActorCrashed: ``on_start`` raised; ``__cause__`` holds its error.
            InvalidStateError: The runtime is not running.
        """
        tg = self._check_running()
        assert self._loop is not None
        if not isinstance(name, str) or not name:
            raise ValueError(f"actor name must be a non-empty str, got {name!r}")
        check_positive_int(mailbox, "mailbox capacity")
        check_positive_int(max_concurrency, "max_concurrency")
        shutdown_time = self.shutdown_timeout if isinstance(shutdown, _Unset) else shutdown
        check_timeout(shutdown_time, "shutdown")
        if name in self._cells:
            raise NameTaken(f"an actor named {name!r} is already running")
        instance = actor()
        if not isinstance(instance, Actor):
            raise TypeError(f"spawn needs an Actor class or factory; {actor!r} made {instance!r}")
        cell = ActorCell(
            name=name,
            factory=actor,
            instance=instance,
            capacity=mailbox,
            max_concurrency=max_concurrency,
            shutdown=shutdown_time,
            instruments=self._instruments,
            loop=self._loop,
        )
        self._cells[name] = cell
        cell.on_final = self._forget
        cell.on_exit = self._exited
        if cell.lazy:
            # Nothing to start: the task is started by the first call.
            cell.activate = self._activate
            cell.state = ActorState.RUNNING
        else:
            cell.mark_active()
            await tg.start(cell.run, name=f"corral actor {name}")
            if cell.start_failed:
                cell.finalize()
                raise ActorCrashed(
                    f"actor {name!r} failed to start: {cell.crash!r}"
                ) from cell.crash
        return cell.ref

    def _activate(self, cell: ActorCell) -> None:
        # Called from whichever task sent the first call; the actor's task
        # runs in the context captured at spawn, not in that sender's.
        tg = self._tg
        assert tg is not None
        name = f"corral actor {cell.name}"
        cell.context.run(lambda: tg.start_soon(cell.run, name=name))

    def _forget(self, cell: ActorCell) -> None:
        if self._cells.get(cell.name) is cell:
            del self._cells[cell.name]

    def _exited(self, cell: ActorCell) -> None:
        # Without a supervisor nothing is restarted: the incarnation that
        # ended was the last one.
        if cell.crash is not None and not cell.start_failed:
            logger.error(
                "actor %r (%s) crashed and was not restarted",
                cell.name,
                cell.actor_class.__qualname__,
                exc_info=cell.crash,
            )
        cell.finalize()

    def ref(self, name: str) -> ActorRef[Any, Any]:
        """Return the ref of the live actor registered as *name*.

        Raises:
            ActorNotFound: No live actor has that name.
        """
        cell = self._cells.get(name)
        if cell is None:
            known = ", ".join(repr(n) for n in list(self._cells)[:10]) or "none"
            raise ActorNotFound(f"no live actor named {name!r} (running: {known})")
        return cell.ref

    def refs(self) -> tuple[ActorRef[Any, Any], ...]:
        """Return the refs of all live actors, in spawn order."""
        return tuple(cell.ref for cell in self._cells.values())

    def status(self) -> dict[str, ActorStatus]:
        """Return a status snapshot of every live actor, by name, in spawn order."""
        return {name: cell.status() for name, cell in self._cells.items()}

    async def deliver(self, envelope: Envelope) -> Future[Any] | None:
        """Deliver an envelope that arrived from elsewhere (another process, a queue).

        Routes it by ``target``. A request returns the call's future; a one-way
        message returns ``None`` once queued. System messages: :class:`Stop`
        starts a graceful stop, :class:`Ping` is answered with
        :class:`Pong` after everything queued before it, :class:`GetStatus` is
        answered at once with the :class:`ActorStatus`. The envelope's
        wall-clock deadline becomes the call's local deadline.

        Raises:
            ActorNotFound: No live actor has the target name.
            UnhandledMessage: The actor does not handle the payload.
            ActorStopped: The actor is not accepting calls.
            ValueError: The envelope is a reply (replies go to the caller's future).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        cell = self.ref(envelope.target)._cell
        payload = envelope.payload
        kind = envelope.kind
        if kind is Kind.REPLY:
            raise ValueError(
                "a reply envelope goes to the future of the request it answers, not to an actor"
            )
        if kind is Kind.SYSTEM:
            if isinstance(payload, Ping):
                call = cell.call_from_envelope(envelope, _pong)
                cell.ensure_accepting()
                cell.enqueue_nowait(call, force=True)
                return call._future
            done: Future[Any] = Future()
            if isinstance(payload, GetStatus):
                done._set_result(cell.status())
            elif isinstance(payload, Stop):
                cell.request_stop(cell.shutdown)
                done._set_result(None)
            else:
                raise UnhandledMessage(
                    f"unknown system message {type(payload).__qualname__}; "
                    "system messages are Stop, Ping and GetStatus"
                )
            return done
        call = cell.call_from_envelope(envelope, cell.lookup(payload))
        await cell.enqueue(call)
        return call._future if kind is Kind.REQUEST else None
