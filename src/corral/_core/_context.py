"""What a running supervision tree needs of its runtime, and nothing more.

The supervisors of one runtime share one :class:`TreeContext`: the registry
of names (actors and supervisors share one namespace), the instruments, the
clock, and the making of actor cells. The runtime reads the registry through
it too (``rt.ref``, ``rt.supervisor``, ``rt.status``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._actor import Actor
from ._cell import ActorCell
from ._clock import Clock
from ._exceptions import NameTaken
from ._instrument import Instruments
from ._loop import LoopHooks
from ._specs import ChildSpec

if TYPE_CHECKING:
    from ._supervisor import SupervisorNode

__all__ = ["Exports", "TreeContext"]


class Exports(Protocol):
    """Where a runtime in a cluster serves its actors declared ``export=True`` (its node)."""

    async def serve(self, spec: ChildSpec) -> None:
        """Serve the actor of *spec* (running in this tree) to the cluster."""

    async def unserve(self, name: str) -> None:
        """Take no more calls for actor *name* from the cluster (it stops for good)."""


class TreeContext:
    """The registry, instruments and clock of one runtime's tree, and its cell factory.

    Attributes:
        clock: The supervision clock (intensity windows, backoff).
        instruments: The runtime's instruments, or ``None`` when it has none.
        cells: The live actors' cells by name, in spawn order.
        supervisors: The running supervisors by name.
        exports: Where exported children started later are served.
    """

    __slots__ = ("cells", "clock", "exports", "instruments", "loop", "supervisors")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.instruments: Instruments | None = None
        #: The event loop's fast paths, set once the runtime runs in it.
        self.loop: LoopHooks | None = None
        self.cells: dict[str, ActorCell] = {}
        self.supervisors: dict[str, SupervisorNode] = {}
        #: The runtime's cluster node once the tree is served, for children started
        #: and stopped later (``None`` without a cluster).
        self.exports: Exports | None = None

    def check_name_free(self, name: str) -> None:
        """Raise :class:`NameTaken` if an actor or a supervisor has *name*."""
        if name in self.cells or name in self.supervisors:
            raise NameTaken(f"the name {name!r} is already in use in this runtime")

    def register_supervisor(self, sup: SupervisorNode) -> None:
        self.check_name_free(sup.name)
        self.supervisors[sup.name] = sup

    def forget_supervisor(self, sup: SupervisorNode) -> None:
        if self.supervisors.get(sup.name) is sup:
            del self.supervisors[sup.name]

    def new_cell(self, spec: ChildSpec, instance: Actor[Any, Any]) -> ActorCell:
        """Make and register the cell of an actor child.

        Raises:
            TypeError: The factory made something that is not an :class:`Actor`.
            NameTaken: The name is in use.
        """
        assert self.loop is not None, "cells are made once the runtime runs"
        if not isinstance(instance, Actor):
            raise TypeError(
                f"spawn needs an Actor class or factory; {spec.factory!r} made {instance!r}"
            )
        self.check_name_free(spec.name)
        cell = ActorCell(
            name=spec.name,
            factory=spec.factory,
            instance=instance,
            capacity=spec.mailbox,
            max_concurrency=spec.max_concurrency,
            shutdown=spec.shutdown,
            instruments=self.instruments,
            loop=self.loop,
            policy=spec.policy,
        )
        self.cells[spec.name] = cell
        return cell

    def forget_cell(self, cell: ActorCell) -> None:
        """Free the name of a cell that ended for good."""
        if self.cells.get(cell.name) is cell:
            del self.cells[cell.name]
