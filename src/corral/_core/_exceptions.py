"""The exceptions corral raises, in one place.

Hierarchy::

    CorralError
    ├── ProtocolError           (also ValueError)   malformed or unregistered data
    ├── UnhandledMessage        (also TypeError)    the actor does not take this message
    ├── NameTaken               (also ValueError)   an actor name is already registered
    ├── ActorNotFound           (also LookupError)  no live actor has that name
    ├── InvalidStateError       (also RuntimeError) an object is used in a state that forbids it
    ├── MailboxFull                                 a non-blocking send found the mailbox full
    ├── ActorStopped                                the actor stopped before serving a call
    │   └── ActorCrashed                            ... because it crashed (see ``__cause__``)
    ├── CallCancelled                               the call's future was cancelled
    ├── DeadlineExceeded        (also TimeoutError) the call's deadline passed
    ├── SupervisorGaveUp                            restart intensity exceeded
    ├── ServiceError                                a call to an outside service failed
    │   ├── HttpStatusError                         ... with an HTTP error status
    │   │   └── AuthenticationError                 ... 401 or 403: our credentials
    │   ├── ProviderError                           ... reported inside a successful response
    │   └── TransportError                          ... before a response (connect, timeout)
    ├── CircuitOpen                                 the circuit breaker refuses calls for now
    ├── RateLimitRefused        (also ValueError)   a call can never fit the rate limit
    └── Crash                                       raised by a handler to crash its own actor

Each docstring says when the error is raised and whose fault it is.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "ActorNotFound",
    "ActorStopped",
    "CallCancelled",
    "CircuitOpen",
    "CorralError",
    "Crash",
    "DeadlineExceeded",
    "HttpStatusError",
    "InvalidStateError",
    "MailboxFull",
    "NameTaken",
    "ProtocolError",
    "ProviderError",
    "RateLimitRefused",
    "ServiceError",
    "SupervisorGaveUp",
    "TransportError",
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


class ActorNotFound(CorralError, LookupError):
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


class ServiceError(CorralError):
    """A call to an outside service (an HTTP API) failed. The service's fault, usually."""


class HttpStatusError(ServiceError):
    """The service answered with an HTTP error status (4xx, 5xx).

    Retry policies retry 408, 409, 429 and 5xx by default and never 400,
    401, 403, 404 or 422, nor an error whose provider :attr:`code` or
    :attr:`type` says it cannot succeed (``insufficient_quota``,
    ``invalid_api_key``, ...: see :class:`corral.RetryPolicy`); list it (or
    a subclass check on :attr:`status`) in an actor's ``fatal`` to crash
    on, say, 401. Never carries credentials.

    The provider's own account of the error is read from the body when it
    is JSON in one of the usual shapes (OpenAI's ``{"error": {"message",
    "type", "param", "code"}}``, ``{"error": "text"}``, ``{"message": ...}``,
    ``{"detail": ...}``, or a list of these), as the official ``openai``
    client's ``APIError`` has it; each is ``None`` when the body does not
    say. A numeric code is kept as a string (``"429"``).

    Attributes:
        status: The HTTP status code.
        method: The request method.
        url: The request URL, without query string, user or password.
        body: The first 500 characters of the response body, with the
            actor's secrets (API key, password, secret headers) redacted.
        request_id: The provider's request id (``x-request-id`` and the
            like), if any.
        retry_after: Seconds the service asked to wait (``retry-after-ms``,
            else ``Retry-After``), if any.
        code: The provider's error code (``"insufficient_quota"``), redacted.
        type: The provider's error type (``"invalid_request_error"``), redacted.
        param: The request parameter the provider blames, redacted.
        message: The provider's error message, redacted.
    """

    def __init__(
        self,
        text: str,
        /,
        *,
        status: int,
        method: str = "",
        url: str = "",
        body: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.method = method
        self.url = url
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after
        self.code = code
        self.type = type
        self.param = param
        self.message = message


class AuthenticationError(HttpStatusError):
    """The service refused our credentials (401) or our permission (403).

    Never retried. Declare it fatal (``fatal = (corral.AuthenticationError,)``)
    to have the supervisor restart the actor (which re-reads its key) or stop
    it, instead of failing every call one by one.
    """


class ProviderError(ServiceError):
    """The provider reported an error inside a successful response.

    Raised when a 200 answer's body is an error (``{"error": {...}}``
    instead of a reply), or a stream carries an error event part-way
    through (after which it ends; what it delivered before stays
    delivered). The provider's fault (or that of what it fronts, such as a
    gateway's guardrail), not the caller's; the message says where it
    happened and what the provider said.

    Retry policies retry it only when its :attr:`code` or :attr:`type`
    names a transient condition (``server_error``, ``rate_limit_exceeded``,
    ``overloaded_error``, ``timeout``, ...: see :class:`corral.RetryPolicy`),
    and a stream only before its first chunk, as every stream.

    Attributes:
        code: The provider's error code, if it gave one.
        type: The provider's error type, if it gave one.
        param: The request parameter the provider blames, if any.
        message: The provider's error message, if any.
        request_id: The provider's request id, if known.

    All are redacted of the actor's secrets.
    """

    def __init__(
        self,
        text: str,
        /,
        *,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(text)
        self.code = code
        self.type = type
        self.param = param
        self.message = message
        self.request_id = request_id


class TransportError(ServiceError):
    """No response came: the connection failed, broke, or timed out.

    ``__cause__`` is the HTTP library's error; :attr:`timeout` says whether it
    was a timeout. Retried by default.
    """

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class CircuitOpen(CorralError):
    """The circuit breaker is open: the service failed repeatedly, calls fail fast.

    Not retried. :attr:`retry_in` says how long until it lets a probe through.
    """

    def __init__(self, message: str, *, retry_in: float = 0.0) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class RateLimitRefused(CorralError, ValueError):
    """A call can never be admitted by its rate limiter, so it is refused at once.

    Its token estimate is larger than the token bucket, or the limiter counts
    tokens and no estimate could be made (a configuration error). The
    caller's (or configuration's) fault.
    """
