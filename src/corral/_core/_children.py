"""A supervisor's record of one child, actor or supervisor, across its restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._actor import Actor
from ._cell import ActorCell
from ._exceptions import ActorCrashed
from ._specs import ChildSpec, ChildState, Restart, Supervisor

if TYPE_CHECKING:
    from ._supervisor import SupervisorNode

__all__ = ["_Child"]

_RUNNING = ChildState.RUNNING
_STOPPED = ChildState.STOPPED


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


class _Child:
    """A supervisor's record of one child, actor or supervisor, across its restarts."""

    __slots__ = (
        "backoff_count",
        "cell",
        "exited",
        "last_error",
        "parent",
        "removed",
        "restarts",
        "running",
        "spec",
        "started_at",
        "starting",
        "state",
        "stopping",
        "sup",
    )

    def __init__(self, spec: ChildSpec | Supervisor, parent: SupervisorNode) -> None:
        #: The supervisor this is a child of.
        self.parent = parent
        self.spec = spec if isinstance(spec, ChildSpec) else None
        self.sup: SupervisorNode | None = None
        if isinstance(spec, Supervisor):
            from ._supervisor import SupervisorNode  # it imports this module

            self.sup = SupervisorNode(spec)
        self.cell: ActorCell | None = None
        self.state = _STOPPED
        self.restarts = 0
        self.last_error: BaseException | None = None
        #: Whether the child has a task that has not ended yet.
        self.running = False
        #: Whether its supervisor asked it to stop (its exit is then expected).
        self.stopping = False
        self.exited: anyio.Event | None = None
        self.removed = False
        self.backoff_count = 0
        self.started_at = 0.0
        #: Whether a start (with its wait for on_start) is under way.
        self.starting = False

    @property
    def name(self) -> str:
        if self.spec is not None:
            return self.spec.name
        assert self.sup is not None
        return self.sup.name

    @property
    def restart(self) -> Restart:
        if self.spec is not None:
            return self.spec.restart
        assert self.sup is not None
        return self.sup.restart

    @property
    def shutdown(self) -> float | None:
        if self.spec is not None:
            return self.spec.shutdown
        assert self.sup is not None
        return self.sup.shutdown

    # --- starting and stopping this child ------------------------------------------------

    async def start(self, *, first: bool = False) -> BaseException | None:
        """Start (or restart) the child; return the error that kept it from starting."""
        parent = self.parent
        context = parent.context
        tg = parent.tg
        assert context is not None and tg is not None
        clock = context.clock
        # The child counts as running from here: once started it may serve
        # calls before this task runs again.
        previous_state = self.state
        self.state = _RUNNING
        self.started_at = clock.now()
        if self.sup is not None:
            sub = self.sup
            self.running = True
            await tg.start(parent.run_sub, self, name=f"corral supervisor {sub.name}")
            if sub.start_error is not None:
                self.running = False
                self.state = previous_state
                return sub.start_error
            return None
        spec = self.spec
        assert spec is not None
        try:
            instance = spec.factory()
        except Exception as exc:
            # A first start reports it as a failed start (as spawn does); a
            # restart that cannot build its instance has simply crashed again.
            self.state = previous_state
            return _start_failed(spec.name, exc) if first else exc
        if self.cell is None:
            try:
                self.cell = context.new_cell(spec, instance)
            except TypeError as exc:
                # The factory made no usable actor: the user's mistake, so the
                # TypeError itself (as spawn raises it), not a crash of the child.
                self.state = previous_state
                return exc
            self.cell.owner = self
        else:
            try:
                self.cell.prepare_restart(instance)
            except TypeError as exc:
                self.state = previous_state
                return exc
        cell = self.cell
        if cell.lazy and not cell.mailbox.queue:
            cell.mark_dormant()
            return None
        cell.mark_active()
        self.running = True
        self.starting = True
        try:
            await tg.start(cell.run, name=f"corral actor {spec.name}")
        finally:
            self.starting = False
        if cell.start_failed:
            self.running = False
            self.state = previous_state
            assert cell.crash is not None
            return _start_failed(spec.name, cell.crash) if first else cell.crash
        return None

    async def stop_task(self, *, final: bool, timeout: float | None) -> None:
        """Stop the child's task (for good if *final*) within *timeout*, and wait for it."""
        parent = self.parent
        limit = self.shutdown
        if timeout is not None:
            limit = timeout if limit is None else min(limit, timeout)
        if not self.running:
            # Nothing to wait for (never called, or it ended meanwhile: its
            # pending exit is superseded by this stop).
            parent.pending = [(x, e) for x, e in parent.pending if x is not self]
            return
        self.stopping = True
        self.exited = anyio.Event()
        try:
            if self.cell is not None:
                if final:
                    self.cell.request_stop(limit)
                else:
                    self.cell.request_halt(limit)
            else:
                assert self.sup is not None
                self.sup.request_stop(final=final, timeout=limit)
            await self.exited.wait()
        finally:
            self.stopping = False
            self.exited = None

    def end(self, *, remove: bool = True) -> None:
        """End the child for good; with *remove*, out of its supervisor's list."""
        parent = self.parent
        self.removed = True
        self.state = _STOPPED
        if self.cell is not None:
            self.cell.finalize()
        if self.sup is not None:
            self.sup.end_all()
        if remove and self in parent.records:
            parent.records.remove(self)

    def start_lazy(self) -> BaseException | None:
        """Make the cell of a lazy actor child, its task left for its first call."""
        parent = self.parent
        spec = self.spec
        assert spec is not None and parent.context is not None
        try:
            instance = spec.factory()
        except Exception as exc:
            return _start_failed(spec.name, exc)
        self.cell = parent.context.new_cell(spec, instance)
        self.cell.owner = self
        self.cell.mark_dormant()
        self.state = _RUNNING
        self.started_at = parent.context.clock.now()
        return None

    # --- the cell's owner (CellOwner): what the cell tells its supervisor ---------------

    def activate(self, cell: ActorCell) -> None:
        """Start the task of a lazy actor child at its first call."""
        # A lazy actor's first call: start its task, in the context it was
        # spawned in (not the sender's).
        tg = self.parent.tg
        assert tg is not None
        self.running = True
        name = f"corral actor {cell.name}"
        cell.context.run(lambda: tg.start_soon(cell.run, name=name))

    def incarnation_ended(self, cell: ActorCell, can_continue: bool) -> bool:
        return self.parent.cell_exited(self, cell, can_continue)

    def finalized(self, cell: ActorCell) -> None:
        context = self.parent.context
        assert context is not None
        context.forget_cell(cell)


def _is_lazy(spec: ChildSpec) -> bool:
    factory = spec.factory
    if isinstance(factory, type) and issubclass(factory, Actor):
        return factory.on_start is Actor.on_start and factory.on_stop is Actor.on_stop
    return False


def _start_failed(name: str, error: BaseException) -> ActorCrashed:
    failure = ActorCrashed(f"actor {name!r} failed to start: {error!r}")
    failure.__cause__ = error
    return failure
