"""The corral command: demo, bench and trace, driven in subprocesses and in-process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from corral._cli import CommandError, main
from corral.telemetry import TraceFileError, read_otlp_json

CORRAL = [sys.executable, "-c", "import sys; from corral._cli import main; sys.exit(main())"]


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [*CORRAL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_demo_runs_and_every_call_has_a_complete_trace(tmp_path: Path) -> None:
    """A short demo exits 0, prints its summary, and traces every call from submit to resolution."""
    out = run("demo", "--calls", "50", "--seed", "3", "--traces", "t.jsonl", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "50 calls, seed 3: " in out.stdout
    assert ", 0 pending" in out.stdout
    assert "progress 50/50" in out.stdout  # not a terminal: plain progress lines
    assert "the slowest call, as traced:" in out.stdout
    spans = read_otlp_json(tmp_path / "t.jsonl")
    by_id = {s.span_id: s for s in spans}
    requests = [s for s in spans if s.name.startswith("demo request")]
    assert len(requests) == 50
    for request in requests:
        members = [s for s in spans if s.trace_id == request.trace_id]
        sends = [s for s in members if s.kind == "producer"]
        assert len(sends) == 1, request.name
        send = sends[0]
        assert send.parent_id == request.span_id
        assert send.end_ns >= send.start_ns  # ended: the future resolved
        consumers = sorted((s for s in members if s.kind == "consumer"), key=lambda s: s.start_ns)
        assert {c.parent_id for c in consumers} == {send.span_id}
        # More than one only when a crash beside it cut the call short and the
        # tool ran it again (retry_interrupted): each earlier run says so.
        assert all(c.attributes.get("corral.outcome") == "interrupted" for c in consumers[:-1])
        for span in members:
            assert span.parent_id is None or span.parent_id in by_id
        # The request's outcome is its call's (corral trace reads it off the root).
        assert request.status == ("error" if send.status == "error" else "unset"), request.name


def _call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in this process: its exit status, stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, bad options
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_refuses_bad_options_and_an_occupied_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad options and a taken port are one line on stderr and exit status 2."""
    code, _, err = _call(capsys, "demo", "--calls", "-1")
    assert code == 2
    assert err.strip().splitlines() == ["corral demo: error: --calls must be >= 1, got -1"]
    code, _, err = _call(capsys, "demo", "--fail-rate", "abc")
    assert code == 2
    assert "invalid float value: 'abc'" in err
    assert "Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = _call(capsys, "demo", "--calls", "5", "--port", str(port))
    assert code == 2
    assert err.splitlines() == [
        f"corral demo: error: cannot listen on 127.0.0.1:{port}: address already in use; "
        "pick another --port, or leave it out to use a free one"
    ]


def test_trace_lists_and_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """corral trace lists traces and draws one as a waterfall with its events."""
    monkeypatch.setenv("COLUMNS", "200")  # whole trace ids, whatever terminal runs the tests
    assert main(["demo", "--calls", "30", "--traces", str(tmp_path / "t.jsonl"), "--plain"]) == 0
    capsys.readouterr()
    path = str(tmp_path / "t.jsonl")
    assert main(["trace", path]) == 0
    listing = capsys.readouterr().out
    assert "traces in" in listing
    assert "demo request" in listing
    trace_id = listing.splitlines()[2].split()[0]
    assert main(["trace", path, "--id", trace_id[:12], "--attributes"]) == 0
    drawn = capsys.readouterr().out
    assert drawn.startswith(f"trace {trace_id}")
    assert "send " in drawn
    assert "· messaging.system = corral" in drawn
    assert main(["trace", path, "--slowest"]) == 0
    assert "producer" in capsys.readouterr().out
    assert main(["trace", path, "--errors"]) in (0, 1)  # 1: no call failed
    capsys.readouterr()


def test_trace_refuses_missing_and_malformed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreadable or malformed file is one clear line and exit status 2; --debug shows more."""
    monkeypatch.chdir(tmp_path)
    code, _, err = _call(capsys, "trace", "missing.jsonl")
    assert code == 2
    assert err.startswith("corral trace: error: cannot read missing.jsonl")
    assert "is it an OTLP JSON file" not in err  # a missing file is just missing
    assert len(err.splitlines()) == 1
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    code, _, err = _call(capsys, "trace", "bad.jsonl")
    assert code == 2
    assert "bad.jsonl:1: not JSON" in err
    assert "is it an OTLP JSON file" in err
    assert "Traceback" not in err
    with pytest.raises(CommandError, match="not JSON") as info:
        main(["--debug", "trace", "bad.jsonl"])  # --debug: the error itself, traceback and all
    assert isinstance(info.value.__cause__, TraceFileError)
    code, _, err = _call(capsys, "trace", "bad.jsonl", "--id", "x", "--slowest")
    assert code == 2
    assert "not allowed with argument" in err


def test_version_and_help_on_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version; every command has --help (the real command once)."""
    out = run("--version", cwd=Path.cwd())
    assert out.returncode == 0
    assert out.stdout.startswith("corral ")
    for command in ((), ("demo",), ("bench",), ("trace",), ("serve",), ("status",)):
        code, stdout, _ = _call(capsys, *command, "--help")
        assert code == 0, command
        assert "usage: corral" in stdout


def test_bench_runs_a_workload_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """corral bench --only runs the named workloads beside their floors."""
    report = tmp_path / "bench.json"
    assert main(["bench", "--only", "W1,W3", "--scale", "0.01", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "corral/floor" in out
    assert set(json.loads(report.read_text())["workloads"]) == {"W1", "W3"}
    assert main(["bench", "--only", "W42"]) == 2
    assert "unknown workload" in capsys.readouterr().err
    assert main(["bench", "--repeat", "0"]) == 2
