"""HttpService: an actor that calls an HTTP API with one httpx client per incarnation.

This is the one place where httpx errors become corral errors.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar

import httpx
from opentelemetry import trace

from .._core._actor import Actor
from .._core._exceptions import (
    AuthenticationError,
    HttpStatusError,
    InvalidStateError,
    ProtocolError,
    ServiceError,
    TransportError,
)
from .._core._pile import current_call
from ..telemetry._instrument import client_span
from ._retry import parse_retry_after

__all__ = ["DEFAULT_HTTP_TIMEOUT", "HttpService"]

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")

#: Longest an HTTP request may take when the call has no (shorter) deadline.
DEFAULT_HTTP_TIMEOUT = 60.0
_BODY_EXCERPT = 500
_MAX_KEEPALIVE = 20


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except Exception:  # undecodable bytes: show what can be shown
        text = response.content[:_BODY_EXCERPT].decode("utf-8", "replace")
    return text[:_BODY_EXCERPT]


def status_error(response: httpx.Response) -> HttpStatusError:
    """The corral error for an HTTP error response (never carrying credentials)."""
    request = response.request
    url = str(request.url.copy_with(query=None))
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    body = _excerpt(response)
    detail = f": {body[:200]}" if body else ""
    kind = AuthenticationError if response.status_code in (401, 403) else HttpStatusError
    status = f"{response.status_code} {response.reason_phrase}".strip()
    return kind(
        f"{request.method} {url} answered {status}{detail}",
        status=response.status_code,
        method=request.method,
        url=url,
        body=body,
        request_id=request_id,
        retry_after=retry_after,
    )


def transport_error(exc: httpx.HTTPError, method: str, url: str) -> ServiceError:
    """The corral error for an httpx failure that produced no response."""
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"{method} {url} timed out ({type(exc).__name__})", timeout=True)
    if isinstance(exc, httpx.TransportError):
        return TransportError(f"{method} {url} failed: {type(exc).__name__}: {exc}")
    return ServiceError(f"{method} {url} failed: {type(exc).__name__}: {exc}")


class HttpService(Actor[ReqT, ReplyT], Generic[ReqT, ReplyT]):
    """Base class of actors that serve calls by calling an HTTP API.

    Each incarnation has one :class:`httpx.AsyncClient`, made in
    :meth:`on_start` (so a restart gets a fresh client, and re-reads the API
    key) and closed in :meth:`on_stop`; its connection pool matches the
    actor's ``max_concurrency``. Write :meth:`handle` with :meth:`request`,
    which gives each request what is left of the call's deadline, maps
    transport failures to :class:`corral.TransportError` and error statuses
    to :class:`corral.HttpStatusError` (status, body excerpt, request id,
    ``Retry-After``), and sends an ``Idempotency-Key`` (the call's id, the
    same for every attempt) with each POST. Combine with a
    :class:`corral.ServicePolicy` for retries, rate limits and a breaker, and
    list ``HttpStatusError`` subclasses or checks in ``fatal`` to crash on,
    say, revoked credentials.

    Args:
        base_url: The API's base URL.
        headers: Headers for every request.
        api_key_env: Environment variable holding the API key, read at each
            start and sent as ``Authorization: Bearer <key>``; never logged
            or put in spans. ``None``: no key.
        timeout: Longest a request may take when the call allows more.
        transport: An httpx transport (tests, proxies); default httpx's.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        api_key_env: str | None = None,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not (timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """This incarnation's client (between on_start and on_stop)."""
        if self._client is None:
            raise InvalidStateError(
                f"{type(self).__qualname__} has no HTTP client: it is not running"
            )
        return self._client

    async def on_start(self) -> None:
        headers = dict(self.headers)
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(
                    f"the environment variable {self.api_key_env} (the API key) is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        size = self._corral_cell.max_concurrency
        # As many connections as calls may run at once; but httpx's pool looks
        # at every idle connection on every request, so past ~20 kept-alive
        # connections the pool costs more than reconnecting on loopback.
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=min(size, _MAX_KEEPALIVE)
        )
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=self.timeout,
            limits=limits,
            transport=self.transport,
        )

    async def on_stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _span(self, method: str, path: str) -> AbstractContextManager[trace.Span | None]:
        url = httpx.URL(self.base_url + path)
        return client_span(
            f"{method} {path}",
            {
                "http.request.method": method,
                "url.full": str(url.copy_with(query=None)),
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
            },
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request for the current call; return the response (2xx/3xx only).

        Raises:
            HttpStatusError: The response status is 4xx or 5xx.
            TransportError: No response: connect error, broken connection, timeout.
        """
        timeout, extra = self._request_options(method, headers)
        with self._span(method, path) as span:
            try:
                response = await self.client.request(
                    method, path, json=json, headers=extra, timeout=timeout
                )
            except httpx.HTTPError as exc:
                raise transport_error(exc, method, self.base_url + path) from exc
            if span is not None and span.is_recording():
                span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                await response.aread()
                raise status_error(response)
            return response

    @asynccontextmanager
    async def stream_request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Send one request and yield the response before its body is read (for streaming).

        The same deadline, errors and idempotency key as :meth:`request`.

        Raises:
            HttpStatusError: The response status is 4xx or 5xx (its body read first).
            TransportError: No response, or the connection broke while reading.
        """
        timeout, extra = self._request_options(method, headers)
        url = self.base_url + path
        with self._span(method, path) as span:
            try:
                async with self.client.stream(
                    method, path, json=json, headers=extra, timeout=timeout
                ) as response:
                    if span is not None and span.is_recording():
                        span.set_attribute("http.response.status_code", response.status_code)
                    if response.status_code >= 400:
                        await response.aread()
                        raise status_error(response)
                    yield response
            except httpx.HTTPError as exc:
                raise transport_error(exc, method, url) from exc

    def _request_options(
        self, method: str, headers: Mapping[str, str] | None
    ) -> tuple[float, dict[str, str]]:
        # What is left of the call's deadline, and its idempotency key.
        call = current_call()
        timeout = self.timeout
        extra = dict(headers or {})
        if call is not None:
            remaining = call.remaining()
            if remaining is not None:
                timeout = max(0.001, min(timeout, remaining))
            if method.upper() == "POST":
                # The same key on every attempt of the call: a provider that
                # honours it never runs the call twice.
                extra.setdefault("Idempotency-Key", str(call.envelope.id))
        return timeout, extra

    def parse_json(self, response: httpx.Response) -> Any:
        """The response body as JSON.

        Raises:
            ProtocolError: The body is not JSON.
        """
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProtocolError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code} with a body that is not JSON: "
                f"{_excerpt(response)[:100]!r}"
            ) from exc
