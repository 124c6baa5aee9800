"""Secrets an HTTP actor holds never reach its errors, status views, logs or spans."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan

import corral
from corral import ChatRequest, OpenAIChat
from corral._services._redact import REDACTED, Redactor

from .loopback_http import Canned, Seen, canned_server
from .tracing import MemoryTracing

pytestmark = pytest.mark.anyio

KEY = "sk-proj-Q7xT9mZ2kLw4RvNbHc8pWq_z"
PASSWORD = "pa$$:w0rd/Hunter22"
QUERY_SECRET = "qs-secret-wxyz"
CALL_TOKEN = "call-tok-qrst"
API_KEY_HEADER = "xk-abcdef12345z"
TENANT = "tenant-secret-42"
HELLO = ChatRequest(messages=[{"role": "user", "content": "hello"}])


def fragments(secret: str) -> list[str]:
    """What must not be seen of *secret*: all of it, its last four, any eight in a row."""
    return [secret, secret[-4:], *(secret[i : i + 8] for i in range(len(secret) - 7))]


def assert_nowhere(secret: str, texts: Iterable[str]) -> None:
    """No fragment of *secret* in any of *texts*."""
    text = "\n".join(texts)
    found = [f for f in fragments(secret) if f in text]
    assert not found, f"{found[:3]} leaked in:\n{text}"


def span_texts(spans: Iterable[ReadableSpan]) -> Iterator[str]:
    """Everything a span exporter would send: names, status, attributes, events."""
    for span in spans:
        yield span.name
        yield span.status.description or ""
        yield json.dumps(dict(span.attributes or {}), default=str)
        for event in span.events:
            yield event.name
            yield json.dumps(dict(event.attributes or {}), default=str)


def log_texts(records: Iterable[logging.LogRecord]) -> Iterator[str]:
    """Each log record as a handler would write it, traceback included."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    for record in records:
        yield formatter.format(record)


def error_texts(exc: BaseException) -> list[str]:
    """An error as it is printed, and the text it carries."""
    texts = [str(exc), repr(exc), *traceback.format_exception(exc)]
    for name in ("body", "url", "request_id"):
        texts.append(str(getattr(exc, name, "")))
    return texts


class Traced(MemoryTracing):
    """An SDK tracer provider writing to memory, and a corral instrument on it."""


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    t.provider.shutdown()


class Restarted(corral.Instrument):
    """Sets an event when the supervisor has restarted a child."""

    def __init__(self) -> None:
        self.restarted = anyio.Event()

    def supervisor_event(self, event: corral.SupervisorEvent) -> None:
        if event.kind is corral.SupervisorEventKind.CHILD_RESTARTED:
            self.restarted.set()


class StrictChat(OpenAIChat):
    fatal = (corral.AuthenticationError,)


