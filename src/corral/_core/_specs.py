"""Supervision vocabulary: strategies, restart types, child specs and events."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from ._actor import Actor, check_handles_something
from ._backoff import Backoff
from ._cell import DEFAULT_SHUTDOWN
from ._checks import check_positive_int, check_timeout
from ._mailbox import DEFAULT_MAILBOX_CAPACITY
from ._policy import CallPolicy

__all__ = [
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "TEMPORARY",
    "TRANSIENT",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorEventKind",
    "child",
    "exported_children",
]


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them crashes."""

    #: Restart only the child that crashed.
    ONE_FOR_ONE = "one_for_one"
    #: Stop all the other children (in reverse start order) and restart them all.
    ONE_FOR_ALL = "one_for_all"
    #: Stop and restart the child that crashed and every child started after it.
    REST_FOR_ONE = "rest_for_one"


ONE_FOR_ONE = Strategy.ONE_FOR_ONE
ONE_FOR_ALL = Strategy.ONE_FOR_ALL
REST_FOR_ONE = Strategy.REST_FOR_ONE


class Restart(enum.Enum):
    """When a child that ended is started again."""

    #: Always, whether it crashed or stopped normally.
    PERMANENT = "permanent"
    #: Only after a crash, not after a normal stop.
    TRANSIENT = "transient"
    #: Never.
    TEMPORARY = "temporary"


PERMANENT = Restart.PERMANENT
TRANSIENT = Restart.TRANSIENT
TEMPORARY = Restart.TEMPORARY


def _check_name(_: Any, __: Any, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"a child name must be a non-empty str, got {value!r}")


def _check_restart(_: Any, __: Any, value: Restart) -> None:
    if not isinstance(value, Restart):
        raise TypeError(f"restart must be PERMANENT, TRANSIENT or TEMPORARY, got {value!r}")


