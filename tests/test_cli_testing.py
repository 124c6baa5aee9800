"""python -m corral.testing, the fake server's faults by body, refused ports, plain help texts."""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral._cli import _parser
from corral.testing import FakeLLMServer, Faults
from corral.testing import __main__ as fake_server_main
from corral.testing._fake_llm import listen_error

from .helpers import closed_port

pytestmark = pytest.mark.anyio

TESTING = [sys.executable, "-m", "corral.testing"]


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_python_m_corral_testing_listens_on_the_port_given() -> None:
    """--port N (documented in its help) is the port it listens on; closing stdin stops it."""
    port = closed_port()  # free: nothing listens on it
    with subprocess.Popen(
        [*TESTING, "--port", str(port), "--latency", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == f"listening on {port}\n"
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings", json={"model": "m", "input": ["a"]}
        )
        assert reply.status_code == 200
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_python_m_corral_testing_with_stdin_from_dev_null_serves_until_killed() -> None:
    """Regression: started with stdin from /dev/null (nohup, `&`, CI) it exited at once."""
    port = closed_port()
    with subprocess.Popen(
        [*TESTING, "--port", str(port), "--latency", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"listening on {port}\n"
        for _ in range(2):  # the second request would find no server if it had left
            reply = httpx.post(
                f"http://127.0.0.1:{port}/v1/embeddings", json={"model": "m", "input": ["a"]}
            )
            assert reply.status_code == 200
        assert proc.poll() is None
        proc.terminate()
        proc.wait(timeout=30)


def _statuses(base_url: str, key: str) -> list[tuple[int, str | None, str | None]]:
    """A fixed run of requests: status, Retry-After and retry-after-ms of each."""
    seen = []
    with httpx.Client(base_url=base_url) as client:
        for n in range(16):
            headers = {"Authorization": f"Bearer {key if n else 'wrong'}"}
            model = "other" if n == 1 else "m"
            reply = client.post(
                "/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": str(n)}]},
                headers=headers,
            )
            seen.append(
                (
                    reply.status_code,
                    reply.headers.get("retry-after"),
                    reply.headers.get("retry-after-ms"),
                )
            )
    return seen


def test_python_m_corral_testing_options_set_the_faults_key_seed_and_models() -> None:
    """--api-key, --rate-*, --retry-after, --seed, --model act as the same FakeLLMServer options."""
    options: Any = {
        "api_key": "sk-cli",
        "faults": Faults(rate_429=0.3, rate_500=0.2, rate_503=0.2, retry_after=2.5),
        "seed": 3,
        "models": ["m"],
    }
    command = [
        *TESTING,
        *("--latency", "0", "--api-key", "sk-cli", "--seed", "3", "--model", "m"),
        *("--rate-429", "0.3", "--rate-500", "0.2", "--rate-503", "0.2", "--retry-after", "2.5"),
    ]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline().removeprefix("listening on "))
        seen = _statuses(f"http://127.0.0.1:{port}/v1", "sk-cli")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    with FakeLLMServer(**options) as server:
        assert _statuses(server.base_url, "sk-cli") == seen
    with FakeLLMServer(**{**options, "seed": 0}) as server:
        assert _statuses(server.base_url, "sk-cli") != seen  # the seed is the one given
    assert seen[0] == (401, None, None)  # the key first, whatever the faults
    statuses = {status for status, _, _ in seen}
    assert statuses >= {200, 429, 500, 503}
    assert {(a, ms) for status, a, ms in seen if status == 429} == {("3", "2500")}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate-500", "1.5"], "--rate-500 must be a probability in [0, 1], got 1.5"),
        (["--rate-drop", "-0.1"], "--rate-drop must be a probability in [0, 1], got -0.1"),
        (["--retry-after", "-1"], "--retry-after must be >= 0 seconds, got -1.0"),
        (["--rate-limit", "0"], "--rate-limit must be > 0 requests per second, got 0.0"),
        (["--faults-by", "time"], "argument --faults-by: invalid choice: 'time'"),
    ],
)
def test_python_m_corral_testing_refuses_bad_fault_options_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad fault option is one line naming it and its value, exit status 2."""
    with pytest.raises(SystemExit) as info:
        fake_server_main.main(argv)
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"python -m corral.testing: error: {message}")


def test_python_m_corral_testing_names_a_refused_port_and_why() -> None:
    """A taken --port is one line naming the address and the reason, exit status 2."""
    with taken_port() as port:
        out = subprocess.run(
            [*TESTING, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"python -m corral.testing: error: cannot listen on 127.0.0.1:{port}: "
        "address already in use"
    ]
    out = subprocess.run([*TESTING, "--port", "70000"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "python -m corral.testing: error: --port must be between 0 and 65535, got 70000 "
        "(see python -m corral.testing --help)"
    ]


def test_a_refused_listen_names_the_address_and_the_reason() -> None:
    """The fake server's listen error reads `cannot listen on HOST:PORT: <reason>`, same errno."""
    denied = listen_error("127.0.0.1", 1, PermissionError(errno.EACCES, "Permission denied"))
    assert isinstance(denied, PermissionError)
    assert denied.errno == errno.EACCES
    assert denied.strerror == "cannot listen on 127.0.0.1:1: permission denied"
    in_use = listen_error("127.0.0.1", 8080, OSError(errno.EADDRINUSE, "Address already in use"))
    assert in_use.errno == errno.EADDRINUSE
    assert in_use.strerror == "cannot listen on 127.0.0.1:8080: address already in use"


