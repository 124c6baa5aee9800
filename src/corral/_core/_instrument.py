"""The hook interface through which the runtime reports what happens."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._pile import Call
    from ._specs import SupervisorEvent

__all__ = ["Instrument", "Instruments"]

logger = logging.getLogger("corral")


class Instrument:
    """Receives the runtime's events; override the hooks you need.

    Hooks are called synchronously in the task where the event happens and
    must not block. They run on the hot path of every call, so keep them
    cheap; a runtime with no instruments skips them entirely. An instrument
    whose hook raises is logged on the ``corral`` logger and removed, so a
    broken instrument never fails calls.

    Per-call state can be kept in :attr:`Call.instrument_data`.
    """

    def call_submitted(self, call: Call) -> None:
        """A call was accepted into its actor's mailbox (status ``QUEUED``)."""

    def call_started(self, call: Call) -> None:
        """A worker starts the call's handler (status ``RUNNING``).

        Runs in the worker task right before the handler, so a context
        variable set here is seen by the handler.
        """

    def call_resolved(self, call: Call) -> None:
        """The call's future got its outcome.

        For a call that finishes normally this comes right before
        :meth:`call_finished`; for one cancelled or expired while running it
        comes first, and :meth:`call_finished` follows when the handler has
        unwound.
        """

    def call_finished(self, call: Call) -> None:
        """The call left the pile with its final status.

        For a call that ran, this runs in the worker task right after the
        handler (undo here what :meth:`call_started` set).
        """

    def supervisor_event(self, event: SupervisorEvent) -> None:
        """A supervisor started, restarted or stopped a child, or gave up.

        The one place where crashes, restarts, give-ups and escalations are
        reported; each is also logged on the ``corral`` logger.
        """


class Instruments:
    """The instruments registered on one runtime, called in order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Instrument] = ()) -> None:
        self._items: list[Instrument] = list(items)
        for item in self._items:
            if not isinstance(item, Instrument):
                raise TypeError(f"instruments must be corral.Instrument objects, got {item!r}")

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Any:
        return iter(self._items)

    def call(self, hook: str, *args: Any) -> None:
        """Call *hook* on every instrument; drop an instrument that raises."""
        for item in list(self._items):
            try:
                getattr(item, hook)(*args)
            except Exception:
                logger.exception("instrument %r raised in %s; it was removed", item, hook)
                self._items.remove(item)
