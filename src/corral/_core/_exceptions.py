"""The exceptions the core raises, in one place.

Hierarchy::

    CorralError
    ├── ProtocolError           (also ValueError)   malformed or unregistered data
    ├── UnhandledMessage        (also TypeError)    the actor does not take this message
    ├── NameTaken               (also ValueError)   an actor name is already registered
    ├── NotFound                (also LookupError)  nothing of that name here
    │   └── ActorNotFound                           ... no live actor has that name
    ├── InvalidStateError       (also RuntimeError) an object is used in a state that forbids it
    ├── MailboxFull                                 a non-blocking send found the mailbox full
    ├── ActorStopped                                the actor stopped before serving a call
    │   └── ActorCrashed                            ... because it crashed (see ``__cause__``)
    ├── CallCancelled                               the call's future was cancelled
    ├── DeadlineExceeded        (also TimeoutError) the call's deadline passed
    ├── SupervisorGaveUp                            restart intensity exceeded
    └── Crash                                       raised by a handler to crash its own actor

The services layer's errors (``ServiceError`` and the rest) derive from
:class:`CorralError` too and live in that layer
(``corral._services._exceptions``). Each docstring says when the error is
raised and whose fault it is.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "ActorNotFound",
    "ActorStopped",
    "CallCancelled",
    "CorralError",
    "Crash",
    "DeadlineExceeded",
    "InvalidStateError",
    "MailboxFull",
    "NameTaken",
    "NotFound",
    "ProtocolError",
    "SupervisorGaveUp",
    "UnhandledMessage",
]


class CorralError(Exception):
    """Base class of every error corral raises on its own account."""


class ProtocolError(CorralError, ValueError):
    """Message data could not be turned into an envelope, or an envelope into data.

    Raised by :class:`corral.Protocol` when data names an unregistered message
    type, misses a field, or carries a value of the wrong type; the message
    names the field path (``$.payload.items[2].text``). Usually the peer's
    fault (it sent bad data) or a registry mismatch between the two sides.
    Nothing half-built is returned when this is raised.
    """


class UnhandledMessage(CorralError, TypeError):
    """The target actor does not handle this message type.

    Raised at the ref, before anything is queued: the caller sent a message
    that is not an attrs instance, or whose type the actor class does not
    declare. The caller's fault.
    """


class NameTaken(CorralError, ValueError):
    """An actor with this name is already registered in the runtime. The caller's fault."""


class NotFound(CorralError, LookupError):
    """Nothing of that name here: no such supervisor in the runtime, no such child in a supervisor.

    The caller's fault (a wrong name, or one that was stopped).
    """


class ActorNotFound(NotFound):
    """No live actor is registered under this name. The caller's fault (or the actor stopped)."""


class InvalidStateError(CorralError, RuntimeError):
    """An object was used in a state that does not allow it.

    For example the result of a pending future, or spawning into a runtime
    that is not running. The message names the state. The caller's fault.
    """


class MailboxFull(CorralError):
    """A non-blocking send (``try_submit``, ``try_tell``) found the mailbox full.

    Nothing was queued. Not a fault: the actor is behind; back off, or use
    the awaiting form, which waits for room.
    """


class ActorStopped(CorralError):
    """The actor stopped, so it will not serve this call.

    Raised when sending to an actor that is stopping or stopped, and set on
    the future of every call still queued or running when its actor stops
    (after the drain time, if any, ran out). Not the caller's fault.
    """


class ActorCrashed(ActorStopped):
    """The actor crashed, so it will not serve this call.

    Set on the futures of the calls that were queued or running beside the
    call that crashed the actor. ``__cause__`` holds the crash error. The
    actor's fault (or its dependency's), not the caller's.
    """


class CallCancelled(CorralError):
    """The call's future was cancelled, by ``Future.cancel()`` or by the caller of ``ask``
    giving up; the call was taken out of the queue or its handler cancelled."""


class DeadlineExceeded(CorralError, TimeoutError):
    """The call's deadline passed before it finished.

    A call whose deadline passes while queued is never run; a running call is
    cancelled at its deadline. Not a fault of the caller or the actor as such:
    the work did not fit in the time it was given.
    """


class Crash(CorralError):
    """Raise this from a handler to crash the actor on purpose.

    Any exception type listed in the actor's ``fatal`` class attribute has the
    same effect. The call that raised it fails with this error, the other
    calls running beside it fail with :class:`ActorCrashed`, and the actor's
    supervisor decides what happens next.
    """


class SupervisorGaveUp(CorralError):
    """A supervisor restarted its children more often than its intensity allows.

    It stopped all its children and failed; its parent handles that as a
    crash of this child (escalation). Raised out of ``async with Runtime()``
    when the root gives up, after every actor has been stopped. ``__cause__``
    is the crash that tipped it over; :attr:`supervisor` names it. The fault
    of the children (or of what they depend on), not of the caller.
    """

    #: Name of the supervisor that gave up.
    supervisor: str = ""
