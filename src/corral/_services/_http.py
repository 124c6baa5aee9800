"""HttpService: an actor that calls an HTTP API with one HTTP client per incarnation.

The clients themselves, and the translation of their errors, are in
:mod:`._transport`; error responses become corral errors here.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Final, Generic, TypeVar

import httpx
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .._core._actor import Actor
from .._core._calls import current_call
from .._core._exceptions import InvalidStateError
from ..telemetry._instrument import client_span
from ._errors import ErrorDetail, parse_error
from ._exceptions import AuthenticationError, HttpStatusError, InvalidResponse
from ._redact import Redactor, header_secrets, is_secret_header, redact_unparsed_url
from ._retry import retry_after_from_headers
from ._transport import (
    HttpClientName,
    HttpResponse,
    Outgoing,
    _charset,
    _Client,
    _HttpxClient,
    check_client_name,
    open_client,
)

__all__ = ["DEFAULT_HTTP_TIMEOUT", "HttpService"]

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")

#: Longest an HTTP request may take when the call has no (shorter) deadline.
DEFAULT_HTTP_TIMEOUT = 60.0
_BODY_EXCERPT = 500
#: Characters of a body the redactor reads: far past the excerpt, so that a
#: secret cut at this edge cannot slide into the excerpt as earlier ones shrink.
_BODY_REDACTED = 64 * 1024
#: Characters of the body (or of the provider's message) an error's message quotes.
_MESSAGE_EXCERPT = 200
#: Headers that carry a request id, in the order they are looked up (the first
#: present wins): the provider's own (OpenAI, Anthropic, Azure OpenAI), then a
#: gateway's (LiteLLM), then those of what fronts it (Azure API Management,
#: AWS, Cloudflare), then a generic correlation id.
REQUEST_ID_HEADERS: Final = (
    "x-request-id",
    "request-id",
    "x-litellm-call-id",
    "apim-request-id",
    "x-ms-request-id",
    "x-amzn-requestid",
    "cf-ray",
    "x-correlation-id",
)
_MAX_KEEPALIVE = 20
#: Span names and attributes kept per (method, path, template).
_SPAN_CACHE_SIZE = 256


def _excerpt(response: HttpResponse, redactor: Redactor, limit: int = _BODY_EXCERPT) -> str:
    # The one place a response body is kept: redacted first, then cut.
    text = response.content[:_BODY_REDACTED].decode(_charset(response.headers), "replace")
    return redactor.text(text)[:limit]


def request_id(headers: Mapping[str, str]) -> str | None:
    """The provider's request id: the first of :data:`REQUEST_ID_HEADERS` present (unredacted)."""
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _detail(response: HttpResponse, redactor: Redactor) -> ErrorDetail | None:
    # The provider's account of the error, from a JSON body of a sane size.
    if len(response.content) > _BODY_REDACTED:
        return None
    try:
        data = json.loads(response.content)
    except ValueError:  # not JSON, or not UTF-8: the excerpt is all there is
        return None
    detail = parse_error(data)
    return None if detail is None else detail.redacted(redactor.text)


def status_error(response: HttpResponse, redactor: Redactor) -> HttpStatusError:
    """The corral error for an HTTP error response, with *redactor*'s secrets taken out.

    Reads the provider's error (``code``, ``type``, ``param``, ``message``)
    from a JSON body, the wait from ``retry-after-ms`` or ``Retry-After``,
    and the request id from :data:`REQUEST_ID_HEADERS`.
    """
    url = redactor.url(response.url, query=False)
    retry_after = retry_after_from_headers(response.headers, time.time())
    found_id = request_id(response.headers)
    body = _excerpt(response, redactor)
    detail = _detail(response, redactor)
    if detail is not None and detail.message is not None:
        said = f": {detail.describe()[:_MESSAGE_EXCERPT]}"
    else:
        said = f": {body[:_MESSAGE_EXCERPT]}" if body else ""
    kind = AuthenticationError if response.status_code in (401, 403) else HttpStatusError
    status = redactor.text(f"{response.status_code} {response.reason_phrase}".strip())
    return kind(
        f"{response.method} {url} answered {status}{said}",
        status=response.status_code,
        method=response.method,
        url=url,
        body=body,
        request_id=None if found_id is None else redactor.text(found_id),
        retry_after=retry_after,
        code=None if detail is None else detail.code,
        type=None if detail is None else detail.type,
        param=None if detail is None else detail.param,
        message=None if detail is None else detail.message,
    )


def _record_status(span: trace.Span | None, response: HttpResponse) -> None:
    if span is not None and span.is_recording():
        span.set_attribute("http.response.status_code", response.status_code)


