"""The benchmark suite runs end to end (figures are not asserted: see docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from corral._bench import _runner

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
