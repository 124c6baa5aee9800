"""corral trace on trace files written by hand: outcomes, --errors, --id, --limit, widths."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from corral._cli import main
from corral._cli._waterfall import draw_trace
from corral.telemetry import read_otlp_json

_MS = 1_000_000
_INTERNAL, _CLIENT, _PRODUCER, _CONSUMER = 1, 3, 4, 5


def _attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in values.items():
        kind = "intValue" if isinstance(value, int) else "stringValue"
        out.append({"key": key, "value": {kind: str(value) if kind == "intValue" else value}})
    return out


def span(
    trace: str,
    span_id: str,
    name: str,
    *,
    parent: str | None = None,
    start: int = 0,
    end: int = 10,
    kind: int = _INTERNAL,
    error: str | None = None,
    events: Sequence[tuple[int, str, dict[str, Any]]] = (),
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One span as OTLP JSON; times in milliseconds."""
    return {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": parent or "",
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start * _MS),
        "endTimeUnixNano": str(end * _MS),
        "attributes": _attrs(attributes or {}),
        "events": [
            {"timeUnixNano": str(t * _MS), "name": n, "attributes": _attrs(a)} for t, n, a in events
        ],
        "status": {"code": 2, "message": error} if error is not None else {},
    }


def write(path: Path, spans: Sequence[dict[str, Any]]) -> str:
    """An OTLP JSON file holding *spans*, as corral demo --traces writes them."""
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs({"service.name": "test"})},
                "scopeSpans": [{"spans": list(spans)}],
            }
        ]
    }
    path.write_text(json.dumps(request) + "\n")
    return str(path)


def retry(at: int) -> tuple[int, str, dict[str, Any]]:
    return (at, "retry scheduled", {"corral.retry.reason": "HttpStatusError"})


def call(
    trace: str,
    *,
    failures: Sequence[str],
    succeeded: bool,
    start: int = 0,
    per_attempt: int = 10,
    root: str = "request",
) -> Iterator[dict[str, Any]]:
    """A traced call as corral records it: root, send, process, attempts with nested clients.

    *failures* are the messages of the attempts that failed, in order; a last
    attempt succeeds when *succeeded*.
    """
    attempts = len(failures) + (1 if succeeded else 0)
    end = start + attempts * per_attempt
    last = None if succeeded else failures[-1]
    retries = [retry(start + (n + 1) * per_attempt) for n in range(attempts - 1)]
    yield span(trace, "a0", root, start=start, end=end, error=last)
    yield span(
        trace, "a1", "send chat", parent="a0", start=start, end=end, kind=_PRODUCER, error=last
    )
    yield span(
        trace,
        "a2",
        "process chat",
        parent="a1",
        start=start,
        end=end,
        kind=_CONSUMER,
        error=last,
        events=retries,
    )
    for n in range(attempts):
        message = failures[n] if n < len(failures) else None
        a, b = start + n * per_attempt, start + (n + 1) * per_attempt
        yield span(trace, f"b{n}", f"attempt {n + 1}", parent="a2", start=a, end=b, error=message)
        yield span(
            trace, f"c{n}", "chat m", parent=f"b{n}", start=a, end=b, kind=_CLIENT, error=message
        )
        yield span(
            trace,
            f"d{n}",
            "POST /v1/chat/completions",
            parent=f"c{n}",
            start=a,
            end=b,
            kind=_CLIENT,
            error=message,
        )


A = "a" * 32
B = "b" * 32
C = "c" * 32


@pytest.fixture
def calls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three calls: A ok after 2 retries (the slowest), B failed at once, C failed 3 times."""
    monkeypatch.setenv("COLUMNS", "200")
    return write(
        tmp_path / "t.jsonl",
        [
            *call(A, failures=["503 one", "429 two"], succeeded=True, per_attempt=100),
            *call(B, failures=["500 only"], succeeded=False, start=5, per_attempt=200),
            *call(C, failures=["500 x", "500 y", "500 z"], succeeded=False, start=7),
        ],
    )


def listed(out: str) -> dict[str, str]:
    """The outcome column of a listing, by trace id."""
    rows = {}
    for line in out.splitlines()[2:]:
        row = re.fullmatch(r"(\w+) +[\d.]+ ms +\d+  (.+?)  +\S.*", line)
        assert row is not None, line
        rows[row[1]] = row[2].strip()
    return rows


def test_a_call_that_succeeded_after_retries_is_listed_ok_with_its_retries(
    calls_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The root span gives a trace's outcome; a succeeded call's failed attempts are retries."""
    assert main(["trace", calls_file]) == 0
    rows = listed(capsys.readouterr().out)
    assert rows == {A: "ok (2 retries)", B: "error", C: "error (2 retries)"}


