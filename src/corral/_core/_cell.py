"""The actor cell: the mailbox, pile and incarnations of one actor (its workers: `_workers`)."""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.lowlevel

from . import _calls as calls
from ._actor import Actor, check_handles_something, handler_for, streamer_for
from ._calls import Call, Handler
from ._checks import check_timeout
from ._exceptions import (
    ActorCrashed,
    ActorStopped,
    Crash,
)
from ._instrument import Instruments
from ._loop import LoopHooks
from ._mailbox import Mailbox
from ._pile import ActorState, ActorStatus, CallStatus, Pile
from ._policy import CallPolicy
from ._workers import serve_concurrently, work

if TYPE_CHECKING:
    from ._ref import ActorRef

__all__ = ["DEFAULT_SHUTDOWN", "ActorCell", "CellOwner"]

logger = logging.getLogger("corral")

#: Seconds an actor gets to drain its calls and run ``on_stop`` when stopped.
DEFAULT_SHUTDOWN: Final = 5.0

_FAILED = CallStatus.FAILED
_INF = math.inf
_CancelScope = anyio.CancelScope


class CellOwner(Protocol):
    """Who runs a cell's task, and what it is told (a supervisor's record of its child).

    The cell calls these in its own task or its senders' (never awaiting):
    the owner decides what happens next.
    """

    def activate(self, cell: ActorCell) -> None:
        """Start the task of a cell that waited for its first call (:attr:`ActorCell.lazy`)."""

    def incarnation_ended(self, cell: ActorCell, can_continue: bool) -> bool:
        """An incarnation ended (read :attr:`ActorCell.crash`); answer whether to run again.

        *can_continue* says whether the ending task could run the next
        incarnation itself (answering ``True`` then restarts in place).
        """

    def finalized(self, cell: ActorCell) -> None:
        """The cell ended for good: its name is free, its calls resolved."""