def quoting_401(seen: Seen) -> Canned:
    """A provider refusing the key and quoting it: OpenAI's masked form, a gateway's whole."""
    body = {
        "error": {
            "message": f"Incorrect API key provided: {KEY[:8]}{'*' * 20}{KEY[-4:]}. You can "
            "find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        },
        "gateway": {"received": seen.headers.get("authorization", ""), "short": "sk-...Wq_z"},
        "hint": f"key {KEY[:6]}...{KEY[-4:]} or {KEY[10:22]}",
    }
    return Canned(
        status=401,
        reason=f"Unauthorized {KEY}".encode(),
        body=json.dumps(body).encode(),
        headers=(("x-request-id", f"req-{KEY}"),),
    )


async def test_a_key_quoted_in_a_401_body_is_redacted_from_everything_corral_keeps(
    monkeypatch: pytest.MonkeyPatch,
    traced: Traced,
    caplog_corral: pytest.LogCaptureFixture,
) -> None:
    """Regression: the refused key quoted by the provider leaked into errors, views, logs, spans."""
    monkeypatch.setenv("CORRAL_TEST_KEY", KEY)
    watch = Restarted()
    async with canned_server(quoting_401) as server:
        tree = corral.Supervisor(
            max_restarts=3,
            backoff=corral.Backoff(min=0.0, max=0.0, jitter=0),
            children=[
                corral.child(
                    lambda: StrictChat(
                        model="m", base_url=f"{server.base_url}/v1", api_key_env="CORRAL_TEST_KEY"
                    ),
                    name="chat",
                )
            ],
        )
        async with corral.Runtime(tree, instruments=[traced.instrument, watch]) as rt:
            ref = rt.ref("chat")
            with pytest.raises(corral.AuthenticationError) as info:
                await ref.ask(HELLO, timeout=10)
            await watch.restarted.wait()
            status = ref.status()
            children = rt.root.children()
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent
    error = info.value
    # What is kept is still useful: the status, the provider's words, where.
    assert error.status == 401
    assert "Incorrect API key provided" in error.body
    assert REDACTED in error.body
    assert "/v1/chat/completions answered 401 Unauthorized [REDACTED]" in str(error)
    assert error.request_id == f"req-{REDACTED}"
    recent = [c.error for c in status.recent if c.error]
    assert recent and "AuthenticationError" in recent[0]
    (child,) = children
    assert child.last_error is not None and "401" in child.last_error
    crashes = [r for r in caplog_corral.records if "crashed" in r.getMessage()]
    assert crashes and crashes[0].exc_info is not None
    spans = traced.spans()
    failed = [s for s in spans if s.status.description and "401" in s.status.description]
    assert {s.name for s in failed} >= {"POST /v1/chat/completions", "chat m", "process chat"}
    assert_nowhere(
        KEY,
        [
            *error_texts(error),
            str(status),
            repr(status),
            *(repr(c) for c in children),
            *log_texts(caplog_corral.records),
            *span_texts(spans),
        ],
    )


@corral.message
class GetThings:
    api_key: str


class ThingsService(corral.HttpService[GetThings, str]):
    """An HTTP actor of its own: GET /v1/things with a secret query and a secret header."""

    async def handle(self, msg: GetThings) -> str:
        response = await self.request(
            "GET",
            f"/v1/things?api_key={msg.api_key}&q=1",
            headers={"X-Call-Token": CALL_TOKEN},
        )
        return response.text


def quoting_everything(seen: Seen) -> Canned:
    """An error echoing every header and the target it got, as a debugging gateway might."""
    return Canned(
        status=502, body=json.dumps({"seen": seen.headers, "target": seen.target}).encode()
    )


async def test_a_password_in_base_url_is_sent_as_basic_auth_and_never_kept(
    traced: Traced, caplog_corral: pytest.LogCaptureFixture
) -> None:
    """Regression: base_url's password was in errors and url.full; now a Basic header, redacted."""
    async with canned_server(quoting_everything) as server:
        base = server.base_url.replace("http://", f"http://bob:{_quoted(PASSWORD)}@")
        async with corral.Runtime(instruments=[traced.instrument]) as rt:
            ref = await rt.spawn(
                lambda: ThingsService(base_url=base, secret_headers=["x-call-token"]),
                name="things",
            )
            with pytest.raises(corral.HttpStatusError) as info:
                await ref.ask(GetThings(api_key=QUERY_SECRET))
            status = ref.status()
        (seen,) = server.requests
    expected = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    assert seen.headers["authorization"] == f"Basic {expected}"
    assert seen.target == f"/v1/things?api_key={QUERY_SECRET}&q=1"
    error = info.value
    assert error.url == f"{server.base_url}/v1/things"
    assert error.status == 502
    (post,) = [s for s in traced.spans() if s.name == "GET"]
    assert (post.attributes or {})["url.full"] == (
        f"{server.base_url}/v1/things?api_key=REDACTED&q=1"
    )
    texts = [
        *error_texts(error),
        str(status),
        *log_texts(caplog_corral.records),
        *span_texts(traced.spans()),
    ]
    for secret in (PASSWORD, _quoted(PASSWORD), expected, QUERY_SECRET, CALL_TOKEN):
        assert_nowhere(secret, texts)


def _quoted(text: str) -> str:
    return quote(text, safe="")


async def test_transport_errors_carry_no_password_or_secret_query(traced: Traced) -> None:
    """Dropped and refused connections: errors name the URL without password or query secrets."""
    async with corral.Runtime(instruments=[traced.instrument]) as rt:
        async with canned_server(Canned(drop=True)) as server:
            base = server.base_url.replace("http://", f"http://bob:{_quoted(PASSWORD)}@")
            ref = await rt.spawn(lambda: ThingsService(base_url=base), name="things")
            with pytest.raises(corral.TransportError) as dropped:
                await ref.ask(GetThings(api_key=QUERY_SECRET))
        with pytest.raises(corral.TransportError) as refused:  # the server is gone
            await ref.ask(GetThings(api_key=QUERY_SECRET))
        status = ref.status()
    # aiohttp's error classes on asyncio, httpx's on trio.
    where = f"GET {server.base_url}/v1/things failed: "
    dropped_as = ("ServerDisconnectedError", "RemoteProtocolError")
    assert str(dropped.value).startswith(tuple(where + name for name in dropped_as))
    refused_as = ("ClientConnectorError", "ConnectError")
    assert str(refused.value).startswith(tuple(where + name for name in refused_as))
    texts = [
        *error_texts(dropped.value),
        *error_texts(refused.value),
        str(status),
        *span_texts(traced.spans()),
    ]
    for secret in (PASSWORD, _quoted(PASSWORD), QUERY_SECRET):
        assert_nowhere(secret, texts)


def test_userinfo_with_an_api_key_or_authorization_header_is_refused() -> None:
    """Two Authorization headers cannot both be sent: refused, naming the conflict, no password."""
    base = f"http://bob:{_quoted(PASSWORD)}@example.invalid"
    with pytest.raises(ValueError, match="api_key_env='OPENAI_API_KEY'") as info:
        OpenAIChat(model="m", base_url=base)
    assert_nowhere(PASSWORD, [str(info.value)])
    assert "REDACTED:REDACTED@example.invalid" in str(info.value)
    with pytest.raises(ValueError, match="Authorization header") as info:
        corral.HttpService(base_url=base, headers={"authorization": "Bearer x"})
    assert_nowhere(PASSWORD, [str(info.value)])
    with pytest.raises(ValueError, match="http:// or https://") as info:
        corral.HttpService(base_url=f"ftp://bob:{PASSWORD}@example.invalid")
    assert_nowhere(PASSWORD, [str(info.value)])
    with pytest.raises(ValueError, match="not a valid URL") as info:
        corral.HttpService(base_url=f"http://bob:{PASSWORD}@example.invalid")  # "/" unquoted
    assert_nowhere(PASSWORD, error_texts(info.value))
    token = corral.HttpService(base_url="https://tok-secret-abc@example.invalid")
    assert token.headers["Authorization"] == f"Basic {_b64('tok-secret-abc:')}"
    assert token.redact("quoted tok-secret-abc") == f"quoted {REDACTED}"
    chat = OpenAIChat(model="m", base_url=base, api_key_env=None)
    assert chat.base_url == "http://example.invalid"


async def test_secret_headers_of_the_actor_and_of_one_request_are_redacted() -> None:
    """Values of default secret headers, of secret_headers= and of a request's own are kept out."""
    async with canned_server(quoting_everything) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: ThingsService(
                    base_url=server.base_url,
                    headers={"x-api-key": API_KEY_HEADER, "X-Tenant": TENANT},
                    secret_headers=["X-Call-Token", "x-tenant"],
                ),
                name="things",
            )
            with pytest.raises(corral.HttpStatusError) as info:
                await ref.ask(GetThings(api_key="q"))
    (seen,) = server.requests
    assert seen.headers["x-tenant"] == TENANT
    assert TENANT not in info.value.body
    for secret in (API_KEY_HEADER, TENANT, CALL_TOKEN):
        assert_nowhere(secret, error_texts(info.value))