def _check_shutdown(_: Any, __: Any, value: float | None) -> None:
    check_timeout(value, "shutdown")


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one actor (made by :func:`child`)."""

    factory: Callable[[], Actor[Any, Any]]
    name: str = attrs.field(validator=_check_name)
    restart: Restart = attrs.field(default=PERMANENT, validator=_check_restart)
    shutdown: float | None = attrs.field(default=DEFAULT_SHUTDOWN, validator=_check_shutdown)
    mailbox: int = attrs.field(default=DEFAULT_MAILBOX_CAPACITY)
    max_concurrency: int = attrs.field(default=1)
    policy: CallPolicy | None = None
    export: bool = attrs.field(default=False)
    durable: bool = attrs.field(default=True)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.export, bool):
            raise TypeError(f"export of child {self.name!r} must be a bool, got {self.export!r}")
        if not isinstance(self.durable, bool):
            raise TypeError(f"durable of child {self.name!r} must be a bool, got {self.durable!r}")
        if not self.durable and not self.export:
            raise ValueError(
                f"durable=False of child {self.name!r} applies to an exported actor "
                "(export=True): it chooses how the cluster delivers its calls"
            )
        if not callable(self.factory):
            raise TypeError(
                f"child {self.name!r} needs an Actor class or factory, got {self.factory!r}"
            )
        if isinstance(self.factory, type) and issubclass(self.factory, Actor):
            check_handles_something(self.factory)
        check_positive_int(self.mailbox, "mailbox capacity")
        check_positive_int(self.max_concurrency, "max_concurrency")
        if self.policy is not None and not isinstance(self.policy, CallPolicy):
            raise TypeError(
                f"policy of child {self.name!r} must be a corral.ServicePolicy (a CallPolicy), "
                f"got {self.policy!r}"
            )


def child(
    factory: Callable[[], Actor[Any, Any]],
    *,
    name: str,
    restart: Restart = PERMANENT,
    shutdown: float | None = DEFAULT_SHUTDOWN,
    mailbox: int = DEFAULT_MAILBOX_CAPACITY,
    max_concurrency: int = 1,
    policy: CallPolicy | None = None,
    export: bool = False,
    durable: bool = True,
) -> ChildSpec:
    """Describe an actor child of a :class:`Supervisor`.

    Args:
        factory: The actor class, or a callable that returns a new instance
            (called again for every restart).
        name: Unique name in the runtime.
        restart: :data:`PERMANENT` (default), :data:`TRANSIENT` or :data:`TEMPORARY`.
        shutdown: Seconds the actor gets to finish its calls when stopped,
            and separately for ``on_stop``; ``0`` cancels at once, ``None``
            waits without limit. Default :data:`DEFAULT_SHUTDOWN` (5 s, as OTP).
        mailbox: Mailbox capacity.
        max_concurrency: Calls that may run at once.
        policy: How its calls run (retries, rate limit, circuit breaker): a
            :class:`corral.ServicePolicy`; default the actor class's ``policy``.
        export: Serve the actor to the runtime's :class:`corral.Cluster` too:
            this node then also takes the actor's calls sent from any process
            (:meth:`Runtime.remote`), under the same mailbox, policy and
            supervision.
        durable: With ``export``: ``True`` (default) delivers its calls
            through the cluster's JetStream stream, so a call outlives the
            node running it; ``False`` delivers them over core NATS
            request/reply: faster, but a call is lost with the node that
            holds it (its caller gets :class:`corral.NodeLost`).

    Raises:
        ValueError, TypeError: A setting is out of range; the message names it.
    """
    return ChildSpec(
        factory=factory,
        name=name,
        restart=restart,
        shutdown=shutdown,
        mailbox=mailbox,
        max_concurrency=max_concurrency,
        policy=policy,
        export=export,
        durable=durable,
    )


def _check_supervisor_name(_: Any, __: Any, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"a supervisor name must be a non-empty str, got {value!r}")


def _check_strategy(_: Any, __: Any, value: Strategy) -> None:
    if not isinstance(value, Strategy):
        raise TypeError(f"strategy must be ONE_FOR_ONE, ONE_FOR_ALL or REST_FOR_ONE, got {value!r}")


def _check_max_restarts(_: Any, __: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_restarts must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"max_restarts must be >= 0, got {value}")


def _within(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"within must be a number of seconds, got {value!r}")
    if not value > 0 or math.isinf(value):
        raise ValueError(f"within must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_backoff(_: Any, __: Any, value: Backoff | None) -> None:
    if value is not None and not isinstance(value, Backoff):
        raise TypeError(f"backoff must be a corral.Backoff or None, got {value!r}")


def _children(value: Iterable[ChildSpec | Supervisor]) -> tuple[ChildSpec | Supervisor, ...]:
    if isinstance(value, (ChildSpec, Supervisor, str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"children must be a list of child specs and Supervisors, got {value!r}")
    specs = tuple(value)
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, (ChildSpec, Supervisor)):
            raise TypeError(
                f"children must be corral.child(...) specs or Supervisors, got {spec!r}"
            )
        if spec.name is None:
            raise ValueError("a nested Supervisor needs a name")
        if spec.name in seen:
            raise ValueError(f"two children are named {spec.name!r}")
        seen.add(spec.name)
    return specs


@attrs.frozen(kw_only=True)
class Supervisor:
    """A node of the supervision tree, as plain data: what to start and how to restart it.

    ::

        tree = corral.Supervisor(
            strategy=corral.ONE_FOR_ONE,
            max_restarts=3, within=5.0,
            backoff=corral.Backoff(min=0.1, max=10.0),
            children=[
                corral.child(Chat, name="chat"),
                corral.child(Embedder, name="embed", restart=corral.TRANSIENT),
                corral.Supervisor(name="tools", strategy=corral.REST_FOR_ONE, children=[...]),
            ],
        )
        async with corral.Runtime(tree) as rt:
            rt.supervisor("tools").children()

    Children start in list order, each ready (its ``on_start`` done) before
    the next, and stop in reverse order. When a child crashes the
    *strategy* decides which children restart; more than *max_restarts*
    restarts within *within* seconds make the supervisor give up: it stops
    its children and fails with :class:`SupervisorGaveUp`, which its parent
    handles as a crash of this child (escalation). The semantics follow
    Erlang/OTP's ``supervisor``; backoff follows Akka.

    The spec is frozen, comparable and printable, and it holds no running
    state: one spec may be run by any number of runtimes, one after another
    or at once. A runtime builds its running supervisors from it; reach one
    with :meth:`Runtime.supervisor` (a :class:`SupervisorRef`). A supervisor
    that its parent restarts keeps its children's mailboxes (queued calls
    survive).

    Args:
        name: Unique name (the root defaults to ``"root"``; nested ones need one).
        strategy: :data:`ONE_FOR_ONE` (default), :data:`ONE_FOR_ALL` or :data:`REST_FOR_ONE`.
        max_restarts: Restart intensity: at most this many restarts ...
        within: ... in this many seconds (default 1 in 5 s, as OTP).
        backoff: Delay before restarts (default: none, restart at once, as OTP).
        children: :func:`child` specs and nested supervisors, in start order
            (kept as a tuple).
        restart: This supervisor's restart type as a child of another.
        shutdown: Time this supervisor gets to stop its children when it is
            stopped; ``None`` (default, as OTP) waits for them without limit
            (each child is still bounded by its own ``shutdown``).

    Raises:
        ValueError, TypeError: A setting is out of range, a nested supervisor
            has no name, or two children share a name; the message says which.
    """

    name: str | None = attrs.field(default=None, validator=_check_supervisor_name)
    strategy: Strategy = attrs.field(default=Strategy.ONE_FOR_ONE, validator=_check_strategy)
    max_restarts: int = attrs.field(default=1, validator=_check_max_restarts)
    within: float = attrs.field(default=5.0, converter=_within)
    backoff: Backoff | None = attrs.field(default=None, validator=_check_backoff)
    children: tuple[ChildSpec | Supervisor, ...] = attrs.field(default=(), converter=_children)
    restart: Restart = attrs.field(default=Restart.PERMANENT, validator=_check_restart)
    shutdown: float | None = attrs.field(default=None, validator=_check_shutdown)


class ChildState(enum.Enum):
    """State of a supervisor's child, as :meth:`SupervisorRef.children` reports it."""

    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@attrs.frozen(kw_only=True)
