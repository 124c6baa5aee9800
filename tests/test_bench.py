"""The benchmark suite runs end to end (figures are not asserted: see docs/benchmarks.md)."""

from __future__ import annotations

import base64
import gc
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import corral
from corral._bench import _http as h
from corral._bench import _httpsuite as hs
from corral._bench import _runner, _server
from corral._bench import _workloads as w

ROOT = Path(__file__).resolve().parent.parent


PAIR_KEYS = {
    "W1",
    "W2",
    "W3",
    "W4",
    "W5",
    "W6",
    "W7",
    "W8M",
    "W1T",
    "W2T",
    "W1S",
    "W2S",
    "W1TB",
    "W2TB",
    "W1SB",
    "W2SB",
}
HTTP_KEYS = {"W8", "W8L", "W8E", "W8EL", "W8T", "W8S", "W8X"}
#: Remote calls through NATS (the cluster extra, which the tests install, and a nats-server).
#: The tiny run takes one of each path (ask, tell, core NATS; W9C is W9 with more
#: callers); R3 streams and result records are
#: exercised by the cluster tests, and a 3-node start costs seconds per side
#: (W9F, too, waits ack_wait on each side: the cluster tests cover failover).
NATS_KEYS = {"W9", "W9T", "W9D"}


def test_suite_runs_every_workload_at_a_tiny_scale(tmp_path: Path) -> None:
    """python -m benchmarks prints the ratio table and writes the JSON report.

    The HTTP workloads run where the bench extra is installed; elsewhere (CI)
    the suite says in one line that it skipped them.
    """
    extra = not _server.missing_modules()
    out_file = tmp_path / "bench.json"
    keys = (PAIR_KEYS | HTTP_KEYS if extra else PAIR_KEYS) | NATS_KEYS
    only = ",".join(sorted(PAIR_KEYS | HTTP_KEYS | NATS_KEYS))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--scale",
            "0.002",
            "--only",
            only,
            "--json",
            str(out_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for key in keys:
        assert key in proc.stdout
    assert "corral/floor" in proc.stdout
    report = json.loads(out_file.read_text())
    assert set(report["workloads"]) == keys
    for data in report["workloads"].values():
        for fig in data["figures"]:
            assert fig["corral"]["median"] > 0
            if fig["metric"] == "per_s":
                assert fig["floor"]["median"] > 0
    assert report["workloads"]["W7"]["baseline"] == "corral without crashes"
    assert report["workloads"]["W1T"]["baseline"] == "corral with tracing off"
    assert report["workloads"]["W8M"]["figures"][0]["metric"] == "bytes_per_queued_call"
    assert report["workloads"]["W9"]["baseline"] == "raw nats-py, the same JetStream path"
    if extra:
        assert "server capacity: raw aiohttp with 256 in flight" in proc.stdout
        assert report["server"]["capacity_per_s"] > 0
        for key in ("W8", "W8E", "W8EL"):
            assert set(report["workloads"][key]["clients"]) >= {"aiohttp", "httpx", "corral"}
        assert report["workloads"]["W8E"]["labels"]["corral"] == "corral OpenAIEmbeddings"
    else:
        assert report["skipped"] in proc.stdout.splitlines()


def test_http_workloads_are_skipped_without_the_bench_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without uvicorn or aiohttp, the HTTP workloads are skipped with one line saying why."""
    monkeypatch.setattr(hs, "missing_modules", lambda: ["uvicorn", "aiohttp"])
    report = _runner.run_and_print("W8,W8X,W1", "asyncio", False, 1, 0.002, None)
    assert set(report["workloads"]) == {"W1"}
    line = (
        "skipped W8, W8X: they need the bench extra (uvicorn, aiohttp not installed): "
        "pip install -e '.[bench]'"
    )
    assert report["skipped"] == line
    assert line in capsys.readouterr().out.splitlines()
    # Asked for alone, they are still skipped, not an error.
    assert _runner.main(["--only", "W8L"]) == 0
    assert "skipped W8L: they need the bench extra" in capsys.readouterr().out
    assert _runner.main(["--only", "W8E"]) == 0  # W8E alone, without W8 or W8EL
    assert "skipped W8E: they need the bench extra" in capsys.readouterr().out


def test_each_load_reports_its_time_in_the_garbage_collector_and_its_full_collections() -> None:
    """The GC columns: collector time per call and full collections, from one process-wide clock."""
    meter = h._Meter()
    gc.collect()  # a full collection, as a load's would be
    gc.collect(0)
    metrics = meter.result(2).metrics
    assert metrics["full_gcs"] == 1
    assert metrics["gc_us_per_call"] > 0
    assert h._Meter().result(1).metrics["full_gcs"] == 0


def test_gc_freeze_freezes_the_heap_for_each_http_load_only() -> None:
    """--gc-freeze: each load runs with what was alive before it frozen; nothing stays frozen."""

    class Server:  # the figures _run_one reads of a ServerProcess
        base_url = "http://127.0.0.1:9/v1"

        def cpu_seconds(self) -> float:
            return 0.0

    seen: list[int] = []

    async def load(base_url: str, count: int) -> w.Result:
        seen.append(gc.get_freeze_count())
        return w.Result({"per_s": 1.0})

    assert gc.get_freeze_count() == 0
    hs._run_one(Server(), load, 1, "asyncio", False, gc_freeze=True)  # type: ignore[arg-type]
    hs._run_one(Server(), load, 1, "asyncio", False)  # type: ignore[arg-type]
    assert seen[0] > 0 and seen[1] == 0
    assert gc.get_freeze_count() == 0
    report = {"backend": "asyncio", "repeat": 1, "scale": 1.0, "python": "3.11", "cpus": 2}
    assert "gc.freeze()" not in _runner.format_table({**report, "workloads": {}})
    header = _runner.format_table({**report, "gc_freeze": True, "workloads": {}})
    assert header.splitlines()[0].endswith(", gc.freeze() before each HTTP load")


def _http_report(capacity: float, fastest: float) -> tuple[dict[str, Any], dict[str, Any]]:
    def runs(per_s: float) -> list[dict[str, float]]:
        return [{"per_s": per_s, "us_per_call": 1e6 / per_s, "cpu_us_per_call": 1e6 / per_s}]

    server = {"capacity_per_s": capacity}
    floor, mine = runs(fastest), runs(fastest / 2)
    data = {
        "labels": {"aiohttp": "raw aiohttp", "corral": "corral OpenAIChat"},
        "clients": {
            "aiohttp": {"per_s": {"median": fastest}},
            "corral": {"per_s": {"median": fastest / 2}},
        },
        "versus": {
            "aiohttp": {
                "corral": hs._versus({"aiohttp": floor, "corral": mine}, "corral", "aiohttp")
            }
        },
        "targets": [attrs.asdict(t) for t in hs.HTTP_WORKLOADS[0].targets[:1]],
    }
    hs._verdict(server, {"W8": data})
    return server, data


def test_ratios_are_withheld_when_the_server_has_too_little_headroom() -> None:
    """Under 2x the fastest client's rate, the server may be the bottleneck: no ratio."""
    server, data = _http_report(capacity=1999.0, fastest=1000.0)
    assert server["ratios_reported"] is False
    assert "under 2x the fastest client (1,000 calls/s, W8 raw aiohttp)" in server["why"]
    assert data["withheld"] == server["why"]
    assert data["figures"] == []
    assert data["versus"] == {}  # no ratio in the JSON either
    server, data = _http_report(capacity=2000.0, fastest=1000.0)
    assert server["ratios_reported"] is True
    assert data["withheld"] is None
    (figure,) = data["figures"]
    assert figure["metric"] == "per_s corral/aiohttp"
    assert figure["ratio"]["median"] == pytest.approx(0.5)
    assert figure["met"] is False  # 0.5 < 0.7
    overhead = data["versus"]["aiohttp"]["corral"]["overhead_us"]["median"]
    assert overhead == pytest.approx(1000.0)  # 2,000 µs per call against 1,000


@pytest.mark.parametrize(
    "anyio_backend", ["asyncio"]
)  # the app sleeps with asyncio, as uvicorn runs it
@pytest.mark.anyio
async def test_the_benchmark_app_answers_openai_chat() -> None:
    """OpenAIChat reads the benchmark app's reply (in process, through httpx's ASGI transport)."""
    import httpx

    app = _server.ChatApp(latency=0.0)
    transport = httpx.ASGITransport(app=app)
    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: corral.OpenAIChat(
                model="m", base_url="http://bench/v1", api_key_env=None, transport=transport
            ),
            name="chat",
        )
        reply = await ref.ask(h.CHAT_REQUEST)
    assert reply.model == "m"
    assert reply.choices[0].message.content == "Hello! This is the benchmark server's answer."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total == reply.usage.input_tokens + 11
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.post("/v1/chat/completions", content=b"{}")).status_code == 400
        missing = await client.get("/v1/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "invalid_request_error"


def _post(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5, data=body) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _group_alive(pgid: int) -> bool:
    # Any process of the group still running (a zombie runs nothing).
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.parametrize("name", sorted(_server.SERVERS))
def test_server_process_starts_answers_and_is_always_stopped(name: str) -> None:
    """The benchmark's server answers as OpenAI would; then its whole process group is gone.

    Both servers (granian's RSGI app, uvicorn's ASGI app) give the same
    reply bytes, id and time aside; granian's worker process is stopped
    with it, after an error too.
    """
    for module in _server.SERVERS[name]:
        pytest.importorskip(module)
    body = json.dumps(h.CHAT_BODY).encode()
    with _server.ServerProcess(server=name) as server:
        pgid = server.pid
        status, headers, reply = _post(f"{server.base_url}/chat/completions", body)
        assert status == 200
        assert headers["x-request-id"] == "req_bench1"
        assert headers["content-type"] == "application/json"
        parsed = _server.ChatApp(0.0).parse(body)
        assert parsed is not None
        created = json.loads(reply)["created"]
        assert reply == _server._REPLY % {
            b"id": 1,
            b"created": created,
            b"model": parsed[0],
            b"prompt": parsed[1],
            b"total": parsed[1] + _server._COMPLETION_TOKENS,
        }
        status, _, error = _post(f"{server.base_url}/chat/completions", b"{}")
        assert (status, json.loads(error)["error"]["type"]) == (400, "invalid_request_error")
        status, _, error = _post(f"{server.base_url}/nothing", b"")
        assert status == 404
        assert json.loads(error)["error"]["message"] == "no route POST /v1/nothing"
        assert server.cpu_seconds() > 0
    assert not _group_alive(pgid)
    with pytest.raises(KeyboardInterrupt), _server.ServerProcess(server=name) as server:
        pgid = server.pid
        raise KeyboardInterrupt
    assert not _group_alive(pgid)


def _vector(embedding: Any) -> list[float]:
    # A float list as it is, base64 as OpenAI's little-endian float32s.
    if isinstance(embedding, str):
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return list(embedding)


@pytest.mark.parametrize("name", sorted(_server.SERVERS))
def test_server_process_answers_embeddings_as_openai_does(name: str) -> None:
    """POST /embeddings: one vector per input, dimensions honoured, base64 of the same floats.

    Both servers (so both app forms) answer alike; a body that is not an
    embeddings request gets OpenAI's 400.
    """
    for module in _server.SERVERS[name]:
        pytest.importorskip(module)
    with _server.ServerProcess(server=name) as server:
        url = f"{server.base_url}/embeddings"
        status, headers, reply = _post(url, json.dumps(h.EMBED_BODY).encode())
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["x-request-id"].startswith("req_bench")
        data = json.loads(reply)
        assert data["object"] == "list"
        assert data["model"] == h.MODEL
        (item,) = data["data"]
        assert (item["object"], item["index"]) == ("embedding", 0)
        floats = item["embedding"]
        assert len(floats) == _server.DEFAULT_DIMENSIONS
        assert all(isinstance(x, float) for x in floats)
        assert data["usage"]["prompt_tokens"] == data["usage"]["total_tokens"] > 0

        body = {"model": "m", "input": ["a", "b", "c"], "dimensions": 8}
        status, _, reply = _post(url, json.dumps(body).encode())
        assert status == 200
        items = json.loads(reply)["data"]
        assert [i["index"] for i in items] == [0, 1, 2]
        assert [len(i["embedding"]) for i in items] == [8, 8, 8]
        as_floats = items[0]["embedding"]

        body = {"model": "m", "input": "a", "dimensions": 8, "encoding_format": "base64"}
        status, _, reply = _post(url, json.dumps(body).encode())
        assert status == 200
        (item,) = json.loads(reply)["data"]
        assert isinstance(item["embedding"], str)
        assert _vector(item["embedding"]) == as_floats

        for bad in (
            b"not json",
            b"{}",
            b'{"model": "m"}',
            b'{"model": "m", "input": []}',
            b'{"model": "m", "input": [1, 2]}',
            b'{"model": "m", "input": "a", "dimensions": 0}',
            b'{"model": "m", "input": "a", "dimensions": true}',
            b'{"model": "m", "input": "a", "encoding_format": "int8"}',
        ):
            status, _, error = _post(url, bad)
            assert status == 400, bad
            assert json.loads(error)["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def bench_server() -> Iterator[_server.ServerProcess]:
    """The benchmark server (granian, the default), shared by this module's tests."""
    for module in _server.SERVERS[_server.DEFAULT_SERVER]:
        pytest.importorskip(module)
    with _server.ServerProcess() as server:
        yield server


@pytest.mark.anyio
async def test_openai_embeddings_reads_the_benchmark_server(
    bench_server: _server.ServerProcess,
) -> None:
    """OpenAIEmbeddings reads the server's vectors, float and base64 alike (W8E's corral row)."""
    async with corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: corral.OpenAIEmbeddings(
                model=h.MODEL, base_url=bench_server.base_url, api_key_env=None
            ),
            name="embed",
        )
        reply = await ref.ask(h.EMBED_REQUEST)
        several = corral.EmbeddingsRequest(inputs=("a", "b"), dimensions=4)
        floats = await ref.ask(several)
        packed = await ref.ask(attrs.evolve(several, encoding_format="base64"))
    assert reply.model == h.MODEL
    (vector,) = reply.vectors
    assert len(vector) == _server.DEFAULT_DIMENSIONS
    assert reply.usage is not None and reply.usage.total > 0
    assert len(floats.vectors) == 2
    assert all(len(v) == 4 for v in floats.vectors)
    assert packed.vectors == floats.vectors


def test_unknown_server_is_refused() -> None:
    """A server the benchmark does not know is a usage error, before any process starts."""
    with pytest.raises(ValueError, match="unknown server 'nginx'"):
        _server.ServerProcess(server="nginx")


def test_trio_backend_runs() -> None:
    """The suite runs on trio too."""
    report = _runner.run_suite(["W1", "W3", "W9"], backend="trio", scale=0.002)
    assert set(report["workloads"]) == {"W1", "W3"}
    assert "nats-py runs on asyncio only" in report["skipped"]


def test_bad_options_are_refused() -> None:
    """Unknown workloads and bad numbers are refused with a usage error."""
    with pytest.raises(ValueError, match="unknown workload"):
        _runner.run_suite(["W99"])
    with pytest.raises(SystemExit):
        _runner.main(["--repeat", "0"])
    with pytest.raises(SystemExit):
        _runner.main(["--uvloop", "--backend", "trio"])


def _shape(spans: list[Any]) -> dict[str, tuple[Any, ...]]:
    return {
        span.name: (span.kind, sorted(span.attributes or {}), [e.name for e in span.events])
        for span in spans
    }


@pytest.mark.anyio
async def test_ceiling_makes_the_same_spans_as_a_traced_call() -> None:
    """The tracing ceilings (W1TB...) do the SDK work of a real traced call, no less."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from corral.telemetry import OpenTelemetry

    traced = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(traced))
    instrument = OpenTelemetry(tracer_provider=provider, record_metrics=False)
    async with corral.Runtime(instruments=[instrument]) as rt:
        ref = await rt.spawn(w.Inc, name="inc")
        assert await ref.ask(w.Num(1)) == 2
    provider.shutdown()

    alone_exporter = InMemorySpanExporter()
    alone = w._SpansAlone(None, alone_exporter)
    async with corral.Runtime() as rt:
        ref = await rt.spawn(w.Inc, name="inc")
        await alone.ask(ref, 1)
    alone.provider.shutdown()

    expected = _shape(list(traced.get_finished_spans()))
    assert set(expected) == {"send inc", "process inc"}
    assert _shape(list(alone_exporter.get_finished_spans())) == expected
