"""The HTTP clients behind HttpService: aiohttp on asyncio, httpx on trio, one behaviour.

Each test runs on both backends, so each guarantee is checked on both
clients, against a real server on loopback.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import hypothesis.strategies as st
import pytest
from hypothesis import given

import corral

from .loopback_http import Canned, canned_server
from .openai_helpers import HELLO, chat_actor

pytestmark = pytest.mark.anyio

_BOUND = 10.0  # every wait on the server is bounded by this


@corral.message
class Get:
    path: str = "/thing"


@corral.message
class Post:
    body: Any = None


class Things(corral.HttpService[Any, Any]):
    """Answers each message with what HttpService.request returned."""

    @corral.handles(Get)
    async def get(self, msg: Get) -> dict[str, Any]:
        response = await self.request("GET", msg.path)
        return _summary(response)

    @corral.handles(Post)
    async def post(self, msg: Post) -> dict[str, Any]:
        response = await self.request("POST", "/thing", json=msg.body)
        return _summary(response)


def _summary(response: corral.HttpResponse) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "location": response.headers.get("LOCATION"),
        "text": response.text,
        "method": response.method,
    }


def _expected_client(backend: str) -> str:
    return "aiohttp" if backend == "asyncio" else "httpx"


async def test_auto_is_aiohttp_on_asyncio_and_httpx_on_trio(anyio_backend_name: str) -> None:
    """The default client follows the event loop; either can be asked for by name where it runs."""

    class Reporting(Things):
        @corral.handles(Post)
        async def post(self, msg: Post) -> dict[str, Any]:
            answer = _summary(await self.request("POST", "/thing", json=msg.body))
            return {**answer, "client": self.http_client_name}

    seen: dict[str, str] = {}
    async with canned_server(Canned(body=b'{"ok": true}')) as server, corral.Runtime() as rt:
        for choice in ("auto", "httpx"):
            ref = await rt.spawn(
                lambda choice=choice: Reporting(base_url=server.base_url, http_client=choice),
                name=choice,
            )
            answer = await ref.ask(Post())
            assert answer["text"] == '{"ok": true}'
            seen[choice] = answer["client"]
    assert seen == {"auto": _expected_client(anyio_backend_name), "httpx": "httpx"}


async def test_aiohttp_off_asyncio_fails_the_start_naming_the_choice(
    anyio_backend_name: str,
) -> None:
    """http_client='aiohttp' on trio: the actor does not start, and says why."""
    if anyio_backend_name == "asyncio":
        async with canned_server(Canned(body=b"{}")) as server, corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: Things(base_url=server.base_url, http_client="aiohttp"), name="things"
            )
            assert (await ref.ask(Get()))["status"] == 200
        return
    with pytest.raises(corral.ActorCrashed, match="failed to start") as info:
        async with corral.Runtime() as rt:
            await rt.spawn(
                lambda: Things(base_url="http://127.0.0.1:9", http_client="aiohttp"),
                name="things",
            )
    assert "http_client='aiohttp' runs on asyncio only, not trio" in str(info.value)


def test_a_bad_client_choice_is_refused_naming_the_choices() -> None:
    """An unknown client name, or an httpx transport with aiohttp: ValueError at construction."""
    import httpx

    with pytest.raises(ValueError, match=r"http_client must be one of 'auto', 'aiohttp', 'httpx'"):
        Things(base_url="http://127.0.0.1:9", http_client="requests")  # type: ignore[arg-type]
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with pytest.raises(ValueError, match="an httpx transport needs http_client='httpx' or 'auto'"):
        Things(base_url="http://127.0.0.1:9", transport=transport, http_client="aiohttp")


async def test_a_cancelled_caller_closes_its_connection_and_the_server_sees_it() -> None:
    """A caller that gives up mid-request: the request is aborted, not left to finish."""
    async with canned_server(Canned(hold=True, silent=True)) as server, corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Things(base_url=server.base_url), name="things")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Get())
            with anyio.fail_after(_BOUND):
                await server.received.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(_BOUND):
            await server.disconnected.wait()
        await ref.ping()
        assert ref.status().counts[corral.CallStatus.CANCELLED] == 1
        assert ref.status().in_flight == 0


async def test_a_request_past_the_actors_timeout_is_a_timeout_and_is_aborted() -> None:
    """The client enforces the request's timeout itself: TransportError(timeout=True)."""
    async with canned_server(Canned(hold=True)) as server, corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Things(base_url=server.base_url, timeout=0.2), name="things")
        with pytest.raises(corral.TransportError, match="timed out") as info:
            await ref.ask(Get(), timeout=_BOUND)
        assert info.value.timeout is True
        with anyio.fail_after(_BOUND):
            await server.disconnected.wait()