class ChildInfo:
    """One row of :meth:`SupervisorRef.children`."""

    name: str
    #: ``"actor"`` or ``"supervisor"``.
    kind: str
    state: ChildState
    restart: Restart
    #: How often the supervisor restarted this child.
    restarts: int
    #: ``"ErrorType: message"`` of the child's last crash, or ``None``.
    last_error: str | None


def exported_children(spec: ChildSpec | Supervisor) -> Iterator[ChildSpec]:
    """*spec* if it is an actor child declared ``export=True``; a supervisor's such children.

    Nested supervisors are searched too.
    """
    if isinstance(spec, ChildSpec):
        if spec.export:
            yield spec
        return
    for each in spec.children:
        yield from exported_children(each)


class SupervisorEventKind(enum.Enum):
    """What a :class:`SupervisorEvent` reports."""

    #: A child was started (the first time, or by start_child).
    CHILD_STARTED = "child_started"
    #: A child crashed (an exception ended it).
    CHILD_CRASHED = "child_crashed"
    #: A child ended normally on its own (a normal stop it was not asked for by its supervisor).
    CHILD_EXITED = "child_exited"
    #: A restart was decided; ``delay`` says how long the supervisor waits first.
    RESTART_SCHEDULED = "restart_scheduled"
    #: A child was restarted: a new instance is running.
    CHILD_RESTARTED = "child_restarted"
    #: A child was stopped for good (by its supervisor, or it ended and is not restarted).
    CHILD_STOPPED = "child_stopped"
    #: The supervisor exceeded its restart intensity and stopped all its children.
    GAVE_UP = "gave_up"
    #: The supervisor's failure went up to its parent (or out of the runtime at the root).
    ESCALATED = "escalated"


@attrs.frozen(kw_only=True)
class SupervisorEvent:
    """One thing a supervisor did, as reported to :meth:`Instrument.supervisor_event`."""

    kind: SupervisorEventKind
    #: Name of the supervisor that reports it.
    supervisor: str
    strategy: Strategy
    #: The child concerned, if any.
    child: str | None = None
    #: Restarts of that child so far.
    restarts: int = 0
    #: The error that ended the child (or made the supervisor give up).
    error: BaseException | None = None
    #: For RESTART_SCHEDULED, seconds until the restart.
    delay: float | None = None
    #: The supervisor clock's time.
    time: float = 0.0
