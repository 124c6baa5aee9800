"""The actor base class and the declaration of the messages an actor handles."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs

from ._exceptions import InvalidStateError

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._policy import CallPolicy
    from ._ref import ActorRef

__all__ = ["Actor", "handles", "streams"]

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")
F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])
G = TypeVar("G", bound=Callable[..., AsyncIterator[Any]])

_HANDLES_ATTR = "__corral_handles__"
_STREAMS_ATTR = "__corral_streams__"


def handles(*types_: type[Any]) -> Callable[[F], F]:
    """Declare that the decorated ``async`` method handles these message types.

    ::

        class Tools(corral.Actor[Search, Results]):
            async def handle(self, msg: Search) -> Results: ...

            @corral.handles(Fetch, Head)
            async def fetch(self, msg: Fetch | Head) -> Page: ...

    Messages are dispatched by type; a subclass of a declared type goes to
    the handler of its nearest declared base class.

    Raises:
        TypeError: A type is not an attrs class, or none is given.
    """
    if not types_:
        raise TypeError("@corral.handles needs at least one message type")
    for t in types_:
        if not (isinstance(t, type) and attrs.has(t)):
            raise TypeError(f"@corral.handles takes attrs message classes, got {t!r}")

    def mark(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@corral.handles needs an async def method, got {fn!r}")
        setattr(fn, _HANDLES_ATTR, (*getattr(fn, _HANDLES_ATTR, ()), *types_))
        return fn

    return mark


def streams(*types_: type[Any]) -> Callable[[G], G]:
    """Declare that the decorated async generator method streams replies to these types.

    ::

        class Chat(corral.Actor[Ask, Answer]):
            @corral.streams(Ask)
            async def stream_answer(self, msg: Ask) -> AsyncIterator[str]:
                async for piece in ...:
                    yield piece

    Callers get the chunks with :meth:`ActorRef.stream`; ``ask`` keeps going
    to the ordinary handler of the type, if there is one.

    Raises:
        TypeError: A type is not an attrs class, or the method is not an
            ``async def`` generator.
    """
    if not types_:
        raise TypeError("@corral.streams needs at least one message type")
    for t in types_:
        if not (isinstance(t, type) and attrs.has(t)):
            raise TypeError(f"@corral.streams takes attrs message classes, got {t!r}")

    def mark(fn: G) -> G:
        is_generator: bool = inspect.isasyncgenfunction(fn)  # no narrowing of G
        if not is_generator:
            raise TypeError(f"@corral.streams needs an async generator method, got {fn!r}")
        setattr(fn, _STREAMS_ATTR, (*getattr(fn, _STREAMS_ATTR, ()), *types_))
        return fn

    return mark


def _request_types(cls: type) -> list[type]:
    """Return the request types named by ``Actor[Req, Reply]`` in *cls*'s bases."""
    found: list[type] = []
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        if not (isinstance(origin, type) and issubclass(origin, Actor)):
            continue
        args = typing.get_args(base)
        if not args:
            continue
        req = args[0]
        members = (
            typing.get_args(req)
            if typing.get_origin(req) in (typing.Union, types.UnionType)
            else (req,)
        )
        for member in members:
            if isinstance(member, TypeVar) or member is Any:
                continue
            if not (isinstance(member, type) and attrs.has(member)):
                raise TypeError(
                    f"{cls.__qualname__}: the request type of Actor[...] must be an attrs "
                    f"message class (or a union of them), got {member!r}"
                )
            found.append(member)
    return found