async def test_the_fake_server_names_a_taken_port() -> None:
    """Entering a FakeLLMServer on a taken port raises OSError naming the address and reason."""
    with taken_port() as port:
        with pytest.raises(
            OSError, match=f"cannot listen on 127.0.0.1:{port}: address already in use"
        ) as info:
            async with FakeLLMServer(port=port):
                pass
    assert info.value.errno == errno.EADDRINUSE


async def _outcomes(server: FakeLLMServer, bodies: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        statuses = []
        for body in bodies:
            reply = await client.post("/embeddings", json={"model": "m", "input": [body]})
            statuses.append(reply.status_code)
        return statuses


async def test_faults_by_body_follow_the_request_and_its_attempt_not_arrival() -> None:
    """faults_by="body": each request meets the same fault, attempt by attempt, in any order."""
    faults = Faults(rate_500=0.5)
    bodies = [f"call {i}" for i in range(30)]
    seen = []
    for order in (bodies, bodies[::-1]):
        sent = order * 2  # each call, then its retry
        async with FakeLLMServer(faults=faults, seed=3, faults_by="body") as server:
            statuses = await _outcomes(server, sent)
        seen.append(
            {(b, n // len(order)): s for n, (b, s) in enumerate(zip(sent, statuses, strict=True))}
        )
    assert seen[0] == seen[1]
    assert set(seen[0].values()) == {200, 500}
    # A retry is the next attempt: it does not simply meet the first one's fault again.
    assert any(seen[0][b, 0] != seen[0][b, 1] for b in bodies)


def test_faults_by_must_be_arrival_or_body() -> None:
    """An unknown faults_by is a ValueError naming it."""
    with pytest.raises(ValueError, match="faults_by must be 'arrival' or 'body', got 'time'"):
        FakeLLMServer(faults_by="time")


def _all_help() -> Iterator[tuple[str, str]]:
    parser = _parser()
    yield "corral", parser.format_help()
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for name, sub in getattr(action, "choices", {}).items():
            yield f"corral {name}", sub.format_help()
    yield "python -m corral.testing", fake_server_main._parser().format_help()


def test_help_texts_carry_no_restructuredtext_markup() -> None:
    """No ``double backticks`` or :role:`x` in the help of any corral command."""
    helps = dict(_all_help())
    assert set(helps) == {
        "corral",
        "corral demo",
        "corral bench",
        "corral trace",
        "corral serve",
        "corral status",
        "python -m corral.testing",
    }
    for command, text in helps.items():
        assert "``" not in text, command
        assert not re.search(r":\w+:`", text), command
    assert "--port" in helps["python -m corral.testing"]


def test_the_hint_is_corral_when_path_finds_the_running_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hints say `corral` when PATH finds the script running, else its path from here."""
    from corral._cli._invocation import command

    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "corral"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", str(bin_dir))
    assert command() == "corral"
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert command() == "env/bin/corral"
    monkeypatch.chdir(bin_dir)
    assert command() == "./corral"


def test_the_hint_is_python_m_corral_when_run_as_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as `python -m corral`, hints name the interpreter: by name if on PATH, else by path."""
    from corral._cli._invocation import command

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python3"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "corral" / "__main__.py"), "demo"])
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(bin_dir))
    assert command() == "python3 -m corral"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert command() == "venv/bin/python3 -m corral"
    spaced = tmp_path / "my env"
    spaced.mkdir()
    monkeypatch.setattr(sys, "executable", str(spaced / "python"))
    assert command() == "'my env/python' -m corral"
