"""A fake OpenAI-compatible server: real HTTP on loopback, with latency and faults.

It runs in a thread of its own with its own event loop (anyio's blocking
portal), so tests and demos on any backend — trio included — talk to it over
real sockets. HTTP/1.1 is spoken with h11.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import unquote

import anyio
import anyio.abc
import anyio.from_thread
import attrs
import h11

from ._fake_openai import (
    OUTCOME_ERRORS,
    STREAM_ERROR,
    Chat,
    Ids,
    RequestError,
    embeddings_reply,
    error_body,
    model_object,
    plan_chat,
)

__all__ = ["FakeLLMServer", "Faults", "ServerStats"]

_OUTCOMES: Final = (
    "ok",
    "429",
    "500",
    "503",
    "401",
    "slow",
    "drop",
    "malformed",
    "quota",
    "context_length",
    "refusal",
    "error_200",
    "cut",
)
#: Outcomes that may name how many stream chunks come first: "cut:5".
_COUNTED: Final = ("error_200", "cut")
_DEFAULT_CHUNKS: Final = 3
_SCRIPTED: Final = re.compile(r"(?P<outcome>[a-z_0-9]+)(?::(?P<chunks>\d+))?")
_CHAT: Final = "/v1/chat/completions"
_EMBEDDINGS: Final = "/v1/embeddings"
_MODELS: Final = "/v1/models"
_FAULTS_BY: Final = ("arrival", "body")


def listen_error(host: str, port: int, exc: OSError) -> OSError:
    """The error for a refused listen, naming the address and the reason.

    An :class:`OSError` of the same errno (so of the same subclass):
    ``cannot listen on 127.0.0.1:1: permission denied``.
    """
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return OSError(exc.errno, f"cannot listen on {host}:{port}: {reason[:1].lower()}{reason[1:]}")


def _rate(name: str, value: float) -> None:
    if not (0 <= value <= 1):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """How often the fake server misbehaves, per request (probabilities, seeded).

    Args:
        rate_429: Answer 429 ``rate_limit_exceeded`` asking to wait *retry_after*
            seconds: ``Retry-After`` in whole seconds (rounded up) and
            ``retry-after-ms``.
        rate_500, rate_503: Answer 500 / 503.
        rate_slow: Wait *slow_delay* seconds before answering normally.
        rate_drop: Close the connection without an answer.
        rate_malformed: Answer 200 with a body that is not JSON.
    """

    rate_429: float = 0.0
    retry_after: float = 1.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_slow: float = 0.0
    slow_delay: float = 2.0
    rate_drop: float = 0.0
    rate_malformed: float = 0.0

    def __attrs_post_init__(self) -> None:
        for name in (
            "rate_429",
            "rate_500",
            "rate_503",
            "rate_slow",
            "rate_drop",
            "rate_malformed",
        ):
            _rate(name, getattr(self, name))
        if not self.retry_after >= 0 or not self.slow_delay >= 0:
            raise ValueError("retry_after and slow_delay must be >= 0 seconds")

    def pick(self, rand: float) -> str:
        edge = 0.0
        for outcome, rate in (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("503", self.rate_503),
            ("slow", self.rate_slow),
            ("drop", self.rate_drop),
            ("malformed", self.rate_malformed),
        ):
            edge += rate
            if rand < edge:
                return outcome
        return "ok"


@attrs.frozen(kw_only=True)
class ServerStats:
    """What the fake server saw, for assertions."""

    requests: int
    by_status: dict[int, int]
    by_path: dict[str, int]
    dropped: int
    concurrent_peak: int
    #: Monotonic arrival times of every request.
    arrivals: tuple[float, ...]
    #: How often each Idempotency-Key was seen.
    idempotency_keys: dict[str, int]

    def max_in_window(self, seconds: float) -> int:
        """The most requests that arrived within any window of *seconds*."""
        times = sorted(self.arrivals)
        best = 0
        start = 0
        for end, t in enumerate(times):
            while t - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best


def _parse_outcome(outcome: str) -> tuple[str, int]:
    # A script entry as (outcome, chunks before the fault, for error_200 and cut).
    match = _SCRIPTED.fullmatch(outcome)
    name = match["outcome"] if match else ""
    if name not in _OUTCOMES or (match and match["chunks"] and name not in _COUNTED):
        raise ValueError(
            f"script outcomes are {', '.join(_OUTCOMES)} (error_200 and cut may end "
            f"with :N chunks); got {outcome!r}"
        )
    assert match is not None
    return name, int(match["chunks"] or _DEFAULT_CHUNKS)


class FakeLLMServer:
    """A real HTTP server on loopback that speaks the OpenAI-compatible endpoints.

    ``POST /v1/chat/completions`` (whole or streamed), ``POST /v1/embeddings``
    and ``GET /v1/models`` as OpenAI answers them, so the official ``openai``
    client accepts every reply and error; with configurable latency, faults
    (429 with ``Retry-After``, 500, 503, slow answers, dropped connections,
    malformed bodies), an optional API key and an optional server-side rate
    limit, and counters to assert on::

        async with FakeLLMServer(latency=0.005, faults=Faults(rate_503=0.1)) as server:
            chat = await rt.spawn(lambda: OpenAIChat(model="m", base_url=server.base_url,
                                                     api_key_env=None), name="chat")
            ...
            assert server.stats().requests == ...

    ``with FakeLLMServer() as server:`` works too, for synchronous code (the
    server runs in a thread of its own either way).

    What the replies say follows fixed rules (nothing is random but the
    faults): text is ``fake reply to: <the last message>``, a token is four
    characters, ``max_tokens``/``max_completion_tokens`` cut the text with
    ``finish_reason: "length"``, ``stop`` sequences cut it, ``n`` gives that
    many choices. When a request offers ``tools`` and its last message is not
    a tool result, the reply calls the first tool (every tool under
    ``parallel_tool_calls: true``; the one ``tool_choice`` names) with the
    minimal arguments its JSON schema allows; after a tool result it answers
    in text. ``response_format`` ``json_object`` gives ``{"reply": "<text>"}``,
    ``json_schema`` the minimal instance of the schema. Requests OpenAI
    refuses (no messages, a tool result without ``tool_call_id``, ``max_tokens``
    for an ``o1``/``o3``/``o4`` model...) get its 400. Streams send the role
    first, one word per chunk, the finish reason, the usage chunk under
    ``stream_options: {"include_usage": true}``, then ``[DONE]``. Errors carry
    OpenAI's body (``message``, ``type``, ``param``, ``code``); a 429 carries a
    whole-second ``Retry-After`` and ``retry-after-ms``. The API key is checked
    before the rate limit, as OpenAI does.

    Args:
        latency: Seconds each answer takes.
        jitter: Up to this many extra seconds, uniformly.
        faults: Random misbehaviour (:class:`Faults`).
        script: Outcomes for the first requests, in order, before *faults*
            apply: ``"ok"``, ``"429"`` (``rate_limit_exceeded``), ``"500"``,
            ``"503"``, ``"401"`` (``invalid_api_key``), ``"slow"``, ``"drop"``,
            ``"malformed"``; ``"quota"`` (429 ``insufficient_quota``, no
            ``Retry-After``), ``"context_length"`` (400
            ``context_length_exceeded``), ``"refusal"`` (a reply whose
            ``refusal`` is set and ``content`` null); ``"error_200"`` (a 200
            whose body is an error; streamed: after 3 chunks, an event
            ``data: {"error": {...}}`` ends the stream) and ``"cut"`` (a stream
            that ends after 3 chunks with neither a finish reason nor
            ``[DONE]``; a whole reply whose connection closes halfway through
            the body). ``"error_200:N"`` and ``"cut:N"`` send *N* chunks first
            (the first carries the role, with no content).
        rate_limit: Requests per second the server accepts (a token bucket of
            *rate_burst*); beyond it, 429 with ``Retry-After``.
        api_key: Require ``Authorization: Bearer <api_key>`` (else 401).
        seed: Seed of the fault and jitter randomness.
        port: The port to listen on (default: any free one).
        stream_delay: Seconds between the events of a streamed chat reply.
        faults_by: How each request's fault is drawn from *faults*.
            ``"arrival"`` (the default): in the order requests arrive.
            ``"body"``: from a seeded hash of the request's path and body and
            of how many times the server saw that same request before, so
            the same requests meet the same faults on every run, however
            they interleave; a client's retry (the same body again) meets
            the fault of its next attempt. Requests with equal bodies share
            one count, so give them something unique (an id, an index).
        models: The models it serves: others get 404 ``model_not_found``.
            Empty (the default): it serves any model. ``GET /v1/models``
            lists these and every model it was asked for.

    Raises:
        OSError: On entering, when it cannot listen on *host* and *port*
            (taken, or not allowed); the message names both and the reason:
            ``cannot listen on 127.0.0.1:80: permission denied``.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        faults: Faults | None = None,
        script: Iterable[str] = (),
        rate_limit: float | None = None,
        rate_burst: float = 1.0,
        api_key: str | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_delay: float = 0.0,
        faults_by: Literal["arrival", "body"] = "arrival",
        models: Iterable[str] = (),
    ) -> None:
        if not latency >= 0 or not jitter >= 0:
            raise ValueError("latency and jitter must be >= 0 seconds")
        if faults_by not in _FAULTS_BY:
            raise ValueError(f"faults_by must be 'arrival' or 'body', got {faults_by!r}")
        self.script: collections.deque[str] = collections.deque(script)
        for outcome in self.script:
            _parse_outcome(outcome)
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit must be > 0 requests per second, got {rate_limit!r}")
        self.latency = latency
        self.jitter = jitter
        self.faults = faults or Faults()
        self.rate_limit = rate_limit
        self.rate_burst = rate_burst
        self.stream_delay = stream_delay
        self.api_key = api_key
        self.host = host
        self.models: tuple[str, ...] = tuple(models)
        self._served = frozenset(self.models)
        #: Every model asked for, in order (a dict as an ordered set).
        self._asked: dict[str, None] = {}
        self._ids = Ids()
        self._random = random.Random(seed)
        self._seed = seed
        self.faults_by = faults_by
        #: How often each request (path and body) was seen, for faults_by="body".
        self._attempts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._seen = threading.Condition(self._lock)
        self._portal_cm: Any = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._stop: anyio.CancelScope | None = None
        self._done: Any = None
        self.port = port
        self._reset_stats()
        self._bucket = rate_burst
        self._bucket_at = time.monotonic()

    def _reset_stats(self) -> None:
        self._requests = 0
        self._by_status: collections.Counter[int] = collections.Counter()
        self._by_path: collections.Counter[str] = collections.Counter()
        self._dropped = 0
        self._in_flight = 0
        self._peak = 0
        self._arrivals: list[float] = []
        self._keys: collections.Counter[str] = collections.Counter()

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1``: the prefix OpenAI's clients and corral's actors take."""
        return f"http://{self.host}:{self.port}/v1"

    def stats(self) -> ServerStats:
        """A snapshot of the counters."""
        with self._lock:
            return ServerStats(
                requests=self._requests,
                by_status=dict(self._by_status),
                by_path=dict(self._by_path),
                dropped=self._dropped,
                concurrent_peak=self._peak,
                arrivals=tuple(self._arrivals),
                idempotency_keys=dict(self._keys),
            )

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        """Wait until the server has received *count* requests in all.

        Raises:
            TimeoutError: Not within *timeout* seconds.
        """

        def wait() -> bool:
            with self._seen:
                return self._seen.wait_for(lambda: self._requests >= count, timeout)

        if not await anyio.to_thread.run_sync(wait, abandon_on_cancel=True):
            raise TimeoutError(f"the fake server saw {self._requests} of {count} requests")

    def reset(self) -> None:
        """Zero the counters (the script and faults stay)."""
        with self._lock:
            self._reset_stats()

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> FakeLLMServer:
        await anyio.to_thread.run_sync(self._start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def __enter__(self) -> FakeLLMServer:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _start(self) -> None:
        portal_cm = anyio.from_thread.start_blocking_portal(backend="asyncio")
        portal = portal_cm.__enter__()
        try:
            self._done, self.port = portal.start_task(self._serve, name="fake LLM server")
        except BaseException:
            # Could not listen (port taken...): stop the portal's loop thread too.
            portal_cm.__exit__(None, None, None)
            raise
        self._portal_cm = portal_cm
        self._portal = portal

    def _close(self) -> None:
        portal = self._portal
        if portal is None:
            return
        if self._stop is not None:
            portal.call(self._stop.cancel)
        try:
            self._done.result(timeout=10)
        except Exception:
            # The server task ends by cancellation (the portal's future reports
            # it as concurrent.futures.CancelledError, an Exception); nothing to
            # report. Anything else from this thread (Ctrl-C) goes on.
            pass
        self._portal_cm.__exit__(None, None, None)
        self._portal = None

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        try:
            listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        except OSError as exc:
            raise listen_error(self.host, self.port, exc) from exc
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        with anyio.CancelScope() as scope:
            self._stop = scope
            task_status.started(port)
            async with listener:
                await listener.serve(self._connection)

    # --- HTTP ----------------------------------------------------------------------------

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                try:
                    request, body = await self._read_request(conn, stream)
                except (anyio.EndOfStream, anyio.BrokenResourceError, h11.RemoteProtocolError):
                    return
                if request is None:
                    return
                keep = await self._respond(conn, stream, request, body)
                if not keep or conn.our_state is not h11.DONE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return

    async def _read_request(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    def _draw(self, path: str, body: bytes) -> float:
        # The number a request's fault is picked with (under the lock).
        if self.faults_by == "arrival":
            return self._random.random()
        request = hashlib.sha256(path.encode() + b"\0" + body).hexdigest()
        seen = self._attempts[request]
        self._attempts[request] = seen + 1
        # Seeding with a str hashes it with SHA-512: the same in every process.
        return random.Random(f"{self._seed}:{request}:{seen}").random()

    def _admit(self) -> float | None:
        # Server-side token bucket; returns the Retry-After when refused.
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        self._bucket = min(
            self.rate_burst, self._bucket + (now - self._bucket_at) * self.rate_limit
        )
        self._bucket_at = now
        if self._bucket >= 1:
            self._bucket -= 1
            return None
        return (1 - self._bucket) / self.rate_limit

    async def _respond(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        path = request.target.decode("latin-1").split("?", 1)[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        authorized = (
            self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"
        )
        with self._lock:
            self._requests += 1
            self._seen.notify_all()
            self._by_path[path] += 1
            self._arrivals.append(time.monotonic())
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            key = headers.get("idempotency-key")
            if key:
                self._keys[key] += 1
            outcome = (
                self.script.popleft() if self.script else self.faults.pick(self._draw(path, body))
            )
            delay = self.latency + (self._random.random() * self.jitter if self.jitter else 0.0)
            # The key is checked before the limit, as OpenAI does: a request
            # without the right key never spends the bucket, and meets 401.
            refused = self._admit() if authorized else None
        try:
            if not authorized:
                outcome = "401"
            if refused is not None:
                limited = error_body(
                    f"Rate limit reached for requests: the fake server accepts "
                    f"{self.rate_limit:g} per second. Please try again in "
                    f"{math.ceil(refused * 1000)}ms.",
                    type="requests",
                    code="rate_limit_exceeded",
                )
                return await self._send(conn, stream, 429, limited, retry_after=refused)
            if outcome == "drop":
                with self._lock:
                    self._dropped += 1
                await anyio.sleep(delay)
                return False  # closing the stream without an answer
            if outcome == "slow":
                delay += self.faults.slow_delay
            if delay:
                await anyio.sleep(delay)
            outcome, chunks = _parse_outcome(outcome)
            if outcome in OUTCOME_ERRORS:
                status, error = OUTCOME_ERRORS[outcome]
                retry_after = self.faults.retry_after if outcome == "429" else None
                return await self._send(conn, stream, status, error, retry_after=retry_after)
            return await self._route(conn, stream, request.method, path, body, outcome, chunks)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _route(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        method: bytes,
        path: str,
        body: bytes,
        outcome: str,
        chunks: int,
    ) -> bool:
        # Past the faults: the endpoint's own answer (or OpenAI's error for the request).
        if method == b"GET" and (path == _MODELS or path.startswith(_MODELS + "/")):
            return await self._send(conn, stream, *self._models_reply(path))
        if method != b"POST" or path not in (_CHAT, _EMBEDDINGS):
            invalid = error_body(
                f"Invalid URL ({method.decode('latin-1')} {path})", type="invalid_request_error"
            )
            return await self._send(conn, stream, 404, invalid)
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            not_json = error_body(
                "We could not parse the JSON body of your request.", type="invalid_request_error"
            )
            return await self._send(conn, stream, 400, not_json)
        if outcome == "malformed":
            return await self._send_raw(conn, stream, 200, b"{this is not json", "application/json")
        try:
            if path == _CHAT:
                chat = plan_chat(
                    payload,
                    ids=self._ids,
                    created=int(time.time()),
                    served=self._served,
                    refuse=outcome == "refusal",
                )
                model = chat.model
            else:
                reply = embeddings_reply(payload, served=self._served)
                model = reply["model"]
        except RequestError as exc:
            return await self._send(conn, stream, exc.status, exc.body)
        if model not in self._asked:
            with self._lock:
                self._asked[model] = None
        if path == _CHAT:
            if payload.get("stream") is True:
                return await self._send_events(conn, stream, chat, outcome, chunks)
            reply = chat.reply()
        if outcome == "error_200":
            return await self._send(conn, stream, 200, STREAM_ERROR)
        if outcome == "cut":
            whole = json.dumps(reply).encode()
            return await self._send_raw(
                conn, stream, 200, whole[: len(whole) // 2], "application/json", length=len(whole)
            )
        return await self._send(conn, stream, 200, reply)

    def _models_reply(self, path: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            listed = [*self.models, *(m for m in self._asked if m not in self._served)]
        if path == _MODELS:
            return 200, {"object": "list", "data": [model_object(m) for m in listed]}
        model = unquote(path[len(_MODELS) + 1 :])
        if model in listed:
            return 200, model_object(model)
        return 404, error_body(
            f"The model '{model}' does not exist",
            type="invalid_request_error",
            param="model",
            code="model_not_found",
        )

    async def _send_events(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        chat: Chat,
        outcome: str,
        chunks: int,
    ) -> bool:
        # Server-sent events, one chunk per word, as OpenAI streams chat completions.
        deltas, closing = chat.chunks()
        if outcome == "error_200":
            deltas, closing = deltas[:chunks], [STREAM_ERROR]
        elif outcome == "cut":
            deltas, closing = deltas[:chunks], []
        with self._lock:
            self._by_status[200] += 1
        headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
        try:
            await stream.send(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
            for event in deltas:
                data = f"data: {json.dumps(event)}\n\n".encode()
                await stream.send(conn.send(h11.Data(data=data)) or b"")
                if self.stream_delay:
                    await anyio.sleep(self.stream_delay)
            tail = "".join(f"data: {json.dumps(event)}\n\n" for event in closing)
            if outcome not in _COUNTED:
                tail += "data: [DONE]\n\n"
            await stream.send(
                (conn.send(h11.Data(data=tail.encode())) or b"")
                + (conn.send(h11.EndOfMessage()) or b"")
            )
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    async def _send(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        status: int,
        payload: Any,
        *,
        retry_after: float | None = None,
    ) -> bool:
        extra = []
        if retry_after is not None:
            # Whole seconds (as the header is defined), rounded up so that a
            # client reading only it never comes back early; milliseconds
            # beside it, as OpenAI sends them.
            wait = max(0.0, retry_after)
            extra = [
                ("Retry-After", str(math.ceil(round(wait, 3)))),
                ("retry-after-ms", str(round(wait * 1000))),
            ]
        return await self._send_raw(
            conn, stream, status, json.dumps(payload).encode(), "application/json", extra
        )

    async def _send_raw(
        self,
        conn: h11.Connection,
        stream: anyio.abc.SocketStream,
        status: int,
        body: bytes,
        content_type: str,
        extra: Sequence[tuple[str, str]] = (),
        *,
        length: int | None = None,
    ) -> bool:
        # *length*: the Content-Length to announce, when the body stops short of it
        # (the connection then closes, as a server that died mid-answer).
        with self._lock:
            self._by_status[status] += 1
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body) if length is None else length)),
            ("x-request-id", f"req-{self._requests}"),
            *extra,
        ]
        # One write per response: split writes meet Nagle and delayed ACKs.
        data = (conn.send(h11.Response(status_code=status, headers=headers)) or b"") + (
            conn.send(h11.Data(data=body)) or b""
        )
        whole = length is None
        if whole:
            data += conn.send(h11.EndOfMessage()) or b""
        try:
            await stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return whole
