"""A tiny real HTTP/1.1 server on loopback with canned answers, on the test's own event loop.

For what a client keeps of an answer the fake LLM server never gives: an
error body quoting the credentials, a reason phrase or header of the
server's choosing, a stream whose events carry ids, a dropped connection.
It records every request (method, target, headers, body) for assertions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import attrs
import h11


@attrs.frozen(kw_only=True)
class Canned:
    """One answer: status, reason phrase, headers and body; ``drop`` closes without one.

    ``hold``: send the status line, the headers and *body* as the first piece
    of a chunked body that never ends, then wait for the client to leave
    (the server's ``disconnected`` event). ``hold`` with ``silent``: send
    nothing at all, and wait the same way.
    """

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    reason: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    hold: bool = False
    silent: bool = False


@attrs.frozen(kw_only=True)
class Seen:
    """One request the server received."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class CannedServer:
    """What :func:`canned_server` yields: its URL and the requests it saw."""

    def __init__(self, answer: Canned | Callable[[Seen], Canned]) -> None:
        self.answer = answer
        self.port = 0
        self.requests: list[Seen] = []
        #: Set when the first request has arrived.
        self.received = anyio.Event()
        #: Set when a client leaves a held answer (closes its connection).
        self.disconnected = anyio.Event()
        self.disconnects = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                seen = await self._read(conn, stream)
                if seen is None:
                    return
                self.requests.append(seen)
                self.received.set()
                answer = self.answer if isinstance(self.answer, Canned) else self.answer(seen)
                if answer.drop:
                    return
                if answer.hold:
                    await self._hold(conn, stream, answer)
                    return
                headers = [
                    ("Content-Type", answer.content_type),
                    ("Content-Length", str(len(answer.body))),
                    *answer.headers,
                ]
                data = (
                    (
                        conn.send(
                            h11.Response(
                                status_code=answer.status, headers=headers, reason=answer.reason
                            )
                        )
                        or b""
                    )
                    + (conn.send(h11.Data(data=answer.body)) or b"")
                    + (conn.send(h11.EndOfMessage()) or b"")
                )
                try:
                    await stream.send(data)
                    conn.start_next_cycle()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.ProtocolError):
                    return

    async def _hold(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, answer: Canned
    ) -> None:
        if not answer.silent:
            # No Content-Length: h11 sends the body chunked, and it never ends.
            head = h11.Response(
                status_code=answer.status,
                headers=[("Content-Type", answer.content_type), *answer.headers],
                reason=answer.reason,
            )
            data = conn.send(head) or b""
            if answer.body:
                data += conn.send(h11.Data(data=answer.body)) or b""
            await stream.send(data)
        try:
            while await stream.receive(65536):
                pass  # whatever the client sends while it waits
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
        self.disconnects += 1
        self.disconnected.set()

    @staticmethod
    async def _read(conn: h11.Connection, stream: anyio.abc.SocketStream) -> Seen | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(await stream.receive(65536))
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return None
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return Seen(
                    method=request.method.decode(),
                    target=request.target.decode("latin-1"),
                    headers={
                        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers
                    },
                    body=bytes(body),
                )
            elif isinstance(event, h11.ConnectionClosed):
                return None


@asynccontextmanager
async def canned_server(answer: Canned | Callable[[Seen], Canned]) -> AsyncIterator[CannedServer]:
    """Serve *answer* (or what it returns for each request) on a free loopback port."""
    server = CannedServer(answer)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server._connection)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()
