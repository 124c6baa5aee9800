"""W8's server: OpenAI-compatible chat and embeddings under granian, in a process of its own.

The app is bare (no framework), in two forms that answer alike: :class:`ChatApp`
for ASGI and :class:`ChatRsgiApp` for RSGI, granian's own interface.
``POST .../chat/completions`` and ``POST .../embeddings`` answer with a
reply shaped like OpenAI's, with an ``x-request-id``, after ``--latency``
seconds (``asyncio.sleep``, in the server's own event loop); a body that is
not such a request gets a 400, ``GET /health`` answers ``ok``, any other
path a 404, both errors in OpenAI's shape.

granian (a Rust HTTP server, on hyper) serves the RSGI form: one worker
process, pinned to one core, HTTP/1 only, its Python side on uvloop where
it is installed. It is the default because the server's CPU per call
bounds the clients it can measure (the suite withholds its ratios when the
server's capacity is under twice the fastest client). Measured side by
side on the 2-core machine against the suite's 256-in-flight load, it spent
about 67 µs of CPU per call where uvicorn (httptools, uvloop) spent 83 with
this app and 94 with the app as it was; in a quieter hour, 49 against 85.
That is under a third less, not the half that 25,000 calls/s would need:
granian's own floor (a reply with no wait and no parsing) was 38 µs.
``--server uvicorn`` still serves the ASGI form that way, to compare. The
app saves what it can too: the reply's fixed parts are encoded once, and
each distinct request body is parsed once (an embeddings reply, the same
for the same body, is kept whole).

:class:`ServerProcess` starts the server in a process group of its own, waits
until it answers, reads the CPU time of every process in the group
(granian's worker included, each with all its threads), and stops the whole
group: the benchmark owns it from start to end. Run by hand with
``python -m corral._bench._server --latency 0.005 [--server uvicorn]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import importlib.metadata
import importlib.util
import itertools
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any, Final

__all__ = ["SERVERS", "ChatApp", "ChatRsgiApp", "ServerProcess", "missing_modules"]

#: What each server and the clients that measure it need: the ``bench`` extra.
SERVERS: Final[dict[str, tuple[str, ...]]] = {
    "granian": ("granian", "aiohttp"),
    "uvicorn": ("uvicorn", "httptools", "aiohttp"),
}
DEFAULT_SERVER: Final = "granian"
#: Bounded waits: for the port line, for the first answer, for a clean exit.
START_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 5.0
#: How the granian worker (a process of granian's making) learns the latency.
_LATENCY_ENV: Final = "CORRAL_BENCH_LATENCY"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def missing_modules(server: str = DEFAULT_SERVER) -> list[str]:
    """The modules *server* (one of :data:`SERVERS`) needs that are not installed."""
    return [name for name in SERVERS[server] if importlib.util.find_spec(name) is None]


# --- the app (runs in the server's process) --------------------------------------------

_CONTENT: Final = "Hello! This is the benchmark server's answer."
_CHAT_PATH: Final = "/chat/completions"
_EMBEDDINGS_PATH: Final = "/embeddings"
#: Distinct request bodies whose parse is kept (the benchmark sends one).
_PARSED_MAX: Final = 1024
#: An embedding's length when the request gives no ``dimensions``. Short, so
#: that decoding the reply (3.5 KB of JSON floats) does not drown what W8E
#: measures, the actor's cost per call, as 1536 floats (21 KB) would; and a
#: length that OpenAI's text-embedding-3 models can be asked for.
DEFAULT_DIMENSIONS: Final = 256
#: The most ``dimensions`` served (text-embedding-3-large's full length).
_MAX_DIMENSIONS: Final = 3072


class _Chat:
    """What both forms of the app answer, the waiting and the wire aside."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self._ids = itertools.count(1)
        self._parsed: dict[bytes, tuple[bytes, int]] = {}
        self._embedded: dict[bytes, bytes] = {}

    def parse(self, body: bytes) -> tuple[bytes, int] | None:
        """A chat request's model (as JSON) and prompt tokens; None if *body* is not one."""
        parsed = self._parsed.get(body)
        if parsed is None:
            try:
                request = json.loads(body)
                model = request["model"]
                messages = request["messages"]
                prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
            except (ValueError, KeyError, TypeError, AttributeError):
                return None
            if len(self._parsed) >= _PARSED_MAX:
                self._parsed.clear()
            parsed = self._parsed[body] = (json.dumps(model).encode(), prompt)
        return parsed

    def reply(self, parsed: tuple[bytes, int]) -> tuple[int, bytes]:
        """The next request number and its reply's bytes."""
        model, prompt = parsed
        n = next(self._ids)
        # The reply's fixed parts are encoded once (_REPLY): a server that
        # spends less per call leaves more headroom over the clients it measures.
        payload = _REPLY % {
            b"id": n,
            b"created": int(time.time()),
            b"model": model,
            b"prompt": prompt,
            b"total": prompt + _COMPLETION_TOKENS,
        }
        return n, payload

    def embed(self, body: bytes) -> bytes | None:
        """The reply to an embeddings request; None if *body* is not one.

        One vector per input, the same for every input (the benchmark needs
        its shape, not its meaning); base64 as OpenAI sends it, little-endian
        float32s. Nothing in the reply changes from call to call, so it is
        made once per distinct body.
        """
        reply = self._embedded.get(body)
        if reply is None:
            try:
                request = json.loads(body)
                model = request["model"]
                inputs = request["input"]
                dimensions = request.get("dimensions", DEFAULT_DIMENSIONS)
                encoding = request.get("encoding_format", "float")
            except (ValueError, KeyError, TypeError, AttributeError):
                return None
            if isinstance(inputs, str):
                inputs = [inputs]
            if (
                not isinstance(inputs, list)
                or not inputs
                or not all(isinstance(text, str) for text in inputs)
                or type(dimensions) is not int
                or not 1 <= dimensions <= _MAX_DIMENSIONS
                or encoding not in ("float", "base64")
            ):
                return None
            vector = _vector(dimensions, encoding == "base64")
            items = b", ".join(_EMBEDDING % (i, vector) for i in range(len(inputs)))
            tokens = sum(len(text) for text in inputs) // 4 + 1
            if len(self._embedded) >= _PARSED_MAX:
                self._embedded.clear()
            reply = self._embedded[body] = _EMBEDDINGS_REPLY % (
                items,
                json.dumps(model).encode(),
                tokens,
                tokens,
            )
        return reply

    async def answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes, int | None]:
        """The status, body and request number (``None`` for an error) of one request."""
        if method == "POST" and path.endswith(_CHAT_PATH):
            parsed = self.parse(body)
            if parsed is None:
                return 400, _BAD_CHAT, None
            await asyncio.sleep(self.latency)
            n, payload = self.reply(parsed)
            return 200, payload, n
        if method == "POST" and path.endswith(_EMBEDDINGS_PATH):
            embedded = self.embed(body)
            if embedded is None:
                return 400, _BAD_EMBEDDINGS, None
            await asyncio.sleep(self.latency)
            return 200, embedded, next(self._ids)
        if path == "/health":
            return 200, _HEALTHY, None
        return 404, _error(f"no route {method} {path}", "invalid_request_error"), None


