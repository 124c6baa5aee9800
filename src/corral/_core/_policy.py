"""The seam through which a layer above the core runs an actor's calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._calls import Call

__all__ = ["CallPolicy"]


class CallPolicy:
    """Decides how each call of an actor runs its handler.

    The runtime calls :meth:`run` in the worker, inside the call's deadline,
    with the call and a function that runs the handler once. A policy may
    wait first (rate limits), refuse (a circuit breaker), or call it several
    times (retries), and reports what it does on the :class:`Call`
    (:meth:`Call.attempt_started`, :meth:`Call.retry_scheduled`,
    :meth:`Call.waited`) so that the pile and the instruments see it.
    :class:`corral.ServicePolicy` is the one corral ships.
    """

    async def run(self, call: Call, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run the call; return the reply or raise its error."""
        return await attempt()
