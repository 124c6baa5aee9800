"""corral demo: the same seed, the same outcome; output that fits; hints that run as typed."""

from __future__ import annotations

import fnmatch
import functools
import io
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from rich.console import Console

import corral
from corral._cli import _parser, main
from corral._cli._demo import FlakyTool, ToolCall, chance, run_demo
from corral._cli._invocation import command
from corral._cli._view import ActorRow, Columns, Snapshot, render
from corral._cli._waterfall import summarise
from corral.telemetry import read_otlp_json

from .helpers import closed_port
from .otlp_receiver import otlp_receiver

REPO = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "COLUMNS"}
    return {**env, **extra}


def summary(stdout: str) -> list[str]:
    """The per-actor table and the outcome line of a demo's output."""
    lines = stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("actor ")))
    outcome = next(i for i, line in enumerate(lines) if " calls, seed " in line)
    assert lines[outcome + 1].startswith("failed as the demo intends: ")
    return [line for line in lines[start : outcome + 2] if line]


def test_the_same_seed_gives_the_same_table_outcome_and_failures(tmp_path: Path) -> None:
    """Regression: five runs of --seed 1 gave 291-297 successes; now each run of a seed agrees.

    Two processes (with different hash seeds) run the same seed: the same
    per-actor table, outcome line, and per call the same outcome and retries.
    """
    runs = []
    procs = {
        hash_seed: subprocess.Popen(  # both at once
            [
                *(sys.executable, "-m", "corral", "demo", "--calls", "60", "--seed", "5"),
                *("--fail-rate", "0.3", "--plain", "--traces", f"t{hash_seed}.jsonl"),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(PYTHONHASHSEED=hash_seed),
        )
        for hash_seed in ("1", "2")
    }
    for hash_seed, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stdout + stderr
        calls = {
            t.root: t.label for t in summarise(read_otlp_json(tmp_path / f"t{hash_seed}.jsonl"))
        }
        runs.append((summary(stdout), calls))
    assert runs[0] == runs[1]
    table, calls = runs[0]
    assert len(calls) == 60
    assert any("retr" in label for label in calls.values())  # something to reproduce
    assert "circuit opened" not in "\n".join(table)


def test_the_same_seed_gives_the_same_counts_on_asyncio_and_trio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counts hold however tasks interleave (trio's scheduler shuffles them); output fits 80."""
    monkeypatch.chdir(tmp_path)
    results = {}
    for backend in ("asyncio", "trio"):
        out = io.StringIO()
        result = anyio.run(
            functools.partial(
                run_demo,
                calls=40,
                seed=7,
                fail_rate=0.3,
                trace_file=f"{backend}.jsonl",
                out=out,
                live=False,
                width=80,
            ),
            backend=backend,
        )
        assert result.exit_code == 0
        results[backend] = (result.rows, result.succeeded, result.failed)
        text = out.getvalue()
        assert "the slowest call, as traced:" in text
        # Commands to copy are printed whole (their length is the install's
        # path, not the demo's); every other line fits.
        runs = command()
        lines = [
            line
            for line in text.splitlines()
            if not line.startswith("progress ") and not line.lstrip().startswith(runs)
        ]
        assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert results["asyncio"] == results["trio"]
    # The demo quiets the corral logger while it runs, and only then.
    assert logging.getLogger("corral").propagate
    assert not logging.getLogger("corral").handlers


def _snapshot(done: int, scale: int) -> Snapshot:
    rows = [
        ActorRow(
            actor=name,
            queued=scale * 3,
            running=min(16, scale),
            ok=scale * 55,
            failed=scale,
            retries=scale * 40,
            restarts=scale // 10,
        )
        for name in ("chat", "embed", "tool")
    ]
    return Snapshot(
        rows=rows,
        waiting=min(24, scale),
        paused_for=0.2 if scale else 0.0,
        circuit="half_open" if scale else "closed",
        done=done,
        total=300,
    )


def _lines(renderable: object, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    file = console.file
    assert isinstance(file, io.StringIO)
    return [line.rstrip() for line in file.getvalue().splitlines()]


def test_the_live_table_fits_80_columns_and_keeps_its_width() -> None:
    """The live table is as wide when counts have grown as at the start, and fits 80 columns."""
    columns = Columns.for_run(("chat", "embed", "tool"), calls=300, max_attempts=5)
    start = _lines(render(_snapshot(0, 0), columns, 80), 80)
    end = _lines(render(_snapshot(300, 5), columns, 80), 80)
    assert max(len(line) for line in start + end) <= 80
    assert [len(line) for line in start[:7]] == [len(line) for line in end[:7]]  # the table
    assert start[2].index("restart") == end[2].index("restart")  # columns stay put
    assert start[-1].endswith("  0/300 calls done")
    assert end[-1].endswith("300/300 calls done")
    shared = [
        next(line for line in lines if line.startswith("rate limiter")) for lines in (start, end)
    ]
    assert shared[0].index("circuit:") == shared[1].index("circuit:")


def _hints(stdout: str) -> list[str]:
    # The indented command lines under "look at them:".
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("look at them:"))
    hints = []
    for line in lines[at + 1 :]:
        if not line.startswith("  "):
            break
        hints.append(line.strip())
    return hints


def test_the_printed_hints_run_as_typed_without_corral_on_path(tmp_path: Path) -> None:
    """Regression: after the README Quickstart corral is not on PATH, yet the hints said `corral`.

    The demo run as .venv/bin/corral, from a directory where only the system
    tools are on PATH, prints hints that run there as they are printed.
    """
    script = Path(sys.executable).with_name("corral")
    if not script.exists():
        pytest.skip("no corral console script next to the interpreter (not pip-installed)")
    env = _env(PATH=os.defpath)
    out = subprocess.run(
        [str(script), "demo", "--calls", "8", "--plain", "--traces", "t.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    hints = _hints(out.stdout)
    assert hints
    assert hints[0].endswith(" trace t.jsonl --slowest")
    assert not hints[0].startswith("corral ")
    done = subprocess.run(
        shlex.split(hints[0]), cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("trace ")
    jaeger = next(line.strip() for line in out.stdout.splitlines() if "--otlp" in line)
    assert jaeger.startswith(hints[0].split(" trace ")[0] + " demo --otlp ")


def test_python_m_corral_is_the_corral_command(tmp_path: Path) -> None:
    """`python -m corral` runs the same main; its error hints name `<python> -m corral`."""
    out = subprocess.run(
        [sys.executable, "-m", "corral", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert out.returncode == 0
    assert out.stdout.startswith("corral ")
    out = subprocess.run(
        [sys.executable, "-m", "corral", "trace", "missing.jsonl", "--limit", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(PATH=os.defpath),
        timeout=60,
    )
    assert out.returncode == 2
    hint = re.search(r"\(see (.+) --help\)", out.stderr)
    assert hint is not None, out.stderr
    assert hint[1].endswith(" -m corral trace")
    shown = subprocess.run(
        [*shlex.split(hint[1]), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert shown.returncode == 0
    assert "usage: corral trace" in shown.stdout


def test_the_demo_default_trace_file_is_ignored_by_git() -> None:
    """A checkout stays clean after the Quickstart: .gitignore covers corral demo's trace file."""
    default = _parser().parse_args(["demo"]).traces
    patterns = [
        line.strip()
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any(fnmatch.fnmatch(default, pattern) for pattern in patterns), default


@pytest.mark.anyio
async def test_the_flaky_tool_fails_exactly_the_calls_the_seed_picks() -> None:
    """Calls running beside a crash run again: the calls that fail are the seed's choice alone."""
    queries = [f"q{i}" for i in range(24)]
    crashers = {q for q in queries if chance(11, "tool crash", q) < 0.3}
    assert 2 <= len(crashers) < len(queries)  # else moot
    tree = corral.Supervisor(
        max_restarts=100,
        within=10.0,
        children=[corral.child(lambda: FlakyTool(11, 0.3), name="tool", max_concurrency=4)],
    )
    async with corral.Runtime(tree) as rt:
        ref = rt.ref("tool")
        futures = {q: await ref.submit(ToolCall(query=q), timeout=30) for q in queries}
        for future in futures.values():
            await future.wait()
    failed = {q for q, f in futures.items() if f.exception() is not None}
    assert failed == crashers
    assert all(isinstance(futures[q].exception(), corral.Crash) for q in crashers)


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OTEL_* variables from the environment; run in a fresh directory."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_otel_env")
async def test_otlp_reports_the_spans_the_collector_accepted_and_times_only_the_calls() -> None:
    """--otlp: "sent N spans to URL" with N what the collector got; the time excludes the flush."""
    with otlp_receiver(delay=1.0) as receiver:  # the flush at exit takes a second or more
        out = io.StringIO()
        began = time.monotonic()
        result = await run_demo(calls=10, otlp=receiver.endpoint, out=out, live=False)
        wall = time.monotonic() - began
        received = len(receiver.spans)
    assert result.exit_code == 0
    assert received == result.spans > 0
    assert f"sent {received} spans to {receiver.endpoint}/v1/traces" in out.getvalue()
    assert "could not reach" not in out.getvalue()
    assert result.elapsed < wall - 0.9  # regression: it included the exit flush
    assert f"the calls took {result.elapsed:.1f}s" in out.getvalue()


@pytest.mark.anyio
@pytest.mark.usefixtures("no_otel_env")
async def test_otlp_to_nothing_says_it_could_not_reach_it() -> None:
    """--otlp to a port nothing listens on: "could not reach URL: <reason>", never "sent"."""
    port = closed_port()
    out = io.StringIO()
    result = await run_demo(calls=5, otlp=f"http://127.0.0.1:{port}", out=out, live=False)
    assert result.exit_code == 0
    text = out.getvalue()
    assert f"could not reach http://127.0.0.1:{port}/v1/traces: connection refused" in text
    assert "sent " not in text


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.com", "http://", ""])
def test_otlp_that_is_not_an_http_url_is_refused(
    url: str, capsys: pytest.CaptureFixture[str], no_otel_env: None
) -> None:
    """--otlp must be an http(s) URL: else one line naming the value, exit status 2."""
    assert main(["demo", "--otlp", url]) == 2
    assert capsys.readouterr().err == (
        f"corral demo: error: --otlp must be an http:// or https:// URL, got {url!r}\n"
    )


@pytest.mark.parametrize("url", ["http://h:port", "http://127.0.0.1:99999"])
def test_an_otlp_url_with_a_bad_port_says_the_port_is_wrong(
    url: str, capsys: pytest.CaptureFixture[str], no_otel_env: None
) -> None:
    """Regression: a port out of range was reported as 'not an http:// URL'."""
    assert main(["demo", "--otlp", url]) == 2
    assert capsys.readouterr().err == (
        f"corral demo: error: --otlp has no valid port (a number from 1 to 65535), got {url!r}\n"
    )


def test_only_the_failures_the_demo_provokes_count_as_intended() -> None:
    """Regression: any ServiceError counted as intended, so 262 404s from a wrong URL exited 0."""
    from corral._cli._demo import intended

    assert intended(corral.HttpStatusError("x", status=503))
    assert intended(corral.HttpStatusError("x", status=429))
    assert not intended(corral.HttpStatusError("x", status=404))
    assert not intended(corral.AuthenticationError("x", status=401))
    assert not intended(corral.ProtocolError("malformed"))
    assert not intended(corral.TransportError("refused"))
    assert intended(corral.Crash("on purpose"))


def test_an_otlp_collector_that_never_answered_is_not_reported_as_sent() -> None:
    """Regression: a silent collector was reported as 'sent 0 spans'."""
    from corral._cli._demo import DemoResult, _summary
    from corral.telemetry import ExportStatistics

    result = DemoResult(
        calls=5,
        seed=1,
        succeeded=5,
        failed={},
        unexpected=[],
        pending=0,
        trace_file="t.jsonl",
        export=ExportStatistics(endpoint="http://127.0.0.1:9/v1/traces", pending=10),
        slowest=[],
        elapsed=0.1,
        spans=10,
        circuit_opened=0,
        rows=[],
    )
    out = io.StringIO()
    _summary(out, result, None)
    assert "could not reach http://127.0.0.1:9/v1/traces: no answer yet for 10 spans" in (
        out.getvalue()
    )
    assert "sent " not in out.getvalue()


def test_an_otlp_endpoint_from_the_environment_is_checked_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_otel_env: None
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT, used without --otlp, is refused the same way, by its name."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == (
        "corral demo: error: OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, "
        "got 'localhost:4318'\n"
    )


def test_the_summary_of_a_large_run_fits_80_columns() -> None:
    """Regression: the outcome line of the default 300-call run was 81 columns and wrapped."""
    from corral._cli._demo import DemoResult, _summary
    from corral.telemetry import ExportStatistics

    failed = {"ActorCrashed": 12, "CircuitOpen": 140, "Crash": 31, "DeadlineExceeded": 7}
    result = DemoResult(
        calls=100_000,
        seed=123_456_789,
        succeeded=99_810,
        failed=failed,
        unexpected=[],
        pending=0,
        trace_file="corral-demo-traces.jsonl",
        export=ExportStatistics(
            endpoint="http://localhost:4318/v1/traces", failed=3, error="connection refused"
        ),
        slowest=[],
        elapsed=512.3,
        spans=612_345,
        circuit_opened=3,
        rows=[
            ActorRow(
                actor="chat", queued=0, running=0, ok=60_000, failed=100, retries=9_999, restarts=0
            )
        ],
    )
    out = io.StringIO()
    _summary(out, result, 80)
    lines = out.getvalue().splitlines()
    commands = [line for line in lines if line.lstrip().startswith(("corral", "/", ".", "docker"))]
    assert max(len(line) for line in lines if line not in commands) <= 80, out.getvalue()
    text = " ".join(out.getvalue().split())
    assert "100000 calls, seed 123456789: 99810 succeeded, 0 pending" in text
    assert "12 ActorCrashed, 140 CircuitOpen, 31 Crash, 7 DeadlineExceeded" in text


def test_the_readme_shows_what_the_default_demo_prints(tmp_path: Path) -> None:
    """The README's sample summary is the default command's (same seed: same table and outcome)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    sample = readme[readme.index("actor    succeeded") :]
    sample_lines = sample[: sample.index("the calls took")].splitlines()
    out = subprocess.run(
        [sys.executable, "-m", "corral", "demo", "--plain"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    start = lines.index(sample_lines[0])
    assert lines[start : start + len(sample_lines)] == sample_lines
    hints = [line[line.index(" trace ") + 1 :] for line in lines if " trace corral-demo" in line]
    assert hints == [
        "trace corral-demo-traces.jsonl --slowest",
        "trace corral-demo-traces.jsonl --errors",
    ]
    assert "trace corral-demo-traces.jsonl --slowest" in readme
