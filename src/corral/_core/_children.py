"""A supervisor's record of one child, actor or supervisor, across its restarts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._actor import Actor
from ._cell import ActorCell
from ._exceptions import ActorCrashed
from ._specs import ChildSpec, ChildState, Restart, Supervisor

if TYPE_CHECKING:
    from ._supervisor import SupervisorRef

__all__ = ["_Child"]

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

    def __init__(self, spec: ChildSpec | Supervisor, parent: SupervisorRef) -> None:
        #: The supervisor this is a child of.
        self.parent = parent
        self.spec = spec if isinstance(spec, ChildSpec) else None
        self.sup: SupervisorRef | None = None
        if isinstance(spec, Supervisor):
            from ._supervisor import SupervisorRef  # it imports this module

            self.sup = SupervisorRef._make(spec)
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

    # --- the cell's owner (CellOwner): what the cell tells its supervisor ---------------

    def activate(self, cell: ActorCell) -> None:
        self.parent._activate(self, cell)

    def incarnation_ended(self, cell: ActorCell, can_continue: bool) -> bool:
        return self.parent._cell_exited(self, cell, can_continue)

    def finalized(self, cell: ActorCell) -> None:
        context = self.parent._context
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