async def test_leaving_a_stream_early_closes_the_connection() -> None:
    """A reader that leaves after the first chunk: the server sees the connection close."""
    first = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Once"}}]}
    body = b"data: " + json.dumps(first).encode() + b"\n\n"
    canned = Canned(hold=True, body=body, content_type="text/event-stream")
    async with canned_server(canned) as server, corral.Runtime() as rt:
        ref = await rt.spawn(lambda: chat_actor(server.base_url), name="chat")
        async with ref.stream(HELLO, timeout=_BOUND) as chunks:
            async for chunk in chunks:
                assert chunk.content == "Once"
                break
        with anyio.fail_after(_BOUND):
            await server.disconnected.wait()
        await ref.ping()
        assert ref.status().counts[corral.CallStatus.CANCELLED] == 1


async def test_redirects_are_returned_not_followed() -> None:
    """A 3xx is the answer: the client does not go where it points."""
    canned = Canned(status=302, body=b"", headers=(("Location", "/elsewhere"),))
    async with canned_server(canned) as server, corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Things(base_url=server.base_url), name="things")
        answer = await ref.ask(Get())
    assert answer["status"] == 302
    assert answer["location"] == "/elsewhere"  # headers are looked up without regard to case
    assert [seen.target for seen in server.requests] == ["/thing"]


async def test_a_json_body_is_sent_compact_as_utf8_with_its_content_type() -> None:
    """The same bytes and Content-Type on either client."""
    async with canned_server(Canned(body=b"{}")) as server, corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Things(base_url=server.base_url), name="things")
        await ref.ask(Post({"text": "héllo", "n": [1, 2]}))
    (seen,) = server.requests
    assert seen.body == '{"text":"héllo","n":[1,2]}'.encode()
    assert seen.headers["content-type"] == "application/json"
    assert seen.method == "POST"


async def test_a_body_in_another_charset_is_decoded_with_it() -> None:
    """``text`` follows the Content-Type's charset (and error excerpts do too)."""
    canned = Canned(body="café".encode("latin-1"), content_type="text/plain; charset=ISO-8859-1")
    async with canned_server(canned) as server, corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Things(base_url=server.base_url), name="things")
        assert (await ref.ask(Get()))["text"] == "café"


async def test_the_httpx_client_is_there_for_what_request_does_not_cover() -> None:
    """``self.client`` has base_url and the incarnation's headers on either client."""

    class Direct(corral.HttpService[Get, str]):
        async def handle(self, msg: Get) -> str:
            response = await self.client.get(msg.path)
            return response.text

    async with canned_server(Canned(body=b"direct")) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: Direct(base_url=server.base_url, headers={"X-Team": "blue"}), name="direct"
        )
        assert await ref.ask(Get("/raw")) == "direct"
    (seen,) = server.requests
    assert seen.target == "/raw"
    assert seen.headers["x-team"] == "blue"


# --- HttpResponse's lines ----------------------------------------------------------------


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _response(parts: list[bytes], content_type: str = "text/event-stream") -> corral.HttpResponse:
    return corral.HttpResponse(
        method="GET",
        url="http://127.0.0.1/x",
        status_code=200,
        reason_phrase="OK",
        headers={"content-type": content_type},
        chunks=_pieces(parts),
    )


@attrs.frozen
class _Split:
    lines: list[str]
    ends: list[str]
    cuts: list[int]


@st.composite
def _split_bodies(draw: st.DrawFn) -> _Split:
    text = st.text(
        st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=8
    )
    lines = draw(st.lists(text, max_size=8))
    ends = draw(
        st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=len(lines), max_size=len(lines))
    )
    for i in reversed(range(len(lines) - 1)):  # from the end: a fix may make the one before
        if ends[i] == "\r" and not lines[i + 1] and ends[i + 1].startswith("\n"):
            ends[i] = "\n"  # CR, then an empty line's LF, is one CRLF
    size = len("".join(a + b for a, b in zip(lines, ends, strict=True)).encode())
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=6)))
    return _Split(lines, ends, cuts)


@given(_split_bodies())
def test_lines_are_split_on_cr_lf_and_crlf_however_the_body_is_cut(case: _Split) -> None:
    """Line ends split across pieces (a CRLF, a UTF-8 character) still give the same lines."""
    raw = "".join(a + b for a, b in zip(case.lines, case.ends, strict=True)).encode()
    bounds = [0, *case.cuts, len(raw)]
    parts = [raw[a:b] for a, b in itertools.pairwise(bounds)]

    async def read() -> list[str]:
        return [line async for line in _response(parts).aiter_lines()]

    assert anyio.run(read) == case.lines


async def test_a_last_line_without_its_end_is_still_a_line() -> None:
    """The body's last line needs no line end."""
    lines = [line async for line in _response([b"a\r\nb", b"\rc"]).aiter_lines()]
    assert lines == ["a", "b", "c"]


async def test_a_streamed_body_is_read_once() -> None:
    """``content`` before ``aread``, or a second read, is an InvalidStateError saying why."""
    response = _response([b"one ", b"two"])
    with pytest.raises(corral.InvalidStateError, match="not read yet"):
        response.content  # noqa: B018
    assert await response.aread() == b"one two"
    assert response.content == b"one two"
    assert [part async for part in response.aiter_bytes()] == [b"one two"]
    other = _response([b"x"])
    assert [part async for part in other.aiter_bytes()] == [b"x"]
    with pytest.raises(corral.InvalidStateError, match="already read"):
        await other.aread()