def test_errors_draws_the_failed_call_with_the_most_failed_spans(
    calls_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--errors skips a call that only retried, and picks the failed one with the most failures."""
    assert main(["trace", calls_file, "--errors"]) == 0
    assert capsys.readouterr().out.startswith(f"trace {C}")


def test_errors_without_a_failed_call_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--errors with no failed root span says there is none, with exit status 1 (as help says)."""
    path = write(tmp_path / "ok.jsonl", list(call(A, failures=["503"], succeeded=True)))
    assert main(["trace", path, "--errors"]) == 1
    assert capsys.readouterr().out == f"{path}: no trace whose root span failed\n"


def test_trace_help_documents_the_exit_status_of_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The help of corral trace says what exit status --errors gives when nothing failed."""
    with pytest.raises(SystemExit):
        main(["trace", "--help"])
    assert "1 when --errors finds no failed trace" in " ".join(capsys.readouterr().out.split())


def test_id_takes_a_unique_prefix_and_refuses_an_ambiguous_or_unknown_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--id draws the one trace a prefix names; an ambiguous or unknown prefix is one clear line."""
    monkeypatch.setenv("COLUMNS", "200")
    first, second, other = "abc1" + "0" * 28, "abc2" + "0" * 28, "def" + "0" * 29
    path = write(
        tmp_path / "t.jsonl",
        [span(first, "01", "one"), span(second, "02", "two"), span(other, "03", "three")],
    )
    assert main(["trace", path, "--id", "ABC1"]) == 0
    assert capsys.readouterr().out.startswith(f"trace {first}")
    assert main(["trace", path, "--id", other]) == 0
    assert capsys.readouterr().out.startswith(f"trace {other}")
    assert main(["trace", path, "--id", "abc"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "prefix 'abc' is ambiguous" in err[0]
    assert first in err[0]
    assert second in err[0]
    assert main(["trace", path, "--id", "999"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"corral trace: error: no trace id starts with '999' in {path}")


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_limit_below_one_is_refused(
    calls_file: str, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    """--limit below 1 is one line naming the value, exit status 2."""
    assert main(["trace", calls_file, "--limit", limit]) == 2
    assert capsys.readouterr().err == f"corral trace: error: --limit must be >= 1, got {limit}\n"


def test_attributes_without_a_trace_to_draw_is_refused(
    calls_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--attributes alone (nothing drawn, nothing to show them on) is refused with exit 2."""
    assert main(["trace", calls_file, "--attributes"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "--attributes" in err[0]
    assert "--id" in err[0]
    assert main(["trace", calls_file, "--slowest", "--attributes"]) == 0


def test_each_failed_attempt_shows_its_status_once(tmp_path: Path) -> None:
    """A failure recorded on request, model call and attempt spans shows once, where it began."""
    path = write(
        tmp_path / "t.jsonl",
        list(call(C, failures=["first failure", "second failure"], succeeded=False)),
    )
    drawn = "\n".join(draw_trace(read_otlp_json(path)))
    assert drawn.count("first failure") == 1
    assert drawn.count("second failure") == 1
    assert drawn.count("✗") == 3 * 2 + 3  # every failed span is still marked


def _deep(tmp_path: Path) -> str:
    # A long-named, deeply nested trace with long messages and event details.
    trace = "e" * 32
    spans = [span(trace, "00", "the root of a trace with a long name", end=5000)]
    for depth in range(1, 7):
        spans.append(
            span(
                trace,
                f"{depth:02}",
                f"level {depth} POST /v1/some/rather/long/path/{depth}",
                parent=f"{depth - 1:02}",
                start=depth * 100,
                end=5000 - depth,
                kind=_CLIENT,
                error="POST http://127.0.0.1:44319/v1/chat/completions answered 429: "
                + '{"error": {"message": "slow down, '
                + "very " * depth
                + 'slowly"}}',
                events=[
                    (depth * 100 + 1, "retry scheduled", {"corral.retry.reason": "x" * 50}),
                    (depth * 100 + 2, "rate limit wait", {"corral.wait": "y" * 70}),
                ],
                attributes={"url.full": "http://example.com/" + "p" * 50},
            )
        )
    return write(tmp_path / "deep.jsonl", spans)


@pytest.mark.parametrize("columns", [80, 100])
def test_slowest_fits_the_terminal(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    """At COLUMNS=80 (or 100) no line of a drawn trace, or of a listing, is wider than that."""
    path = _deep(tmp_path)
    assert max(len(line) for line in draw_trace(read_otlp_json(path))) > columns  # else moot
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["trace", path, "--slowest", "--attributes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert sum("status: error:" in line for line in lines) == 6
    assert main(["trace", path]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]  # below "1 trace in <file>:"
    assert max(len(line) for line in lines) <= columns


def test_a_narrow_listing_shortens_ids_to_prefixes_that_still_work(
    calls_file: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns the listing fits by shortening ids; each shortened id still works with --id."""
    long_root = [span("f" * 32, "01", "a root span with a name long enough to need room")]
    path = write(Path(calls_file).with_name("more.jsonl"), [*read_back(calls_file), *long_root])
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["trace", path]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]  # below "4 traces in <file>:"
    assert max(len(line) for line in lines) <= 80
    assert len(lines[1].split()[0]) < 32
    for line in lines[1:]:
        prefix = line.split()[0]
        assert main(["trace", path, "--id", prefix]) == 0
        assert capsys.readouterr().out.startswith(f"trace {prefix}")


def read_back(path: str) -> list[dict[str, Any]]:
    """The spans of a file written by :func:`write`."""
    request = json.loads(Path(path).read_text())
    return list(request["resourceSpans"][0]["scopeSpans"][0]["spans"])
