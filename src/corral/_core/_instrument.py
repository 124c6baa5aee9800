"""The hook interface through which the runtime reports what happens."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._calls import Call
    from ._runtime import Runtime
    from ._specs import SupervisorEvent

__all__ = ["DEFAULT_INSTRUMENTS", "Instrument", "Instruments", "default_instruments"]

logger = logging.getLogger("corral")


class Instrument:
    """Receives the runtime's events; override the hooks you need.

    Hooks are called synchronously in the task where the event happens and
    must not block. The call hooks run on the hot path of every call, so
    keep them cheap; a runtime with no instruments skips them entirely, and
    a hook an instrument does not override costs nothing. An instrument
    whose hook raises is logged on the ``corral`` logger and removed, so a
    broken instrument never fails calls.

    Per-call state can be kept in :attr:`Call.instrument_data`.
    """

    def runtime_started(self, runtime: Runtime) -> None:
        """The runtime has entered its block and started its tree."""

    async def runtime_closing(self, runtime: Runtime) -> None:
        """The runtime has stopped every actor and is about to exit.

        The place to flush buffered data. It runs shielded from outside
        cancellation, so bound it yourself.
        """

    def call_submitted(self, call: Call) -> None:
        """A call was accepted into its actor's mailbox (status ``QUEUED``).

        Runs in the sender's task, so the sender's context (its current
        span, for one) is visible here.
        """

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

    def call_interrupted(self, call: Call, error: BaseException) -> None:
        """The actor crashed (*error*) while running the call, and the call goes back in line.

        :meth:`Actor.retry_interrupted` asked for it: the call keeps its
        future and will start again (:meth:`call_started`) as its next
        attempt in the next incarnation. Runs in the worker task, like
        :meth:`call_finished` (undo here what :meth:`call_started` set).
        """

    def attempt_started(self, call: Call) -> None:
        """A call policy starts an attempt of the handler (``call.attempt`` is its number).

        Runs in the worker task, so a context set here is seen by the attempt.
        """

    def attempt_finished(self, call: Call, error: BaseException | None) -> None:
        """The attempt ended, with *error* or ``None`` for a success."""

    def retry_scheduled(self, call: Call, delay: float, error: BaseException) -> None:
        """A call policy will try the call again after *delay* seconds because of *error*."""

    def call_waited(self, call: Call, reason: str, seconds: float) -> None:
        """A call waited *seconds* for *reason* (for example ``"rate limit"``)."""

    def supervisor_event(self, event: SupervisorEvent) -> None:
        """A supervisor started, restarted or stopped a child, or gave up.

        The one place where crashes, restarts, give-ups and escalations are
        reported; each is also logged on the ``corral`` logger.
        """


_HOOKS: Final = (
    "runtime_started",
    "call_submitted",
    "call_started",
    "call_resolved",
    "call_finished",
    "call_interrupted",
    "attempt_started",
    "attempt_finished",
    "retry_scheduled",
    "call_waited",
    "supervisor_event",
)

#: The instruments every runtime adds when it starts, by import path: each
#: names a function called with the runtime's instruments that returns one
#: to add, or ``None`` (the tracing layer's adds the OpenTelemetry instrument
#: when OpenTelemetry providers are configured). They are looked up when a
#: runtime starts, not registered when a module is imported: importing corral
#: changes nothing, and the core imports no layer above it.
DEFAULT_INSTRUMENTS: Final = ("corral.telemetry._instrument:default_instrument",)

_resolved: dict[str, Callable[[list[Instrument]], Instrument | None]] = {}


def default_instruments(existing: Iterable[Instrument]) -> list[Instrument]:
    """The instruments :data:`DEFAULT_INSTRUMENTS` add beside *existing*, in order."""
    added: list[Instrument] = []
    for path in DEFAULT_INSTRUMENTS:
        factory = _resolved.get(path)
        if factory is None:
            module, _, name = path.partition(":")
            factory = _resolved[path] = getattr(importlib.import_module(module), name)
        extra = factory([*existing, *added])
        if extra is not None:
            added.append(extra)
    return added


class Instruments:
    """The instruments registered on one runtime, called in order.

    For each hook it keeps only the instruments that override it, so a hook
    nobody implements costs one empty loop.
    """

    __slots__ = ("_hooks", "_items")

    def __init__(self, items: Iterable[Instrument] = ()) -> None:
        self._items: list[Instrument] = []
        self._hooks: dict[str, tuple[tuple[Instrument, Callable[..., Any]], ...]] = {}
        for item in items:
            self.add(item)

    def add(self, item: Instrument) -> None:
        """Register *item* after the others."""
        if not isinstance(item, Instrument):
            raise TypeError(f"instruments must be corral.Instrument objects, got {item!r}")
        self._items.append(item)
        self._rebuild()

    def _rebuild(self) -> None:
        self._hooks = {
            hook: tuple(
                (item, getattr(item, hook))
                for item in self._items
                if getattr(type(item), hook) is not getattr(Instrument, hook)
            )
            for hook in _HOOKS
        }

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Any:
        return iter(list(self._items))

    def call(self, hook: str, *args: Any) -> None:
        """Call *hook* on every instrument that has it; drop an instrument that raises."""
        for item, fn in self._hooks[hook]:
            try:
                fn(*args)
            except Exception:
                self._drop(item, hook)

    def _drop(self, item: Instrument, hook: str) -> None:
        logger.exception("instrument %r raised in %s; it was removed", item, hook)
        if item in self._items:
            self._items.remove(item)
            self._rebuild()
