"""W8's server: an OpenAI-compatible chat endpoint under uvicorn, in a process of its own.

The app is bare ASGI (no framework): ``POST .../chat/completions`` answers
with a reply shaped like OpenAI's after ``--latency`` seconds
(``asyncio.sleep``, in the server's own event loop), ``GET /health`` answers
``ok``. uvicorn runs it with httptools and, where it is installed, uvloop,
on a loopback port the server picks itself and prints.

:class:`ServerProcess` starts it, waits until it answers, reads its CPU
time, and stops it: the benchmark owns the process from start to end.
Run by hand with ``python -m corral._bench._server --latency 0.005``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any, Final

__all__ = ["ServerProcess", "missing_modules"]

#: What the server and the clients that measure it need: the ``bench`` extra.
NEEDED: Final = ("uvicorn", "httptools", "aiohttp")
#: Bounded waits: for the port line, for the first answer, for a clean exit.
START_TIMEOUT: Final = 20.0
STOP_TIMEOUT: Final = 5.0

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def missing_modules() -> list[str]:
    """The modules of :data:`NEEDED` that are not installed."""
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


# --- the app (runs in the server's process) --------------------------------------------

_CONTENT: Final = "Hello! This is the benchmark server's answer."
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class ChatApp:
    """The ASGI app: chat completions after *latency* seconds, and a health check."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        method, path = scope["method"], scope["path"]
        headers = _JSON_HEADERS
        if method == "POST" and path.endswith("/chat/completions"):
            status, payload, headers = await self._chat(body)
        elif path == "/health":
            status, payload = 200, b'{"status":"ok"}'
        else:
            status, payload = 404, _error(f"no route {method} {path}", "invalid_request_error")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _chat(self, body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            request = json.loads(body)
            model = request["model"]
            messages = request["messages"]
            prompt = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
        except (ValueError, KeyError, TypeError, AttributeError):
            error = _error("a chat request needs model and messages", "invalid_request_error")
            return 400, error, _JSON_HEADERS
        await asyncio.sleep(self.latency)
        n = next(self._ids)
        # The reply's fixed parts are encoded once (_REPLY): a server that
        # spends less per call leaves more headroom over the clients it measures.
        payload = _REPLY % {
            b"id": n,
            b"created": int(time.time()),
            b"model": json.dumps(model).encode(),
            b"prompt": prompt,
            b"total": prompt + _COMPLETION_TOKENS,
        }
        return 200, payload, [*_JSON_HEADERS, (b"x-request-id", b"req_bench%d" % n)]


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


def _error(message: str, kind: str) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}
    ).encode()


def serve(latency: float, host: str = "127.0.0.1") -> None:
    """Serve the app until stdin closes or a signal asks; print the port first."""
    import uvicorn  # type: ignore[import-not-found,unused-ignore]  # the bench extra

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))  # a free port, chosen by the kernel: no race with other runs
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
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

    def watch_parent() -> None:
        # The parent holds our stdin: when it goes away, so do we.
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=watch_parent, daemon=True).start()
    print(f"listening on {sock.getsockname()[1]} loop={loop}", flush=True)
    server.run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    """``python -m corral._bench._server``: serve until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m corral._bench._server")
    parser.add_argument("--latency", type=float, default=0.005, help="seconds before each reply")
    args = parser.parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"the benchmark server needs {', '.join(missing)}: pip install 'corral[bench]'")
        return 2
    serve(args.latency)
    return 0


# --- the process (owned by the benchmark) ----------------------------------------------


def _cpu_seconds(pid: int) -> float:
    # utime + stime of the process, from /proc (Linux); NaN elsewhere.
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """The benchmark server in a child process: started, waited for, always stopped.

    Use it as a context manager; leaving it (an error or Ctrl-C included)
    stops the child: stdin closed, then SIGTERM, then SIGKILL, each wait bounded.

    Raises:
        RuntimeError: The server did not start or answer within :data:`START_TIMEOUT`.
    """

    def __init__(self, latency: float = 0.005, *, timeout: float = START_TIMEOUT) -> None:
        self.latency = latency
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
        """The server's process id."""
        assert self._proc is not None
        return self._proc.pid

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (user + system), NaN off Linux."""
        return _cpu_seconds(self.pid)

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
        self._proc = proc = subprocess.Popen(
            [sys.executable, "-m", "corral._bench._server", "--latency", str(self.latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
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
        """Stop the server (idempotent): stdin closed, SIGTERM, then SIGKILL."""
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
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        except BaseException:  # Ctrl-C while waiting: still no child left behind
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