def _mark_status_error(span: trace.Span | None, error: HttpStatusError) -> None:
    # The HTTP conventions: a client span with a 4xx/5xx answer is an error
    # whose error.type is the status code. The error is raised after the
    # span ends, so that client_span does not overwrite it with the class name.
    if span is not None and span.is_recording():
        span.set_attribute("error.type", str(error.status))
        span.set_status(Status(StatusCode.ERROR, str(error)))


class HttpService(Actor[ReqT, ReplyT], Generic[ReqT, ReplyT]):
    """Base class of actors that serve calls by calling an HTTP API.

    Each incarnation has one HTTP client, made in :meth:`on_start` (so a
    restart gets a fresh client, and re-reads the API key) and closed in
    :meth:`on_stop`; its connection pool holds the actor's
    ``max_concurrency`` connections. On asyncio the client is aiohttp's
    (several times faster than httpx's default transport); on trio, or
    when given an httpx ``transport``, httpx's. Both give the same
    :class:`corral.HttpResponse` and the same errors. Write :meth:`handle`
    with :meth:`request`,
    which gives each request what is left of the call's deadline, maps
    transport failures to :class:`corral.TransportError` and error statuses
    to :class:`corral.HttpStatusError` (status, body excerpt, request id,
    ``Retry-After``), and sends an ``Idempotency-Key`` (the call's id, the
    same for every attempt) with each POST. Combine with a
    :class:`corral.ServicePolicy` for retries, rate limits and a breaker, and
    list ``HttpStatusError`` subclasses or checks in ``fatal`` to crash on,
    say, revoked credentials.

    Secrets stay out of everything corral keeps of a request and its answer
    (errors and their ``body``, status views, supervisor reports, logs,
    spans): the API key, a password in ``base_url``, and the values of secret
    headers are redacted wherever the provider quotes them, whole or in part
    (see :meth:`redact`); URLs lose their user and password, and the values
    of query parameters such as ``api_key``, ``key``, ``token``, ``sig`` or
    ``X-Amz-Signature`` become ``REDACTED``.

    Each request is an OpenTelemetry CLIENT span (when the call is traced)
    named ``{method} {template}`` when :meth:`request` is given the path's
    ``template``, else ``{method}``; ``url.full`` is redacted as above, and
    an error status sets ``error.type`` to the status code (``"503"``).

    Args:
        base_url: The API's base URL. A user and password in it
            (``https://user:password@host``) are sent as an
            ``Authorization: Basic`` header instead, and never kept in the URL.
        headers: Headers for every request.
        api_key_env: Environment variable holding the API key, read at each
            start and sent as ``Authorization: Bearer <key>``. ``None``: no
            key. Giving one with a user and password in ``base_url`` is a
            ``ValueError`` (both would be the ``Authorization`` header).
        secret_headers: Names of further headers whose values are secrets.
            ``Authorization``, ``Proxy-Authorization``, ``Cookie``,
            ``api-key``, ``x-api-key``, ``x-goog-api-key``,
            ``x-auth-token`` and ``ocp-apim-subscription-key`` always are.
        timeout: Longest a request may take when the call allows more
            (a stream: each connect and each read).
        transport: An httpx transport (tests, proxies); means httpx.
        http_client: ``"auto"`` (aiohttp on asyncio, httpx elsewhere or
            with a ``transport``), ``"aiohttp"`` (asyncio only) or ``"httpx"``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        api_key_env: str | None = None,
        secret_headers: Iterable[str] = (),
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: HttpClientName = "auto",
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = redact_unparsed_url(base_url) if isinstance(base_url, str) else base_url
            raise ValueError(f"base_url must be an http:// or https:// URL, got {shown!r}")
        if not (timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if isinstance(secret_headers, str):
            raise TypeError(f"secret_headers must be header names, got the str {secret_headers!r}")
        self.headers = dict(headers or {})
        self.secret_headers = tuple(secret_headers)
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.transport = transport
        self.http_client = check_client_name(http_client)
        if transport is not None and http_client == "aiohttp":
            raise ValueError("an httpx transport needs http_client='httpx' or 'auto'")
        self._url_secrets: tuple[str, ...] = ()
        self.base_url = self._take_userinfo(base_url).rstrip("/")
        self._http: _Client | None = None
        self._client: httpx.AsyncClient | None = None
        self._started_headers: dict[str, str] = {}
        self._redactor = self._make_redactor(self.headers)
        self._spans: dict[tuple[str, str, str | None], tuple[str, dict[str, Any]]] = {}

    def _take_userinfo(self, base_url: str) -> str:
        # A user and password in the URL become a Basic header, so that httpx
        # never has them in a URL to log or quote, and they become secrets.
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            if "@" in base_url:
                # httpx's message, and so the chained error, may quote the password.
                shown = redact_unparsed_url(base_url)
                raise ValueError(f"base_url is not a valid URL: {shown!r}") from None
            raise ValueError(f"base_url is not a valid URL ({exc}): {base_url!r}") from exc
        if not url.userinfo:
            return base_url
        shown = Redactor().url(url)
        if self.api_key_env is not None:
            raise ValueError(
                f"base_url {shown!r} has a user and password, and api_key_env="
                f"{self.api_key_env!r} names an API key: both would be the Authorization "
                "header; give api_key_env=None to send the URL's user and password"
            )
        if any(name.lower() == "authorization" for name in self.headers):
            raise ValueError(
                f"base_url {shown!r} has a user and password, and headers has an "
                "Authorization header: both would be the Authorization header; give one"
            )
        raw_user, _, raw_password = url.userinfo.decode("ascii").partition(":")
        # With no password the user is the credential (https://<token>@host).
        self._url_secrets = (
            (url.password, raw_password) if url.password else (url.username, raw_user)
        )
        token = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
        self.headers["Authorization"] = f"Basic {token}"
        return str(url.copy_with(userinfo=b""))

    def _make_redactor(self, headers: Mapping[str, str]) -> Redactor:
        return Redactor.for_headers(
            headers, secret_headers=self.secret_headers, secrets=self._url_secrets
        )

    @property
    def client(self) -> httpx.AsyncClient:
        """An :class:`httpx.AsyncClient` for what :meth:`request` does not cover.

        It has ``base_url``, the headers and the key of this incarnation, and
        is closed in :meth:`on_stop`. With the httpx client it is the one
        :meth:`request` sends with; with aiohttp it is made on first use.
        """
        http = self._running()
        if self._client is None:
            if not isinstance(http, _HttpxClient):
                http = self._open("httpx", self._started_headers)
                assert isinstance(http, _HttpxClient)
            self._client = http.client
        return self._client

    def redact(self, text: str) -> str:
        """*text* without this actor's secrets, for errors your handler makes of a response.

        Takes out every occurrence of the API key, the ``base_url``
        password and the secret headers' values (also percent- or
        JSON-escaped); any run of 8 or more of their characters; masked
        quotes that show how one begins and ends around ``...``, ``…`` or
        ``*`` (``sk-ab...wxyz``, ``****wxyz``: 4 or more characters shown);
        each becomes ``[REDACTED]``. Users and passwords of URLs in the text
        become ``REDACTED:REDACTED``, and values of sensitive query
        parameters ``REDACTED``. :meth:`request` does this to every error it
        raises; do it to text of a response you put in errors of your own.
        """
        return self._redactor.text(text)

    @property
    def http_client_name(self) -> str:
        """The client this incarnation sends with: ``"aiohttp"`` or ``"httpx"``."""
        return self._running().name

    async def on_start(self) -> None:
        headers = dict(self.headers)
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(
                    f"the environment variable {self.api_key_env} (the API key) is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._redactor = self._make_redactor(headers)
        self._started_headers = headers
        self._http = self._open(self.http_client, headers)

    def _open(self, name: HttpClientName, headers: Mapping[str, str]) -> _Client:
        # As many connections as calls may run at once. httpx's pool looks at
        # every idle connection on every request, so past ~20 kept-alive
        # connections it costs more than reconnecting on loopback; aiohttp's
        # keeps them all.
        size = self._corral_cell.max_concurrency
        return open_client(
            name,
            base_url=self.base_url,
            headers=headers,
            size=size,
            keepalive=min(size, _MAX_KEEPALIVE),
            timeout=self.timeout,
            transport=self.transport,
        )

    async def on_stop(self) -> None:
        http, self._http = self._http, None
        client, self._client = self._client, None
        self._started_headers = {}
        try:
            # An httpx client made for self.client beside aiohttp's.
            if client is not None and not (
                isinstance(http, _HttpxClient) and http.client is client
            ):
                await client.aclose()
        finally:
            if http is not None:
                await http.aclose()

    def _url(self, path: str) -> httpx.URL:
        return httpx.URL(self.base_url + path)

    def _span(
        self, method: str, path: str, template: str | None
    ) -> AbstractContextManager[trace.Span | None]:
        # The HTTP client span conventions: named "{method} {url.template}",
        # or "{method}" alone when no template is known (a path may hold ids,
        # a query string may hold secrets); url.full with the query's
        # sensitive values redacted.
        key = (method, path, template)
        cached = self._spans.get(key)
        if cached is None:
            url = self._url(path)
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "url.full": self._redactor.url(url),
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
            }
            if template is not None:
                attributes["url.template"] = template
            if len(self._spans) >= _SPAN_CACHE_SIZE:
                self._spans.clear()
            cached = self._spans[key] = (
                method if template is None else f"{method} {template}",
                attributes,
            )
        return client_span(*cached)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        template: str | None = None,
    ) -> HttpResponse:
        """Send one request for the current call; return the response (2xx/3xx only).

        Redirects are not followed: a 3xx is returned as it is.

        Args:
            method: The HTTP method.
            path: The path after ``base_url``, with its query string if any.
            json: A body to send as JSON.
            headers: Headers for this request (secret ones are redacted as
                the actor's are).
            template: The path's low-cardinality template (``/v1/users/{id}``):
                the span is named ``{method} {template}`` and records it as
                ``url.template``. Without it the span is named ``{method}``.

        Raises:
            HttpStatusError: The response status is 4xx or 5xx.
            TransportError: No response: connect error, broken connection, timeout.
        """
        http = self._running()
        out = self._outgoing(method, path, json, headers)
        with self._span(method, path, template) as span:
            response = await http.send(out)
            _record_status(span, response)
            if response.status_code < 400:
                return response
            error = status_error(response, out.redactor())
            self._annotate(error)
            _mark_status_error(span, error)
        raise error

    @asynccontextmanager
    async def stream_request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        template: str | None = None,
    ) -> AsyncIterator[HttpResponse]:
        """Send one request and yield the response before its body is read (for streaming).

        The same arguments, deadline, errors, span and idempotency key as
        :meth:`request`; the timeout bounds each connect and each read. Leaving
        the block before the body's end closes the connection.

        Raises:
            HttpStatusError: The response status is 4xx or 5xx (its body read first).
            TransportError: No response, or the connection broke while reading.
        """
        http = self._running()
        out = self._outgoing(method, path, json, headers)
        error: HttpStatusError | None = None
        with self._span(method, path, template) as span:
            async with http.stream(out) as response:
                _record_status(span, response)
                if response.status_code < 400:
                    yield response
                else:
                    await response.aread()
                    error = status_error(response, out.redactor())
                    self._annotate(error)
                    _mark_status_error(span, error)
        if error is not None:
            raise error

    def _outgoing(
        self, method: str, path: str, json: Any, headers: Mapping[str, str] | None
    ) -> Outgoing:
        timeout, extra = self._request_options(method, headers, json)
        body = None if json is None else _json_bytes(json)
        return Outgoing(
            method, self.base_url + path, body, extra, timeout, lambda: self._redactor_for(extra)
        )

    def _annotate(self, error: HttpStatusError) -> None:
        """Add what a subclass knows of an error status to *error* (notes), before it is raised."""

    def _running(self) -> _Client:
        if self._http is None:
            raise InvalidStateError(
                f"{type(self).__qualname__} has no HTTP client: it is not running"
            )
        return self._http

    def _redactor_for(self, headers: Mapping[str, str]) -> Redactor:
        # The actor's secrets, and those of this request's own secret headers.
        values = [
            secret
            for name, value in headers.items()
            if is_secret_header(name, self.secret_headers)
            for secret in header_secrets(value)
        ]
        return self._redactor.adding(values) if values else self._redactor

    def _request_options(
        self, method: str, headers: Mapping[str, str] | None, json: Any
    ) -> tuple[float, dict[str, str]]:
        # What is left of the call's deadline, its idempotency key, and the
        # content type of a JSON body.
        call = current_call()
        timeout = self.timeout
        if not headers:
            extra = {"Content-Type": "application/json"} if json is not None else {}
        else:
            extra = dict(headers)
            if json is not None and not any(name.lower() == "content-type" for name in extra):
                extra["Content-Type"] = "application/json"
        if call is not None:
            remaining = call.remaining()
            if remaining is not None:
                timeout = max(0.001, min(timeout, remaining))
            if method.upper() == "POST":
                # The same key on every attempt of the call: a provider that
                # honours it never runs the call twice.
                extra.setdefault("Idempotency-Key", str(call.envelope.id))
        return timeout, extra

    def parse_json(self, response: HttpResponse) -> Any:
        """The response body as JSON.

        Raises:
            InvalidResponse: The body is not JSON.
        """
        try:
            return json.loads(response.content)
        except ValueError as exc:  # not JSON, or not UTF-8
            path = urllib.parse.urlsplit(response.url).path
            raise InvalidResponse(
                f"{response.method} {self.redact(path)} answered "
                f"{response.status_code} with a body that is not JSON: "
                f"{_excerpt(response, self._redactor, 100)!r}"
            ) from exc


def _json_bytes(value: Any) -> bytes:
    # As httpx encodes a JSON body: compact, UTF-8, no NaN.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