def test_redactor_rules() -> None:
    """Whole, escaped, runs of 8, masked quotes of 4 shown; URL userinfo and query values."""
    r = Redactor([KEY, "short"])
    assert r.text(f"a {KEY} b") == f"a {REDACTED} b"
    assert r.text(f"ends {KEY[-9:]}") == f"ends {REDACTED}"
    assert r.text(f"seven {KEY[3:10]}") == f"seven {KEY[3:10]}"  # 7 in a row say nothing
    assert r.text(f"{KEY[:3]}...{KEY[-4:]}.") == f"{REDACTED}."
    assert r.text(f"({KEY[:2]}\u2026{KEY[-2:]})") == f"({REDACTED})"
    assert r.text(f"****{KEY[-4:]}") == REDACTED
    assert r.text("sk-...") == "sk-..."  # three characters shown: nothing said
    assert r.text("Loading... done") == "Loading... done"
    assert r.text("the short one, shortly") == f"the {REDACTED} one, {REDACTED}ly"
    assert r.text("https://u:p@h/x?Key=1&q=2&X-Amz-Signature=3") == (
        "https://REDACTED:REDACTED@h/x?Key=REDACTED&q=2&X-Amz-Signature=REDACTED"
    )
    assert r.url("http://u:p@h:1/v1/x?token=abc&q=1#f") == (
        "http://REDACTED:REDACTED@h:1/v1/x?token=REDACTED&q=1#f"
    )
    assert r.url(f"http://h/{KEY}/x?sig=abc", query=False) == f"http://h/{REDACTED}/x"
    assert Redactor.for_headers({"Authorization": f"Basic {_b64('u:pw-123')}"}).text("pw-123") == (
        REDACTED
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


_SECRET = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=9, max_size=60)
_AROUND = st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=40)


@given(secret=_SECRET, before=_AROUND, after=_AROUND, data=st.data())
def test_no_secret_or_run_of_it_survives_redaction(
    secret: str, before: str, after: str, data: Any
) -> None:
    """Whatever surrounds a secret, its quotes (whole, 8 in a row) and masked quotes go."""
    start = data.draw(st.integers(0, len(secret) - 8))
    stop = data.draw(st.integers(start + 8, len(secret)))
    shown_head = data.draw(st.integers(0, 8))
    shown_tail = data.draw(st.integers(max(0, 4 - shown_head), 8))
    mask = data.draw(st.sampled_from(["...", "\u2026", "*", "*" * 30]))
    masked = f"{secret[:shown_head]}{mask}{secret[len(secret) - shown_tail :]}"
    text = f"{before}{secret}{after} {before}{secret[start:stop]}{after} {masked}{after}"
    out = Redactor([secret]).text(text)
    assert secret not in out
    assert not any(secret[i : i + 8] in out for i in range(len(secret) - 7))
    assert masked not in out