class Actor(Generic[ReqT, ReplyT]):
    """Base class of the actors that serve one kind of service.

    Subclass it with the request and reply types and write :meth:`handle`::

        @corral.message
        class Add:
            a: int
            b: int

        class Calculator(corral.Actor[Add, int]):
            async def handle(self, msg: Add) -> int:
                return msg.a + msg.b

    More message types can go to other methods with :func:`handles`. The
    runtime makes the instance (a restart makes a new one), so keep the
    state of one incarnation on ``self``. A handler's exception fails only
    its own call, unless its type is listed in :attr:`fatal` (or it is
    :class:`corral.Crash`): then the actor crashes and its supervisor decides
    what happens next.

    Class attributes:
        fatal: Exception types that crash the actor instead of failing one call.
        idempotent: Whether running a call twice is harmless. A cluster
            node keeps no result record for an idempotent actor's calls
            (cheaper), so a call whose node died after running it runs again.
    """

    fatal: ClassVar[tuple[type[BaseException], ...]] = ()
    idempotent: ClassVar[bool] = False
    #: How calls run (retries, rate limits, circuit breaker); see
    #: :class:`corral.ServicePolicy`. A ``policy=`` given at spawn wins.
    policy: ClassVar[CallPolicy | None] = None

    #: Message type -> name of the method that handles it (built per class).
    __corral_dispatch__: ClassVar[dict[type, str]] = {}
    #: Message type -> the function itself; the runtime also caches the
    #: handlers it resolved for subclasses of declared types here.
    __corral_handlers__: ClassVar[dict[type, Any]] = {}
    #: Message type -> the async generator that streams its replies.
    __corral_streamers__: ClassVar[dict[type, Any]] = {}
    __corral_stream_names__: ClassVar[dict[type, str]] = {}

    _corral_cell: ActorCell

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, str] = {}
        for base in reversed(cls.__mro__[1:]):
            table.update(getattr(base, "__corral_dispatch__", {}))
        for t in _request_types(cls):
            table[t] = "handle"
        for attr_name, value in vars(cls).items():
            for t in getattr(value, _HANDLES_ATTR, ()):
                table[t] = attr_name
        if not isinstance(cls.fatal, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in cls.fatal
        ):
            raise TypeError(
                f"{cls.__qualname__}.fatal must be a tuple of exception classes, got {cls.fatal!r}"
            )
        if "handle" in vars(cls) and not inspect.iscoroutinefunction(vars(cls)["handle"]):
            raise TypeError(f"{cls.__qualname__}.handle must be an async def method")
        cls.__corral_dispatch__ = table
        cls.__corral_handlers__ = {t: getattr(cls, attr) for t, attr in table.items()}
        streamers: dict[type, str] = {}
        for base in reversed(cls.__mro__[1:]):
            streamers.update(getattr(base, "__corral_stream_names__", {}))
        for attr_name, value in vars(cls).items():
            for t in getattr(value, _STREAMS_ATTR, ()):
                streamers[t] = attr_name
        cls.__corral_stream_names__ = streamers
        cls.__corral_streamers__ = {t: getattr(cls, attr) for t, attr in streamers.items()}

    async def handle(self, msg: ReqT) -> ReplyT:
        """Serve one request and return the reply.

        Raise to fail this call only; raise :class:`corral.Crash` (or a type in
        :attr:`fatal`) to crash the actor.
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not implement handle()")

    async def on_start(self) -> None:
        """Run once per incarnation before the first call; an exception here is a crash.

        Open clients and connections here. Calls sent meanwhile wait in the mailbox.
        """

    async def on_stop(self) -> None:
        """Run once per incarnation after the last call, on a normal stop or a crash.

        Close what :meth:`on_start` opened. It runs shielded from outside
        cancellation but within the actor's shutdown time. It does not run if
        :meth:`on_start` failed.
        """

    def retry_interrupted(self, msg: ReqT, error: BaseException) -> bool:
        """Say whether a call cut short by this actor's crash should run again.

        Called, on the instance that crashed, for each call that was running
        beside the one that crashed the actor (never for that one). The
        default, ``False``, fails the call with :class:`corral.ActorCrashed`
        (as OTP and Akka do: a restart never re-runs what was in flight).
        Return ``True`` for idempotent work: the call goes back to the head
        of the queue, in its original order, as its next attempt, and the
        next incarnation runs it. If the actor is not restarted it fails
        with :class:`corral.ActorStopped` like every queued call.
        """
        return False

    @property
    def ref(self) -> ActorRef[ReqT, ReplyT]:
        """This actor's own ref (valid across restarts)."""
        return self._cell_or_raise().ref

    @property
    def name(self) -> str:
        """The name this actor was spawned under."""
        return self._cell_or_raise().name

    def _cell_or_raise(self) -> ActorCell:
        try:
            return self._corral_cell
        except AttributeError:
            raise InvalidStateError(
                f"{type(self).__qualname__} instance is not running in a corral runtime "
                "(ref and name exist once the runtime has spawned it)"
            ) from None


