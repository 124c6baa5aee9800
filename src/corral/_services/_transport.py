"""The HTTP clients behind :class:`HttpService`, and the one response type they give.

On asyncio, requests go through aiohttp, whose connection pool costs a few
microseconds a request; on trio (where aiohttp cannot run), or when an httpx
transport is given, through httpx. Either way the actor sees one
:class:`HttpResponse`, and this module is the one place where each client's
exceptions become corral's (:class:`corral.TransportError` for no answer,
``timeout=True`` for a timeout; :class:`corral.ServiceError` for a request
the client refused).
"""

from __future__ import annotations

import codecs
import json
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Final, Literal

import httpx

from .._core._exceptions import InvalidStateError
from ._exceptions import ServiceError, TransportError
from ._redact import Redactor

__all__ = ["HttpClientName", "HttpResponse", "Outgoing", "check_client_name", "open_client"]

#: Which client an :class:`HttpService` sends its requests with.
HttpClientName = Literal["auto", "aiohttp", "httpx"]
_CLIENTS: Final = ("auto", "aiohttp", "httpx")
#: Parsed URLs kept per client (one per path the actor requests).
_URL_CACHE_SIZE = 256


def _charset(headers: Mapping[str, str]) -> str:
    # The body's encoding, from Content-Type (UTF-8 unless it says otherwise).
    kind = headers.get("content-type", "")
    for param in kind.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            value = value.strip().strip('"')
            try:
                return codecs.lookup(value).name
            except LookupError:
                break
    return "utf-8"


