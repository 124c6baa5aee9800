"""The errors of calls to outside services, raised by this layer (never by the core).

Hierarchy (all are :class:`corral.CorralError`)::

    ServiceError                                a call to an outside service failed
    ├── HttpStatusError                         ... with an HTTP error status
    │   └── AuthenticationError                 ... 401 or 403: our credentials
    ├── ProviderError                           ... reported inside a successful response
    ├── InvalidResponse         (also ValueError) ... an answer corral cannot read
    └── TransportError                          ... before a response (connect, timeout)
    CircuitOpen                                 the circuit breaker refuses calls for now
    RateLimitRefused            (also ValueError) a call can never fit the rate limit

Each docstring says when the error is raised and whose fault it is.
"""

from __future__ import annotations

from .._core._exceptions import CorralError

__all__ = [
    "AuthenticationError",
    "CircuitOpen",
    "HttpStatusError",
    "InvalidResponse",
    "ProviderError",
    "RateLimitRefused",
    "ServiceError",
    "TransportError",
]


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


class InvalidResponse(ServiceError, ValueError):
    """The service answered, but with something corral cannot read.

    A body that is not JSON where JSON was due, a reply not of the shape
    the API documents (an OpenAI chat completion without ``choices``, a
    vector that is not numbers), a stream event that is not JSON, or the
    model's content that does not fit the request's ``response_model`` or a
    tool call's arguments that are not a JSON object. The service's (or the
    model's) fault; not retried by default. The message says where and
    what was wrong, and quotes no more of the answer than a short,
    redacted excerpt.
    """


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