_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class ChatApp(_Chat):
    """The ASGI app (uvicorn's): chat completions after *latency* seconds, and a health check."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, payload, n = await self.answer(scope["method"], scope["path"], body)
        headers = _JSON_HEADERS
        if n is not None:
            headers = [*_JSON_HEADERS, (b"x-request-id", b"req_bench%d" % n)]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


_RSGI_JSON: Final = ("content-type", "application/json")


class ChatRsgiApp(_Chat):
    """The same app for granian's RSGI interface (granian adds the content-length)."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return  # websockets are off; nothing else is served
        status, payload, n = await self.answer(scope.method, scope.path, await protocol())
        headers = [_RSGI_JSON]
        if n is not None:
            headers = [_RSGI_JSON, ("x-request-id", f"req_bench{n}")]
        protocol.response_bytes(status, headers, payload)


def rsgi_app() -> ChatRsgiApp:
    """granian's factory: the RSGI app, built in granian's worker process."""
    return ChatRsgiApp(float(os.environ.get(_LATENCY_ENV, "0.005")))


_COMPLETION_TOKENS: Final = len(_CONTENT) // 4


def _reply_template() -> bytes:
    # OpenAI's chat.completion, with %-placeholders for what changes per call.
    choices = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": _CONTENT,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    details = {
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    tail = {"service_tier": "default", "system_fingerprint": "fp_bench"}

    def members(fixed: dict[str, Any]) -> str:
        return json.dumps(fixed)[1:-1].replace("%", "%%")

    return (
        '{"id": "chatcmpl-bench%(id)d", "object": "chat.completion", "created": %(created)d, '
        f'"model": %(model)s, {members(choices)}, "usage": {{"prompt_tokens": %(prompt)d, '
        f'"completion_tokens": {_COMPLETION_TOKENS}, "total_tokens": %(total)d, '
        f"{members(details)}}}, {members(tail)}}}"
    ).encode()


