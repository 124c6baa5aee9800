"""The benchmark suite runs end to end (figures are not asserted: see docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import corral
from corral._bench import _runner
from corral._bench import _workloads as w

ROOT = Path(__file__).resolve().parent.parent


def test_suite_runs_every_workload_at_a_tiny_scale(tmp_path: Path) -> None:
    """python -m benchmarks prints the ratio table and writes the JSON report."""
    out_file = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "0.002", "--json", str(out_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    keys = {
        "W1",
        "W2",
        "W3",
        "W4",
        "W5",
        "W6",
        "W7",
        "W8",
        "W8T",
        "W8L",
        "W1T",
        "W2T",
        "W1S",
        "W2S",
        "W1TB",
        "W2TB",
        "W1SB",
        "W2SB",
    }
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


def test_trio_backend_runs() -> None:
    """The suite runs on trio too."""
    report = _runner.run_suite(["W1", "W3"], backend="trio", scale=0.002)
    assert set(report["workloads"]) == {"W1", "W3"}


def test_bad_options_are_refused() -> None:
    """Unknown workloads and bad numbers are refused with a usage error."""
    with pytest.raises(ValueError, match="unknown workload"):
        _runner.run_suite(["W9"])
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
