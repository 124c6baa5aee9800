"""The supervision rules: what a supervisor does when a child exits, as one pure function.

OTP's supervisor in plain arithmetic, with nothing of a running tree in it:
:func:`decide` takes the facts of one exit (the strategy, the live
children's restart types, which one exited and whether it crashed, the
restart history, the clock's value, the backoff settings and state) and
returns a :class:`Decision`: finish the child, give up, or restart these
children after this delay. The supervisor carries it out; both of its
paths (the general one in its own task, and the restart in place in the
exiting actor's task) take the same decision from here.

The rules, in order:

1. A temporary child is never restarted; a transient one only after a
   crash. Either way the child finishes and nothing else happens.
2. The restart counts against the intensity: at most ``max_restarts`` in
   any ``within`` seconds, this one included (:func:`add_restart`). One more
   and the supervisor gives up (and escalates to its parent).
3. The strategy picks who restarts: the child alone (one-for-one), every
   live child (one-for-all), or the child and those started after it
   (rest-for-one). The others affected are stopped first, in reverse start
   order; a temporary one among them finishes instead of restarting.
4. With a :class:`Backoff`, the restart waits ``backoff.delay(n, rand)``,
   n the exiting child's consecutive restarts; n starts again from 0 once
   the child has run for the backoff's quiet period.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

import attrs

from ._backoff import Backoff
from ._specs import ONE_FOR_ALL, ONE_FOR_ONE, TEMPORARY, TRANSIENT, Restart, Strategy

__all__ = ["Action", "Decision", "add_restart", "decide"]


def add_restart(
    history: tuple[float, ...], now: float, max_restarts: int, within: float
) -> tuple[tuple[float, ...], bool]:
    """Record a restart at *now*; return the new history and whether the intensity allows it.

    *history* holds the times of earlier restarts, oldest first. Restarts
    older than ``now - within`` are forgotten; one exactly *within* seconds
    old still counts (OTP keeps a restart ``R`` while ``R >= Now - Period``).
    As in OTP's supervisor, the restart is allowed while the restarts in the
    window, this one included, number at most *max_restarts*; one more means
    the supervisor gives up.
    """
    horizon = now - within
    kept = (*(t for t in history if t >= horizon), now)
    return kept, len(kept) <= max_restarts


class Action(enum.Enum):
    """What a supervisor does about one exit."""

    #: The child ends for good (temporary, or transient and exited normally).
    FINISH = "finish"
    #: Too many restarts: the supervisor stops its children and escalates.
    GIVE_UP = "give up"
    #: Stop the others affected, then restart the group after the delay.
    RESTART = "restart"


@attrs.frozen(kw_only=True)
class Decision:
    """What to do about one exit; children are named by their index among the live ones.

    Attributes:
        action: Finish, give up or restart.
        history: The restart history to keep (with this restart when it
            counted against the intensity, allowed or not).
        stop: Other children to stop first, in the order to stop them
            (reverse start order).
        finish: Of those, the temporary ones, in start order: they end
            instead of restarting.
        restart: The children to restart, in start order (the exited one included).
        delay: Seconds to wait before restarting them.
        backoff_count: The exited child's consecutive restarts after this one.
    """

    action: Action
    history: tuple[float, ...]
    stop: tuple[int, ...] = ()
    finish: tuple[int, ...] = ()
    restart: tuple[int, ...] = ()
    delay: float = 0.0
    backoff_count: int = 0

    @property
    def alone(self) -> bool:
        """Whether the decision is to restart the exited child alone, at once."""
        return (
            self.action is Action.RESTART
            and len(self.restart) == 1
            and not self.stop
            and self.delay == 0.0
        )


def decide(
    *,
    strategy: Strategy,
    restarts: Sequence[Restart],
    index: int,
    crashed: bool,
    history: tuple[float, ...],
    now: float,
    max_restarts: int,
    within: float,
    backoff: Backoff | None = None,
    backoff_count: int = 0,
    started_at: float = 0.0,
    rand: Callable[[], float] = lambda: 0.0,
) -> Decision:
    """Decide what a supervisor does when its live child number *index* exits.

    Args:
        strategy: The supervisor's restart strategy.
        restarts: The restart types of the live children, in start order.
        index: Which of them exited.
        crashed: Whether it crashed (rather than returned normally).
        history: The supervisor's restart times, oldest first.
        now: The supervisor clock's value at the exit.
        max_restarts: The intensity: at most this many restarts ...
        within: ... in any window of this many seconds.
        backoff: The restart backoff, if any.
        backoff_count: The exited child's consecutive restarts so far.
        started_at: When the exited child last started (for the quiet period).
        rand: A uniform draw in [0, 1) for the backoff's jitter; called
            once, and only when a restart waits on a backoff.

    Raises:
        IndexError: *index* names no child in *restarts*.
    """
    if not 0 <= index < len(restarts):
        raise IndexError(f"child {index} of {len(restarts)} live children")
    kind = restarts[index]
    if kind is TEMPORARY or (kind is TRANSIENT and not crashed):
        return Decision(action=Action.FINISH, history=history)
    kept, allowed = add_restart(history, now, max_restarts, within)
    if not allowed:
        return Decision(action=Action.GIVE_UP, history=kept)
    if strategy is ONE_FOR_ONE:
        affected = [index]
    elif strategy is ONE_FOR_ALL:
        affected = list(range(len(restarts)))
    else:
        affected = list(range(index, len(restarts)))
    others = [i for i in affected if i != index]
    count, delay = backoff_count, 0.0
    if backoff is not None:
        if now - started_at >= backoff.quiet_period:
            count = 0
        delay = backoff.delay(count, rand())
        count += 1
    return Decision(
        action=Action.RESTART,
        history=kept,
        stop=tuple(reversed(others)),
        finish=tuple(i for i in others if restarts[i] is TEMPORARY),
        restart=tuple(i for i in affected if i == index or restarts[i] is not TEMPORARY),
        delay=delay,
        backoff_count=count,
    )