_REPLY: Final = _reply_template()
# OpenAI's embeddings list: the items, the model (JSON), prompt and total tokens.
_EMBEDDINGS_REPLY: Final = (
    b'{"object": "list", "data": [%b], "model": %b, '
    b'"usage": {"prompt_tokens": %d, "total_tokens": %d}}'
)
_EMBEDDING: Final = b'{"object": "embedding", "index": %d, "embedding": %b}'


@functools.lru_cache(maxsize=16)
def _vector(dimensions: int, as_base64: bool) -> bytes:
    """An embedding of *dimensions* floats as JSON: a list of numbers, or a base64 string."""
    # Multiples of 1/1024 under 1/8: exact in float32, so that both
    # encodings give the same numbers, with about as many digits as OpenAI's.
    values = [((j * 37) % 255 - 127) / 1024 for j in range(dimensions)]
    if as_base64:
        return json.dumps(
            base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()
        ).encode()
    return json.dumps(values).encode()


def _error(message: str, kind: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}
    ).encode()


_BAD_CHAT: Final = _error("a chat request needs model and messages", "invalid_request_error")
_BAD_EMBEDDINGS: Final = _error(
    "an embeddings request needs model and input (a string or a list of strings); "
    f"dimensions, if given, from 1 to {_MAX_DIMENSIONS}; encoding_format float or base64",
    "invalid_request_error",
)
_HEALTHY: Final = b'{"status":"ok"}'


def _loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _announce(port: int, loop: str) -> None:
    # The one line the parent reads; anything printed after it (granian
    # logs to stdout) goes to stderr, so that the unread pipe never fills.
    print(f"listening on {port} loop={loop}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _on_stdin_closed(stop: Callable[[], None]) -> None:
    def watch_parent() -> None:
        # The parent holds our stdin: when it goes away, so do we. The file
        # descriptor is read, not sys.stdin: its lock, held by this thread
        # while granian forks its worker, would deadlock the worker (which
        # closes sys.stdin as it starts).
        while os.read(sys.stdin.fileno(), 4096):
            pass
        stop()

    threading.Thread(target=watch_parent, daemon=True).start()


def _serve_granian(latency: float, host: str) -> None:
    from granian import Granian  # type: ignore[import-not-found,unused-ignore]  # bench extra
    from granian.constants import (  # type: ignore[import-not-found,unused-ignore]
        HTTPModes,
        Interfaces,
        Loops,
        RuntimeModes,
    )
    from granian.log import LogLevels  # type: ignore[import-not-found,unused-ignore]

    # granian binds its worker's socket itself, with SO_REUSEPORT: a port the
    # kernel picks is held here (bound, not listening, so it takes no
    # connection) until the server ends, and no other program can take it.
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserved.bind((host, 0))
    port = reserved.getsockname()[1]
    os.environ[_LATENCY_ENV] = repr(latency)  # inherited by the worker process
    # Its threads (Python's loop, Rust's I/O, a blocking one) on one core,
    # inherited by the worker: hand-offs between them stay on that core
    # instead of preempting the client on the other. Side by side on the
    # 2-core machine, this took its CPU per call from about 88 to 67 µs.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    loop = _loop()
    server = Granian(
        f"{__name__}:rsgi_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops(loop),
        http=HTTPModes.http1,
        websockets=False,
        backlog=4096,
        log_level=LogLevels.warning,
        log_access=False,
    )
    # SIGTERM is granian's own way out: it stops its worker, then returns.
    _on_stdin_closed(lambda: os.kill(os.getpid(), signal.SIGTERM))
    _announce(port, loop)
    with reserved:
        server.serve()


def _serve_uvicorn(latency: float, host: str) -> None:
    import uvicorn  # type: ignore[import-not-found,unused-ignore]  # the bench extra

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))  # a free port, chosen by the kernel: no race with other runs
    loop = _loop()
    config = uvicorn.Config(
        ChatApp(latency),
        http="httptools",
        loop=loop,
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=4096,
        timeout_keep_alive=60,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)

    def stop() -> None:
        server.should_exit = True

    _on_stdin_closed(stop)
    _announce(sock.getsockname()[1], loop)
    server.run(sockets=[sock])


