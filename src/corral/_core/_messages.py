"""Messages and the envelope they travel in.

A message is an attrs class (frozen unless said otherwise). Inside a process
an :class:`Envelope` carries the message object itself; :class:`corral.Protocol`
turns an envelope into plain data and back when it has to cross a process.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar, dataclass_transform, overload
from uuid import UUID, SafeUUID

import attrs

__all__ = [
    "EMPTY_TRACE_CONTEXT",
    "Envelope",
    "GetStatus",
    "Kind",
    "Ping",
    "Pong",
    "Stop",
    "message",
    "new_id",
]

T = TypeVar("T", bound=type[Any])


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Marks an argument that was not given, where ``None`` has a meaning of its own.
UNSET: Final = _Unset.UNSET

#: The shared, read-only carrier of an envelope that carries no trace context.
#: Envelopes default to it so that a call with tracing off allocates no dict.
EMPTY_TRACE_CONTEXT: Final[Mapping[str, str]] = MappingProxyType({})

_getrandbits = random.getrandbits
_new = object.__new__
_set = object.__setattr__
_V4_MASK: Final = ~(0xF000 << 64) & ~(0xC000 << 48)
_V4_BITS: Final = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> UUID:
    """Return a random version-4 UUID, about three times faster than ``uuid.uuid4()``.

    Envelope ids need to be unique, not unguessable, so the bits come from
    :func:`random.getrandbits` instead of ``os.urandom``; the result is a
    well-formed RFC 4122 version 4 UUID. ``UUID.__init__`` validates its
    argument in pure Python, which costs more than the rest of a call's
    bookkeeping, so the instance is filled in the way ``UUID.__init__`` does.
    """
    u = _new(UUID)
    _set(u, "int", (_getrandbits(128) & _V4_MASK) | _V4_BITS)
    _set(u, "is_safe", SafeUUID.unknown)
    return u


class Kind(enum.Enum):
    """What an envelope is for."""

    #: A call that expects a reply (``submit``/``ask``).
    REQUEST = "request"
    #: A one-way message (``tell``); nobody waits for a reply.
    ONE_WAY = "one-way"
    #: The reply to a request; ``reply_to`` names the request's id.
    REPLY = "reply"
    #: A message for the runtime rather than the actor's handlers (stop, ping, status).
    SYSTEM = "system"


@attrs.frozen(slots=True, kw_only=True)
class Envelope:
    """One message on its way to an actor, with everything needed to route,
    bound and trace it.

    The same envelope crosses a process boundary unchanged:
    :class:`corral.Protocol` turns it into JSON-compatible data and back.

    Attributes:
        id: Unique id of this message.
        kind: What the envelope is for (:class:`Kind`).
        target: Name of the actor it is addressed to.
        payload: The message, an attrs instance.
        reply_to: For a reply, the id of the request it answers.
        deadline: Absolute deadline as wall-clock epoch seconds, or ``None``.
            Wall-clock so that it means the same on both sides of a process
            boundary; inside the runtime every call also keeps a monotonic
            deadline (the anyio clock), computed once on arrival, so a clock
            step never stretches or shortens a local wait.
        attempt: Attempt number, starting at 1; retries increment it.
        trace_context: W3C trace context headers (``traceparent``,
            ``tracestate``) when the call is traced; empty otherwise.
        created_at: Wall-clock epoch seconds when the envelope was made.
    """

    payload: Any
    target: str
    kind: Kind = Kind.REQUEST
    id: UUID = attrs.field(factory=new_id)
    reply_to: UUID | None = None
    deadline: float | None = None
    attempt: int = 1
    trace_context: Mapping[str, str] = EMPTY_TRACE_CONTEXT
    created_at: float = attrs.field(factory=time.time)

    def reply(self, payload: Any) -> Envelope:
        """Return the reply envelope to this request, carrying *payload*.

        The reply keeps the request's trace context and deadline.
        """
        return Envelope(
            payload=payload,
            target=self.target,
            kind=Kind.REPLY,
            reply_to=self.id,
            deadline=self.deadline,
            attempt=self.attempt,
            trace_context=self.trace_context,
        )


@overload
def message(cls: T, /) -> T: ...
@overload
def message(*, name: str | None = None, frozen: bool = True) -> Callable[[T], T]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def message(
    cls: T | None = None, /, *, name: str | None = None, frozen: bool = True
) -> T | Callable[[T], T]:
    """Make a class a corral message: an attrs class, frozen unless told otherwise.

    Use it bare (``@corral.message``) or with options
    (``@corral.message(name="chat.Request")``). *name* is the type name the
    message has on the wire; :meth:`corral.Protocol.register` uses it when no
    other name is given. Plain ``@attrs.frozen`` classes work as messages too;
    this decorator only makes the default explicit.
    """

    def wrap(c: T) -> T:
        if not attrs.has(c):
            c = attrs.define(c, frozen=frozen, slots=True)
        if name is not None:
            c.__corral_message_name__ = name
        return c

    if cls is not None:
        return wrap(cls)
    return wrap


@message(name="corral.Stop")
class Stop:
    """System message: stop the actor after the calls queued before it."""

    reason: str = ""


@message(name="corral.Ping")
class Ping:
    """System message: answer :class:`Pong` once everything queued before it was taken."""


@message(name="corral.Pong")
class Pong:
    """Reply to :class:`Ping`, carrying the actor's name."""

    name: str


@message(name="corral.GetStatus")
class GetStatus:
    """System message: reply with the actor's :class:`corral.ActorStatus` at once."""
