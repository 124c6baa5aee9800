"""Supervisors: OTP restart semantics on nested anyio task groups."""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._backoff import Backoff
from ._cell import ActorCell
from ._children import _Child, _describe, _is_lazy
from ._exceptions import InvalidStateError, NotFound, SupervisorGaveUp
from ._ref import ActorRef, SupervisorRef
from ._restart import Action, Decision, decide
from ._specs import (
    ChildInfo,
    ChildSpec,
    ChildState,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorEventKind,
    exported_children,
)

if TYPE_CHECKING:
    from ._context import TreeContext

__all__ = ["SupervisorNode"]

logger = logging.getLogger("corral")

_RUNNING = ChildState.RUNNING
_RESTARTING = ChildState.RESTARTING
_STOPPED = ChildState.STOPPED
_EV = SupervisorEventKind


class _State(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class SupervisorNode:
    """The running node of one :class:`Supervisor` spec in a runtime's tree.

    The runtime builds one from each spec of its tree; it outlives its
    incarnations (a supervisor its parent restarts is the same node, and
    keeps its children's mailboxes). Users hold its :attr:`handle`, a
    :class:`SupervisorRef`; the runtime and the child records
    (:mod:`._children`) use the members without a leading underscore.
    """

    spec: Supervisor
    #: The user's handle on this node.
    handle: SupervisorRef
    #: The supervisor's name (``"root"`` for a root spec without one).
    name: str
    strategy: Strategy
    max_restarts: int
    within: float
    backoff: Backoff | None
    restart: Restart
    shutdown: float | None
    records: list[_Child]
    _state: _State
    context: TreeContext | None
    _parent: SupervisorNode | None
    tg: anyio.abc.TaskGroup | None
    _lock: anyio.Lock | None
    pending: list[tuple[_Child, BaseException | None]]
    _scheduled: list[tuple[float, int, list[_Child]]]
    _order: Iterator[int]
    _history: tuple[float, ...]
    _idle: anyio.CancelScope | None
    _wakeup: anyio.Event | None
    _stop_requested: bool
    _final_stop: bool
    _stop_timeout: float | None
    _gave_up: SupervisorGaveUp | None
    start_error: BaseException | None
    _random: random.Random

    def __init__(self, spec: Supervisor) -> None:
        """The running node of *spec*, its nested supervisors' nodes included."""
        self.spec = spec
        self.handle = SupervisorRef._make(self)
        self.name = spec.name or "root"
        self.strategy = spec.strategy
        self.max_restarts = spec.max_restarts
        self.within = spec.within
        self.backoff = spec.backoff
        self.restart = spec.restart
        self.shutdown = spec.shutdown
        self.records = [_Child(child, self) for child in spec.children]
        self._state = _State.NEW
        self.context = None
        self._parent = None
        self.tg = None
        self._lock = None
        self.pending = []
        self._scheduled = []
        self._order = itertools.count()
        self._history = ()
        self._idle = None
        self._wakeup = None
        self._stop_requested = False
        self._final_stop = True
        self._stop_timeout = None
        self._gave_up = None
        self.start_error = None
        self._random = random.Random()

    def __repr__(self) -> str:
        return (
            f"<corral.SupervisorRef {self.name!r} {self.strategy.value} {self._state.value} "
            f"children={len(self.records)}>"
        )

    # --- reading ---------------------------------------------------------------------

    def children(self) -> list[ChildInfo]:
        """The children in start order (:meth:`SupervisorRef.children`)."""
        return [
            ChildInfo(
                name=c.name,
                kind="actor" if c.spec is not None else "supervisor",
                state=c.state,
                restart=c.restart,
                restarts=c.restarts,
                last_error=_describe(c.last_error),
            )
            for c in self.records
            if not c.removed
        ]

    def ref(self, name: str) -> ActorRef[Any, Any]:
        """The ref of the actor child *name* (:meth:`SupervisorRef.ref`)."""
        for c in self.records:
            if c.spec is not None and c.name == name and c.cell is not None and not c.removed:
                return c.cell.ref
        from ._exceptions import ActorNotFound

        raise ActorNotFound(f"supervisor {self.name!r} has no actor child named {name!r}")

    # --- binding to a runtime ------------------------------------------------------------

    def bind(self, context: TreeContext, parent: SupervisorNode | None) -> None:
        assert self.context is None, "a running supervisor belongs to one runtime"
        self.context = context
        self._parent = parent
        context.register_supervisor(self)
        for c in self.records:
            if c.sup is not None:
                c.sup.bind(context, self)

    def _emit(
        self,
        kind: SupervisorEventKind,
        child: _Child | None = None,
        error: BaseException | None = None,
        delay: float | None = None,
    ) -> None:
        context = self.context
        assert context is not None
        instruments = context.instruments
        if instruments is None:
            return
        instruments.call(
            "supervisor_event",
            SupervisorEvent(
                kind=kind,
                supervisor=self.name,
                strategy=self.strategy,
                child=None if child is None else child.name,
                restarts=0 if child is None else child.restarts,
                error=error,
                delay=delay,
                time=context.clock.now(),
            ),
        )

    # --- the supervisor's own task ------------------------------------------------------

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run one incarnation: start the children, watch them, stop them.

        Raises :class:`SupervisorGaveUp` after the tree below it has been
        stopped when its restart intensity was exceeded. A child that fails
        to start here fails the supervisor's start (as OTP): the children
        started so far are stopped and :attr:`_start_error` is set.
        """
        self._state = _State.STARTING
        self.pending.clear()
        self._scheduled.clear()
        self._history = ()
        self._stop_requested = False
        self._final_stop = True
        self._stop_timeout = None
        self._gave_up = None
        self.start_error = None
        self._lock = anyio.Lock()
        reported = False
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                try:
                    for c in list(self.records):
                        error = await c.start(first=True)
                        if error is not None:
                            self.start_error = error
                            self._final_stop = False
                            break
                    if self.start_error is None:
                        self._state = _State.RUNNING
                        task_status.started()
                        reported = True
                        await self._loop()
                finally:
                    self._state = _State.STOPPING
                    # Shielded: children always stop in reverse order, also
                    # when the supervisor is cancelled; each stop is bounded
                    # by the child's own shutdown time.
                    with anyio.CancelScope(shield=True):
                        await self._stop_children(self._final_stop, self._stop_timeout)
                    self.tg = None
        finally:
            self._state = _State.STOPPED
            if not reported:
                task_status.started()
        if self._gave_up is not None:
            raise self._gave_up

    async def _loop(self) -> None:
        assert self.context is not None and self._lock is not None
        clock = self.context.clock
        while not self._stop_requested:
            if self.pending:
                c, error = self.pending.pop(0)
                async with self._lock:
                    await self._handle_exit(c, error)
                if self._gave_up is not None:
                    return
                continue
            if self._scheduled and self._scheduled[0][0] <= clock.now():
                _, _, group = heapq.heappop(self._scheduled)
                async with self._lock:
                    await self._restart_group(group)
                continue
            # Idle until a child exits, a stop is requested or a restart is
            # due. An event wakes much faster than cancelling a scope, so the
            # scope is used only when there is a restart to wait for.
            if self._scheduled:
                with anyio.CancelScope() as scope:
                    self._idle = scope
                    await clock.sleep_until(self._scheduled[0][0])
                self._idle = None
            else:
                event = self._wakeup = anyio.Event()
                await event.wait()

    def _wake(self) -> None:
        event = self._wakeup
        if event is not None:
            self._wakeup = None
            event.set()
        if self._idle is not None:
            self._idle.cancel()

    def request_stop(self, *, final: bool, timeout: float | None) -> None:
        """Ask the supervisor to stop its children (for good if *final*) and end."""
        self._stop_requested = True
        self._final_stop = self._final_stop and final
        self._stop_timeout = timeout
        self._wake()

    # --- starting -----------------------------------------------------------------------

    async def run_sub(
        self, c: _Child, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        sub = c.sup
        assert sub is not None
        error: BaseException | None = None
        try:
            await sub.serve(task_status=task_status)
        except Exception as exc:
            error = exc
        finally:
            if sub.start_error is None:
                self._exited(c, error)

    # --- exits -------------------------------------------------------------------------

    def cell_exited(self, c: _Child, cell: ActorCell, can_continue: bool) -> bool:
        # The end of an incarnation, in its task.
        if cell.start_failed and c.starting:
            return False  # reported to whoever is starting it
        error = cell.crash
        if can_continue and self._restart_in_place(c, error):
            return True
        self._exited(c, error)
        return False

    def _restart_in_place(self, c: _Child, error: BaseException | None) -> bool:
        """Decide and prepare a restart right away, in the exiting task, if that is all it takes.

        This is the common case: the rules (:func:`decide`, the same call
        :meth:`_handle_exit` makes) restart this child alone and at once,
        and nothing else is in progress. The events are those of the general
        path; only the hop to this supervisor's task and a new task for the
        actor are saved. Anything else takes the general path, which decides
        again (nothing is kept of this decision).
        """
        lock = self._lock
        cell = c.cell
        if (
            self._state is not _State.RUNNING
            or self._stop_requested
            or c.stopping
            or c.removed
            or cell is None
            or lock is None
            or lock.locked()
            or self.backoff is not None
            or (cell.lazy and not cell.mailbox.queue)
        ):
            return False
        assert self.context is not None and c.spec is not None
        now = self.context.clock.now()
        decision = self._decide(c, error, now)
        if not decision.alone:
            return False
        try:
            instance = c.spec.factory()
            cell.prepare_restart(instance)
        except Exception:
            return False  # the general path reports it as the crash it is
        self._history = decision.history
        c.backoff_count = decision.backoff_count
        self._report_exit(c, error)
        self._emit(_EV.RESTART_SCHEDULED, c, error, 0.0)
        c.restarts += 1
        c.state = _RUNNING
        c.started_at = now
        self._emit(_EV.CHILD_RESTARTED, c)
        logger.warning("supervisor %r: restarted %r", self.name, c.name)
        return True

    def _report_exit(self, c: _Child, error: BaseException | None) -> None:
        if error is not None:
            c.last_error = error
            self._emit(_EV.CHILD_CRASHED, c, error)
            logger.error(
                "supervisor %r: child %r crashed: %s",
                self.name,
                c.name,
                _describe(error),
                exc_info=error,
            )
        else:
            self._emit(_EV.CHILD_EXITED, c)

    def _exited(self, c: _Child, error: BaseException | None) -> None:
        c.running = False
        if c.stopping:
            if c.exited is not None:
                c.exited.set()
            return
        self.pending.append((c, error))
        self._wake()

    async def _handle_exit(self, c: _Child, error: BaseException | None) -> None:
        if c.removed:
            return
        assert self.context is not None
        clock = self.context.clock
        self._report_exit(c, error)
        now = clock.now()
        decision = self._decide(c, error, now)
        self._history = decision.history
        if decision.action is Action.FINISH:
            await self._finish(c)
            return
        if decision.action is Action.GIVE_UP:
            await self._give_up(c, error)
            return
        live = self._live()
        c.backoff_count = decision.backoff_count
        # The others stop in reverse start order; their queues wait for them.
        for i in decision.stop:
            await self._halt(live[i])
        for i in decision.finish:
            # OTP: a temporary child stopped because of a sibling is not restarted.
            await self._finish(live[i])
        group = [live[i] for i in decision.restart]
        for x in group:
            x.state = _RESTARTING
            if x.cell is not None:
                x.cell.mark_restarting()
        delay = decision.delay
        self._emit(_EV.RESTART_SCHEDULED, c, error, delay)
        if delay > 0:
            logger.warning(
                "supervisor %r: restarting %s in %.3fs",
                self.name,
                ", ".join(repr(x.name) for x in group),
                delay,
            )
            heapq.heappush(self._scheduled, (now + delay, next(self._order), group))
        else:
            await self._restart_group(group)

    def _live(self) -> list[_Child]:
        return [x for x in self.records if not x.removed]

    def _decide(self, c: _Child, error: BaseException | None, now: float) -> Decision:
        # The facts of this exit, for the one function that holds the rules.
        live = self._live()
        return decide(
            strategy=self.strategy,
            restarts=[x.restart for x in live],
            index=live.index(c),
            crashed=error is not None,
            history=self._history,
            now=now,
            max_restarts=self.max_restarts,
            within=self.within,
            backoff=self.backoff,
            backoff_count=c.backoff_count,
            started_at=c.started_at,
            rand=self._random.random,
        )

    async def _restart_group(self, group: list[_Child]) -> None:
        # Restart in start order; a child that fails to start is a crash
        # like any other and goes through the same rules again.
        for x in sorted(group, key=self.records.index):
            if x.removed or x.state is not _RESTARTING:
                continue
            x.restarts += 1
            error = await x.start()
            if error is None:
                self._emit(_EV.CHILD_RESTARTED, x)
                logger.warning("supervisor %r: restarted %r", self.name, x.name)
            else:
                self.pending.append((x, error))

    async def _give_up(self, c: _Child, error: BaseException | None) -> None:
        cause = "" if error is None else f": {_describe(error)}"
        failure = SupervisorGaveUp(
            f"supervisor {self.name!r} gave up: more than {self.max_restarts} restart(s) "
            f"within {self.within:g}s; the last was of child {c.name!r}{cause}"
        )
        failure.__cause__ = error
        failure.supervisor = self.name
        self._emit(_EV.GAVE_UP, c, error)
        logger.error("%s", failure)
        # Halted, not ended: if the parent restarts this supervisor, the
        # children's queues are still there; if not, the parent ends them.
        for x in reversed(self.records):
            if not x.removed:
                await self._halt(x)
                x.state = _STOPPED
        self._emit(_EV.ESCALATED, c, failure)
        self._gave_up = failure
        self._final_stop = False  # the parent decides whether the children end

    # --- stopping ------------------------------------------------------------------------

    async def _halt(self, c: _Child, timeout: float | None = None) -> None:
        """Stop the child's current incarnation, keeping its mailbox for a restart."""
        await c.stop_task(final=False, timeout=timeout)

    async def _finish(self, c: _Child, timeout: float | None = None) -> None:
        """End the child for good: stop it (draining), then fail whatever is left."""
        exports = self.context.exports if self.context is not None else None
        if exports is not None:
            # First out of the cluster's hands: what it fetched drains with the actor.
            spec = c.spec if c.sup is None else c.sup.spec
            if spec is not None:
                for each in exported_children(spec):
                    await exports.unserve(each.name)
        await c.stop_task(final=True, timeout=timeout)
        c.end()
        self._emit(_EV.CHILD_STOPPED, c)

    def end_all(self) -> None:
        """End every child below this supervisor for good (after a give-up nobody repairs)."""
        for c in reversed(self.records):
            c.end(remove=False)
        self.records.clear()
        if self.context is not None:
            self.context.forget_supervisor(self)

    async def _stop_children(self, final: bool, timeout: float | None) -> None:
        assert self.context is not None
        clock = self.context.clock
        deadline = None if timeout is None else clock.now() + timeout
        for c in reversed(list(self.records)):
            if c.removed:
                continue
            remaining = None if deadline is None else max(0.0, deadline - clock.now())
            if final:
                await c.stop_task(final=True, timeout=remaining)
                c.end(remove=False)
            else:
                await self._halt(c, remaining)
                c.state = _STOPPED
        if final:
            self.records = [c for c in self.records if not c.removed]

    # --- dynamic children -----------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state is not _State.RUNNING or self._stop_requested:
            raise InvalidStateError(
                f"supervisor {self.name!r} is {self._state.value}; children can be "
                "started only while it runs"
            )

    async def start_child(self, spec: ChildSpec | Supervisor) -> ActorRef[Any, Any] | SupervisorRef:
        """Add a child and start it (:meth:`SupervisorRef.start_child`)."""
        self._check_running()
        if not isinstance(spec, (ChildSpec, Supervisor)):
            raise TypeError(
                f"start_child takes a corral.child(...) spec or a Supervisor, got {spec!r}"
            )
        assert self.context is not None and self._lock is not None
        if isinstance(spec, Supervisor) and spec.name is None:
            raise ValueError("a nested Supervisor needs a name")
        c = _Child(spec, self)
        if c.sup is not None:
            c.sup.bind(self.context, self)
        else:
            self.context.check_name_free(c.name)
        try:
            if c.spec is not None and _is_lazy(c.spec):
                # No hooks to wait for: nothing here awaits, so no lock is needed.
                self.records.append(c)
                error = c.start_lazy()
            else:
                async with self._lock:
                    self._check_running()
                    self.records.append(c)
                    error = await c.start(first=True)
        except BaseException:
            # A configuration error (not an Actor, no message types, name
            # taken): nothing of the child remains.
            c.end()
            raise
        if error is not None:
            c.end()
            raise error
        exports = self.context.exports
        if exports is not None:
            try:
                for each in exported_children(spec):
                    await exports.serve(each)
            except BaseException:
                # Not served as declared (a conflict, the cluster gone): nothing of it stays.
                with anyio.CancelScope(shield=True):
                    async with self._lock:
                        if not c.removed:
                            await self._finish(c, timeout=0)
                raise
        self._emit(_EV.CHILD_STARTED, c)
        if c.sup is not None:
            return c.sup.handle
        assert c.cell is not None
        return c.cell.ref

    async def stop_child(self, name: str) -> None:
        """Stop the child *name* for good and remove it (:meth:`SupervisorRef.stop_child`)."""
        assert self._lock is not None
        async with self._lock:
            for c in self.records:
                if c.name == name and not c.removed:
                    await self._finish(c)
                    return
        raise NotFound(f"supervisor {self.name!r} has no child named {name!r}")