class ActorCell:
    """Everything of one actor that outlives its instances.

    The cell owns the mailbox and the pile, makes and serves calls, and runs
    one incarnation of the actor at a time (:meth:`run`). Whoever owns the
    cell (the runtime, or a supervisor) decides after each incarnation whether
    to run another one or to end the cell for good (:meth:`finalize`).
    """

    __slots__ = (
        "_active",
        "_dispatch",
        "_done",
        "_settle_waiters",
        "actor_class",
        "checkpoint_if_cancelled",
        "clock",
        "context",
        "crash",
        "factory",
        "fatal",
        "finalized",
        "halting",
        "instance",
        "instruments",
        "mailbox",
        "main_event",
        "max_concurrency",
        "name",
        "new_event",
        "owner",
        "pile",
        "policy",
        "ref",
        "restarts",
        "scope",
        "shutdown",
        "start_failed",
        "starting",
        "state",
        "stop_deadline",
        "tg",
        "workers",
    )

    def __init__(
        self,
        *,
        name: str,
        factory: Callable[[], Actor[Any, Any]],
        instance: Actor[Any, Any],
        capacity: int,
        max_concurrency: int,
        shutdown: float | None,
        instruments: Instruments | None,
        loop: LoopHooks,
        policy: CallPolicy | None = None,
    ) -> None:
        from ._ref import ActorRef

        cls = type(instance)
        check_handles_something(cls)
        self.name = name
        self.actor_class = cls
        self.factory = factory
        self.instance = instance
        instance._corral_cell = self
        self.max_concurrency = max_concurrency
        self.shutdown = shutdown
        self.mailbox = Mailbox(capacity, name)
        self.mailbox.on_accept = self._accepted_late
        self.pile = Pile(self.mailbox.queue)
        self.state = ActorState.STARTING
        self.crash: BaseException | None = None
        self.start_failed = False
        self.restarts = 0
        self.ref: ActorRef[Any, Any] = ActorRef._make(self)
        # Shared by every cell of the class, and so is what lookup() caches in it.
        self._dispatch: dict[type, Handler] = cls.__corral_handlers__
        self.fatal: tuple[type[BaseException], ...] = (Crash, *cls.fatal)
        #: How every call of this actor runs (retries, limits...); ``None``: directly.
        self.policy: CallPolicy | None = policy if policy is not None else cls.policy
        #: The runtime's instruments (``None`` when it has none): the calls' hooks.
        self.instruments = instruments
        self.scope: anyio.CancelScope | None = None
        self.stop_deadline = _INF
        self.halting = False
        self._settle_waiters: list[anyio.Event] | None = None
        self.finalized = False
        self._done: anyio.Event | None = None
        self.tg: anyio.abc.TaskGroup | None = None
        self.workers = 0
        self.starting = 0
        self.main_event: anyio.Event | None = None
        #: The event loop's clock (calls' deadlines and times are on it).
        self.clock = loop.clock
        self.checkpoint_if_cancelled = loop.checkpoint_if_cancelled
        #: Makes an anyio.Event without looking the backend up.
        self.new_event = loop.new_event
        self._active = False
        #: Who runs the cell's task (a supervisor's record of its child).
        self.owner: CellOwner | None = None
        #: The context the cell's task runs in (the spawner's, as for any task).
        self.context = contextvars.copy_context()

    def __repr__(self) -> str:
        return f"<ActorCell {self.name!r} {self.actor_class.__qualname__} {self.state.value}>"

    # --- making calls ----------------------------------------------------------

    def lookup(self, msg: object) -> Handler:
        """Return the handler for *msg*, or refuse it before anything is queued."""
        func = self._dispatch.get(type(msg))
        if func is not None:
            return func
        return handler_for(self.actor_class, self._dispatch, self.name, msg)

    def lookup_stream(self, msg: object) -> Any:
        """Return the streaming handler for *msg*, or refuse it before anything is queued."""
        return streamer_for(self.actor_class, self.name, msg)

    async def enqueue(self, call: Call) -> None:
        """Queue *call*, waiting for room while the mailbox is full."""
        if not self.enqueue_nowait(call):
            await self.mailbox.put(call)

    def enqueue_nowait(self, call: Call, *, force: bool = False) -> bool:
        """Queue *call* if there is room (or *force*); return whether it was queued."""
        if self.mailbox.put_nowait(call, force=force):
            self._accepted(call)
            return True
        return False

    @property
    def lazy(self) -> bool:
        """Whether the actor has no start or stop hooks, so its task can wait for its first call.

        Such an actor costs no task until it is first called: an application
        can keep thousands of rarely used actors for the price of their
        mailboxes. Its behaviour is the same either way.
        """
        cls = self.actor_class
        return cls.on_start is Actor.on_start and cls.on_stop is Actor.on_stop

    def mark_active(self) -> None:
        """Record that the owner has started (or is starting) the cell's task."""
        self._active = True

    def _accepted(self, call: Call, now: float | None = None) -> None:
        calls.accept(call, now)
        if not self._active:
            self._active = True
            assert self.owner is not None, "a cell without a task needs an owner to start it"
            self.owner.activate(self)
        if (
            self.main_event is not None
            and self.workers < self.max_concurrency
            and not self.mailbox.idle_getters
        ):
            self.wake_main()

    def _accepted_late(self, call: Call) -> None:
        # A sender that waited for room: the call counts from its admission.
        self._accepted(call, self.clock())

    # --- resolving calls -------------------------------------------------------

    def stopped_error(self, what: str) -> ActorStopped:
        if self.crash is not None:
            err: ActorStopped = ActorCrashed(f"actor {self.name!r} crashed {what}")
            err.__cause__ = self.crash
            return err
        return ActorStopped(f"actor {self.name!r} stopped {what}")

    def crashed(self, exc: BaseException) -> None:
        if self.crash is None:
            self.crash = exc
        if self.tg is not None:
            self.tg.cancel_scope.cancel()

    def wake_main(self) -> None:
        event = self.main_event
        if event is not None:
            self.main_event = None
            event.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run incarnations: ``on_start``, serve until stopped or crashed, ``on_stop``.

        This is the actor's task. It reports ready on *task_status* once the
        first ``on_start`` finished (or failed). Each incarnation ends by
        telling its owner (:meth:`CellOwner.incarnation_ended`) (on a stop and on a crash
        alike; read :attr:`crash`), which may put a new instance in place and
        answer ``True`` to run it in this same task; otherwise the task ends.
        Calls still queued stay in the mailbox for the next incarnation or
        for :meth:`finalize`; calls that were running have been failed.
        """
        status = task_status
        while True:
            instance = self.instance
            reported = False
            finished = False
            try:
                try:
                    stopped_while_starting = False
                    if self.actor_class.on_start is not Actor.on_start:
                        with _CancelScope(deadline=self.stop_deadline) as scope:
                            self.scope = scope
                            try:
                                await instance.on_start()
                            except Exception as exc:
                                self.crash = exc
                                self.start_failed = True
                        self.scope = None
                        stopped_while_starting = scope.cancelled_caught and self.crash is None
                    if not stopped_while_starting:
                        status.started()
                        reported = True
                        if self.crash is None:
                            if self.state in (ActorState.STARTING, ActorState.RESTARTING):
                                self.state = ActorState.RUNNING
                            if self.max_concurrency == 1:
                                await work(self, True)
                            else:
                                await serve_concurrently(self)
                except Exception as exc:
                    # The actor's own loop failed, not a call: that is a crash.
                    if self.crash is None:
                        self.crash = exc
                finally:
                    self.scope = None
                    if not reported:
                        status.started()
                    if not self.start_failed:
                        await self._run_on_stop()
                finished = True
            finally:
                # Also when cancelled: the owner must learn that the task ends.
                owner = self.owner
                again = owner.incarnation_ended(self, finished) if owner is not None else False
            if not again:
                return
            status = anyio.TASK_STATUS_IGNORED

    async def _run_on_stop(self) -> None:
        instance = self.instance
        if type(instance).on_stop is Actor.on_stop:
            return
        timeout = self.shutdown
        # Shielded so that cleanup also runs when the runtime is being
        # cancelled, and bounded so that it cannot hang the shutdown.
        with _CancelScope(shield=True) as scope:
            if timeout is not None:
                scope.deadline = self.clock() + timeout
            try:
                await instance.on_stop()
            except Exception as exc:
                if self.crash is None:
                    self.crash = exc
                else:
                    logger.exception(
                        "on_stop of actor %r raised while it was handling a crash", self.name
                    )
        if scope.cancelled_caught:
            logger.warning("on_stop of actor %r was cancelled after %ss", self.name, timeout)

    def request_stop(self, timeout: float | None) -> None:
        """Stop for good: close intake, drain, and cancel what still runs after *timeout*."""
        check_timeout(timeout, "stop timeout")
        if self.finalized:
            return
        if self.state is not ActorState.STOPPING:
            self.state = ActorState.STOPPING
        self.mailbox.close()
        if not self._active:
            # No task (a lazy actor between calls): nothing to drain, so this
            # incarnation ends right here, and the owner decides what next.
            if self.owner is not None:
                self.owner.incarnation_ended(self, False)
            else:
                self.finalize()
            return
        self.wake_main()
        self._set_stop_deadline(timeout)

    def request_halt(self, timeout: float | None) -> None:
        """End this incarnation so that it can be replaced: keep the queue and intake.

        Workers take no new calls; running calls get *timeout* seconds, then
        are cancelled and failed; ``on_stop`` runs. Calls keep being accepted
        and wait for the next incarnation. Used by supervisors to restart.
        """
        check_timeout(timeout, "stop timeout")
        if self.finalized or not self._active:
            return
        self.halting = True
        self.mailbox.wake_getters()
        self.wake_main()
        self._set_stop_deadline(timeout)

    def _set_stop_deadline(self, timeout: float | None) -> None:
        if timeout is None:
            return
        deadline = self.clock() + timeout
        if deadline < self.stop_deadline:
            self.stop_deadline = deadline
            scope = self.scope
            # The scope may carry an earlier deadline of the running call.
            if scope is not None and deadline < scope.deadline:
                scope.deadline = deadline

    def prepare_restart(self, instance: Actor[Any, Any]) -> None:
        """Put a new instance in place for the next incarnation; the queue stays as it is.

        Reopens intake (a normal stop closed it) and counts the restart.
        Afterwards the owner starts :meth:`run` again, or, for a lazy actor
        with nothing queued, leaves it to the next call (:meth:`CellOwner.activate`).
        """
        if type(instance) is not self.actor_class:
            raise TypeError(
                f"the factory of actor {self.name!r} made a {type(instance).__qualname__}, "
                f"not a {self.actor_class.__qualname__}"
            )
        self.instance = instance
        instance._corral_cell = self
        self.crash = None
        self.start_failed = False
        self.restarts += 1
        self.state = ActorState.STARTING
        self.stop_deadline = _INF
        self.halting = False
        self.scope = None
        self.mailbox.reopen()
        self.settled()

    def mark_restarting(self) -> None:
        """Record that the supervisor will restart the actor; calls wait meanwhile."""
        self.state = ActorState.RESTARTING
        # The supervisor starts the next task itself (after any backoff): a
        # call arriving meanwhile must not start one.
        self._active = True
        self.mailbox.reopen()
        self.settled()

    def settled(self) -> None:
        """Release :meth:`wait_settled`: the owner has dealt with the ended incarnation."""
        waiters = self._settle_waiters
        if waiters:
            self._settle_waiters = None
            for event in waiters:
                event.set()

    async def wait_settled(self) -> None:
        """Wait until the owner has restarted the actor, scheduled its restart, or ended it."""
        if self.finalized:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        if self._settle_waiters is None:
            self._settle_waiters = []
        self._settle_waiters.append(event)
        await event.wait()

    def mark_dormant(self) -> None:
        """Leave a lazy actor without a task until its next call."""
        self._active = False
        self.state = ActorState.RUNNING

    def finalize(self) -> None:
        """End the cell for good: refuse calls, fail the queued ones, release waiters."""
        if self.finalized:
            return
        self.finalized = True
        mailbox = self.mailbox
        mailbox.close()
        while (call := mailbox.get_nowait()) is not None:
            calls.drop(call, _FAILED, self.stopped_error("before serving this call"))
        self.state = ActorState.CRASHED if self.crash is not None else ActorState.STOPPED
        if self._done is not None:
            self._done.set()
        self.settled()
        if self.owner is not None:
            self.owner.finalized(self)

    async def wait_finalized(self) -> None:
        """Wait until :meth:`finalize` has run."""
        if self.finalized:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()

    # --- status ----------------------------------------------------------------

    def status(self) -> ActorStatus:
        """Return a snapshot of the pile."""
        try:
            now: float | None = self.clock()
        except Exception:  # no event loop: a status read from synchronous code
            now = None
        return self.pile.snapshot(
            name=self.name,
            actor_class=self.actor_class.__qualname__,
            state=self.state,
            mailbox_capacity=self.mailbox.capacity,
            waiting_senders=self.mailbox.waiting_senders,
            max_concurrency=self.max_concurrency,
            restarts=self.restarts,
            now=now,
        )

    def ensure_accepting(self) -> None:
        """Raise :class:`ActorStopped` if the cell takes no more calls."""
        self.mailbox.check_open()