# --- what an actor class handles --------------------------------------------------------


async def pong(instance: Actor[Any, Any], msg: Any) -> Any:
    """The handler every actor has for :class:`corral.Ping`."""
    from ._messages import Pong

    return Pong(name=instance.name)


def message_types(cls: type[Actor[Any, Any]]) -> tuple[type, ...]:
    """The message types *cls* declares (its handlers' and its streams'), in declaration order.

    What a layer that carries an actor's messages elsewhere registers with
    its :class:`corral.Protocol` (the cluster's serving node does).
    """
    return (*cls.__corral_dispatch__, *cls.__corral_streamers__)


def check_handles_something(cls: type[Actor[Any, Any]]) -> None:
    """Refuse an actor class that declares no message types."""
    if not cls.__corral_dispatch__ and not cls.__corral_streamers__:
        raise TypeError(
            f"{cls.__qualname__} handles no message types: declare them as "
            f"Actor[Request, Reply] or with @corral.handles(...)"
        )


def _not_a_message(actor: str, t: type) -> str:
    return (
        f"actor {actor!r} was sent a {t.__qualname__}, which is not a corral message "
        f"(an attrs class; declare it with @corral.message)"
    )


def handler_for(
    cls: type[Actor[Any, Any]],
    cache: dict[type, Callable[[Any, Any], Coroutine[Any, Any, Any]]],
    actor: str,
    msg: object,
) -> Callable[[Any, Any], Coroutine[Any, Any, Any]]:
    """The handler of actor *actor* (of class *cls*) for *msg*: by its type or a base's.

    A handler found through a base class is kept in *cache* under the type.

    Raises:
        UnhandledMessage: *msg* is not a corral message, or the actor does not handle it.
    """
    from ._exceptions import UnhandledMessage

    t = type(msg)
    func = cache.get(t)
    if func is not None:
        return func
    if not attrs.has(t):
        raise UnhandledMessage(_not_a_message(actor, t))
    for base in t.__mro__[1:]:
        func = cache.get(base)
        if func is not None:
            cache[t] = func
            return func
    handled = ", ".join(sorted({c.__qualname__ for c in cls.__corral_dispatch__}))
    raise UnhandledMessage(
        f"actor {actor!r} ({cls.__qualname__}) does not handle "
        f"{t.__qualname__}; it handles: {handled}"
    )


def streamer_for(cls: type[Actor[Any, Any]], actor: str, msg: object) -> Any:
    """The streaming handler of actor *actor* (of class *cls*) for *msg*.

    Raises:
        UnhandledMessage: *msg* is not a corral message, or the actor does not stream it.
    """
    from ._exceptions import UnhandledMessage

    streamers = cls.__corral_streamers__
    for t in type(msg).__mro__:
        gen = streamers.get(t)
        if gen is not None:
            return gen
    if not attrs.has(type(msg)):
        raise UnhandledMessage(_not_a_message(actor, type(msg)))
    names = ", ".join(sorted(c.__qualname__ for c in streamers)) or "nothing"
    raise UnhandledMessage(
        f"actor {actor!r} ({cls.__qualname__}) does not stream replies "
        f"to {type(msg).__qualname__}; it streams: {names} (declare with @corral.streams)"
    )