class HttpResponse:
    """An HTTP response as :meth:`corral.HttpService.request` returns it.

    The same for every client corral sends with. ``headers`` are looked up
    without regard to case. The body of a response from :meth:`request` is
    read (``content``, ``text``, ``json()``); that of a response from
    ``stream_request`` is read with :meth:`aiter_lines`, :meth:`aiter_bytes`
    or :meth:`aread` (``content`` before that is an
    :class:`corral.InvalidStateError`).
    """

    __slots__ = ("_chunks", "_content", "headers", "method", "reason_phrase", "status_code", "url")

    def __init__(
        self,
        *,
        method: str,
        url: str,
        status_code: int,
        reason_phrase: str,
        headers: Mapping[str, str],
        content: bytes | None = None,
        chunks: AsyncIterator[bytes] | None = None,
    ) -> None:
        #: The request's method.
        self.method = method
        #: The request's URL (with its query string: may hold what redaction hides).
        self.url = url
        #: The status code.
        self.status_code = status_code
        #: The reason phrase (``""`` when the server sent none).
        self.reason_phrase = reason_phrase
        #: The headers, looked up without regard to case.
        self.headers = headers
        self._content = content
        self._chunks = chunks

    def __repr__(self) -> str:
        return f"<HttpResponse [{self.status_code} {self.reason_phrase}]>".replace(" ]", "]")

    @property
    def content(self) -> bytes:
        """The body."""
        if self._content is None:
            raise InvalidStateError(
                "the body of a streamed response is not read yet: await response.aread() first"
            )
        return self._content

    @property
    def text(self) -> str:
        """The body decoded (the charset of ``Content-Type``, else UTF-8)."""
        return self.content.decode(_charset(self.headers), "replace")

    def json(self) -> Any:
        """The body parsed as JSON (:class:`ValueError` if it is not JSON)."""
        return json.loads(self.content)

    async def aread(self) -> bytes:
        """Read the rest of the body, and return the whole of it."""
        if self._content is None:
            parts = [part async for part in self._take()]
            self._content = b"".join(parts)
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in pieces as they arrive."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        async for part in self._take():
            yield part

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive, without their end (CR, LF or CRLF)."""
        decoder = codecs.getincrementaldecoder(_charset(self.headers))("replace")
        pending = ""
        async for part in self.aiter_bytes():
            pending += decoder.decode(part)
            lines, pending = _split_lines(pending)
            for line in lines:
                yield line
        pending += decoder.decode(b"", final=True)
        if pending.endswith("\r"):
            pending = pending[:-1]
            yield pending
        elif pending:
            yield pending

    def _take(self) -> AsyncIterator[bytes]:
        chunks, self._chunks = self._chunks, None
        if chunks is None:
            raise InvalidStateError("the body of this response was already read")
        return chunks


def _split_lines(text: str) -> tuple[list[str], str]:
    # Whole lines of *text*, and the rest. A CR at the end waits for the
    # next piece: it may be the first half of a CRLF.
    lines: list[str] = []
    start = 0
    end = len(text)
    while start < end:
        cr = text.find("\r", start)
        lf = text.find("\n", start)
        if cr < 0 and lf < 0:
            break
        if lf >= 0 and (cr < 0 or lf < cr):
            lines.append(text[start:lf])
            start = lf + 1
            continue
        if cr == end - 1:
            break
        lines.append(text[start:cr])
        start = cr + 2 if text[cr + 1] == "\n" else cr + 1
    return lines, text[start:]


def _no_answer(exc: Exception, out: Outgoing, *, timed_out: bool, broken: bool) -> ServiceError:
    # The corral error for a request that got no response, secrets taken out:
    # a timeout, a broken or refused connection (both TransportError), or a
    # request the client itself refused (ServiceError).
    redactor = out.redactor()
    where = f"{out.method} {redactor.url(out.url, query=False)}"
    if timed_out:
        return TransportError(f"{where} timed out ({type(exc).__name__})", timeout=True)
    detail = redactor.text(f"{type(exc).__name__}: {exc}")
    if broken:
        return TransportError(f"{where} failed: {detail}")
    return ServiceError(f"{where} failed: {detail}")


class Outgoing:
    """One request as HttpService hands it to a client.

    *redactor* is asked for only when the request fails: building it
    (the actor's secrets, and those of this request's headers) costs more
    than the rest of a request's preparation.
    """

    __slots__ = ("body", "headers", "method", "redactor", "timeout", "url")

    def __init__(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
        redactor: Callable[[], Redactor],
    ) -> None:
        self.method = method
        self.url = url
        self.body = body
        self.headers = headers
        self.timeout = timeout
        self.redactor = redactor

    def response(
        self,
        status_code: int,
        reason_phrase: str,
        headers: Mapping[str, str],
        *,
        content: bytes | None = None,
        chunks: AsyncIterator[bytes] | None = None,
    ) -> HttpResponse:
        """The response to this request."""
        return HttpResponse(
            method=self.method,
            url=self.url,
            status_code=status_code,
            reason_phrase=reason_phrase,
            headers=headers,
            content=content,
            chunks=chunks,
        )


class _Client:
    """What HttpService asks of a client: send, stream, close."""

    name: str

    async def send(self, out: Outgoing) -> HttpResponse:
        raise NotImplementedError

    def stream(self, out: Outgoing) -> AbstractAsyncContextManager[HttpResponse]:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


# --- aiohttp (asyncio) ---------------------------------------------------------------------


def _env_proxy(url: str) -> str | None:
    # The proxy the environment names for *url* (HTTP(S)_PROXY, NO_PROXY), as
    # httpx honours them; looked up once per incarnation, not per request.
    parts = httpx.URL(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.host):
        return None
    return proxy


class _AiohttpClient(_Client):
    name = "aiohttp"

    def __init__(self, *, base_url: str, headers: Mapping[str, str], size: int) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._timeout_error = (aiohttp.ServerTimeoutError, TimeoutError)
        self._transport_error = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
        connector = aiohttp.TCPConnector(limit=size)
        self._session = aiohttp.ClientSession(
            headers=dict(headers),
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            # aiohttp does not honour the proxy environment by default; httpx
            # does, and so does corral on either: _env_proxy, once.
            trust_env=False,
            raise_for_status=False,
        )
        self._proxy = _env_proxy(base_url)
        self._urls: dict[str, Any] = {}
        # The last timeout and its ClientTimeout: without a deadline, every
        # request has the same one.
        self._timeout: tuple[float, Any] = (0.0, None)

    def _url(self, url: str) -> Any:
        parsed = self._urls.get(url)
        if parsed is None:
            import yarl

            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            parsed = self._urls[url] = yarl.URL(url)
        return parsed

    def _total(self, timeout: float) -> Any:
        last, limits = self._timeout
        if last != timeout or limits is None:
            limits = self._aiohttp.ClientTimeout(total=timeout)
            self._timeout = (timeout, limits)
        return limits

    def _error(self, exc: Exception, out: Outgoing) -> ServiceError:
        return _no_answer(
            exc,
            out,
            timed_out=isinstance(exc, self._timeout_error),
            broken=isinstance(exc, self._transport_error),
        )

    async def send(self, out: Outgoing) -> HttpResponse:
        try:
            async with self._session.request(
                out.method,
                self._url(out.url),
                data=out.body,
                headers=out.headers,
                timeout=self._total(out.timeout),
                allow_redirects=False,
                proxy=self._proxy,
            ) as response:
                content = await response.read()
        except (self._aiohttp.ClientError, TimeoutError) as exc:
            raise self._error(exc, out) from exc
        return out.response(
            response.status, response.reason or "", response.headers, content=content
        )

    @asynccontextmanager
    async def stream(self, out: Outgoing) -> AsyncIterator[HttpResponse]:
        # As httpx's: each connect and each read may take *timeout*, not the whole.
        limits = self._aiohttp.ClientTimeout(
            total=None, sock_connect=out.timeout, sock_read=out.timeout
        )
        try:
            context = self._session.request(
                out.method,
                self._url(out.url),
                data=out.body,
                headers=out.headers,
                timeout=limits,
                allow_redirects=False,
                proxy=self._proxy,
            )
            response = await context.__aenter__()
        except (self._aiohttp.ClientError, TimeoutError) as exc:
            raise self._error(exc, out) from exc
        try:

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for part in response.content.iter_any():
                        yield part
                except (self._aiohttp.ClientError, TimeoutError) as exc:
                    raise self._error(exc, out) from exc

            yield out.response(
                response.status, response.reason or "", response.headers, chunks=chunks()
            )
        finally:
            # Releases the connection; one whose body was not read to the end
            # is closed (the server sees the caller leave).
            await context.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self._session.close()


# --- httpx (any backend) -------------------------------------------------------------------


def _httpx_error(exc: httpx.HTTPError, out: Outgoing) -> ServiceError:
    return _no_answer(
        exc,
        out,
        timed_out=isinstance(exc, httpx.TimeoutException),
        broken=isinstance(exc, httpx.TransportError),
    )


class _HttpxClient(_Client):
    name = "httpx"

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        size: int,
        keepalive: int,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=keepalive)
        # base_url and timeout for those who use the client directly
        # (HttpService.client); corral's own requests give whole URLs.
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            limits=limits,
            timeout=timeout,
            transport=transport,
        )

    async def send(self, out: Outgoing) -> HttpResponse:
        try:
            response = await self.client.request(
                out.method, out.url, content=out.body, headers=out.headers, timeout=out.timeout
            )
        except httpx.HTTPError as exc:
            raise _httpx_error(exc, out) from exc
        return out.response(
            response.status_code, response.reason_phrase, response.headers, content=response.content
        )

    @asynccontextmanager
    async def stream(self, out: Outgoing) -> AsyncIterator[HttpResponse]:
        try:
            context = self.client.stream(
                out.method, out.url, content=out.body, headers=out.headers, timeout=out.timeout
            )
            response = await context.__aenter__()
        except httpx.HTTPError as exc:
            raise _httpx_error(exc, out) from exc
        try:

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for part in response.aiter_bytes():
                        yield part
                except httpx.HTTPError as exc:
                    raise _httpx_error(exc, out) from exc

            yield out.response(
                response.status_code, response.reason_phrase, response.headers, chunks=chunks()
            )
        finally:
            await context.__aexit__(None, None, None)

    async def aclose(self) -> None:
        await self.client.aclose()


def _event_loop() -> str:
    # The running event loop's library, as sniffio names it. trio cannot run
    # without sniffio, so where it is missing the loop is asyncio's.
    try:
        import sniffio
    except ImportError:
        return "asyncio"
    return sniffio.current_async_library()


def check_client_name(name: object) -> HttpClientName:
    """*name* if it names a client; else a ValueError listing those that do."""
    if name not in _CLIENTS:
        names = ", ".join(map(repr, _CLIENTS))
        raise ValueError(f"http_client must be one of {names}, got {name!r}")
    return name


def open_client(
    name: HttpClientName,
    *,
    base_url: str,
    headers: Mapping[str, str],
    size: int,
    keepalive: int,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
) -> _Client:
    """The client for one incarnation: aiohttp on asyncio unless told otherwise.

    An httpx *transport* means httpx (HttpService refuses one with
    ``"aiohttp"``). ``"aiohttp"`` on another event loop
    than asyncio is a :class:`corral.InvalidStateError` naming it.
    """
    library = _event_loop()
    if name == "auto":
        name = "aiohttp" if library == "asyncio" and transport is None else "httpx"
    if name == "aiohttp":
        if library != "asyncio":
            raise InvalidStateError(
                f"http_client='aiohttp' runs on asyncio only, not {library}: "
                "give http_client='auto' or 'httpx'"
            )
        return _AiohttpClient(base_url=base_url, headers=headers, size=size)
    return _HttpxClient(
        base_url=base_url,
        headers=headers,
        size=size,
        keepalive=keepalive,
        timeout=timeout,
        transport=transport,
    )