def serve(latency: float, host: str = "127.0.0.1", server: str = DEFAULT_SERVER) -> None:
    """Serve the app under *server* until stdin closes or a signal asks; print the port first."""
    if server == "uvicorn":
        _serve_uvicorn(latency, host)
    else:
        _serve_granian(latency, host)


def main(argv: list[str] | None = None) -> int:
    """``python -m corral._bench._server``: serve until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m corral._bench._server")
    parser.add_argument("--latency", type=float, default=0.005, help="seconds before each reply")
    parser.add_argument(
        "--server", choices=sorted(SERVERS), default=DEFAULT_SERVER, help="the HTTP server"
    )
    args = parser.parse_args(argv)
    missing = missing_modules(args.server)
    if missing:
        print(f"the benchmark server needs {', '.join(missing)}: pip install 'corral[bench]'")
        return 2
    serve(args.latency, server=args.server)
    return 0


# --- the process (owned by the benchmark) ----------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    # utime + stime of every live process in the group, and of the children
    # each has reaped (cutime + cstime): a worker granian replaced still
    # counts. Each process's figures cover all its threads. From /proc
    # (Linux); NaN elsewhere, or once the group is gone.
    ticks, seen = 0, False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return float("nan")
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if int(fields[2]) == pgid:
            seen = True
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK") if seen else float("nan")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class ServerProcess:
    """The benchmark server in a child process group: started, waited for, always stopped.

    Use it as a context manager; leaving it (an error or Ctrl-C included)
    stops the child: stdin closed, then SIGTERM, then SIGKILL to its whole
    process group (granian's worker too), each wait bounded.

    Raises:
        RuntimeError: The server did not start or answer within :data:`START_TIMEOUT`.
    """

    def __init__(
        self,
        latency: float = 0.005,
        *,
        server: str = DEFAULT_SERVER,
        timeout: float = START_TIMEOUT,
    ) -> None:
        if server not in SERVERS:
            raise ValueError(f"unknown server {server!r}: one of {', '.join(sorted(SERVERS))}")
        self.latency = latency
        self.server = server
        self.timeout = timeout
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.loop = ""

    @property
    def base_url(self) -> str:
        """The API's prefix, ``/v1`` included, as OpenAI's client takes it."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        """The server's process id (its process group's too)."""
        assert self._proc is not None
        return self._proc.pid

    @property
    def description(self) -> str:
        """What serves: the server's name and version, and the event loop."""
        try:
            version = importlib.metadata.version(self.server)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        how = "RSGI" if self.server == "granian" else "httptools"
        return f"{self.server} {version}, {how}, {self.loop or '?'}"

    def cpu_seconds(self) -> float:
        """CPU time the server's processes have used so far (user + system), NaN off Linux."""
        return group_cpu_seconds(self.pid)

    def __enter__(self) -> ServerProcess:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        deadline = time.monotonic() + self.timeout
        command = [sys.executable, "-m", __name__, "--latency", str(self.latency)]
        self._proc = proc = subprocess.Popen(
            [*command, "--server", self.server],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # A group of its own: its CPU is read, and it is stopped, as a
            # whole; and Ctrl-C reaches only the benchmark, which stops it.
            start_new_session=True,
        )
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"the benchmark server printed no port in {self.timeout:g} s")
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the benchmark server did not start: {line.strip()!r}")
        words = line.split()
        self.port = int(words[2])
        self.loop = words[3].partition("=")[2] if len(words) > 3 else ""
        self._wait_answering(deadline)

    def _wait_answering(self, deadline: float) -> None:
        url = f"http://127.0.0.1:{self.port}/health"
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"the benchmark server exited ({self._proc.returncode})")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the benchmark server did not answer {url} in {self.timeout:g} s"
                )
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the server (idempotent): stdin closed, SIGTERM, then SIGKILL to its group."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait(timeout=STOP_TIMEOUT)
        except BaseException:  # Ctrl-C while waiting: still no child left behind
            _kill_group(proc.pid)
            proc.wait(timeout=STOP_TIMEOUT)
            raise
        finally:
            # Whatever outlived the server's own exit (a worker it could not
            # stop) goes too.
            _kill_group(proc.pid)
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
