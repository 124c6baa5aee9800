"""Delivery to an OTLP collector: no wait for a missing one; losses counted and told once."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import corral
import corral.telemetry
from corral.telemetry._delivery import DeliveryGuard

from .helpers import Add, Calculator, closed_port
from .otlp_receiver import otlp_receiver

ROOT = Path(__file__).parent.parent


def test_a_program_with_no_collector_exits_at_once_with_one_warning(tmp_path: Path) -> None:
    """Regression: configure()'s defaults and no collector kept a one-call program 13-16 s at exit.

    The bound asserted (3 s from the last call to the process's end) is far
    above the ~0.1 s this takes and far below the old behaviour; the issue's
    bar is 1 s.
    """
    endpoint = f"http://127.0.0.1:{closed_port()}"
    code = """
        import time, anyio, corral, corral.telemetry
        from tests.helpers import Add, Calculator
        corral.telemetry.configure()
        async def main():
            async with corral.Runtime() as rt:
                ref = await rt.spawn(Calculator, name="calc")
                assert await ref.ask(Add(a=1, b=1)) == 2
        anyio.run(main)
        print(time.time(), flush=True)
    """
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    ended = time.time()
    assert out.returncode == 0, out.stderr
    last_call = float(out.stdout.strip())
    assert ended - last_call < 3.0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert f"{endpoint}/v1/traces" in lines[0]
    assert "connection refused" in lines[0]


@pytest.mark.anyio
async def test_undelivered_spans_are_counted_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no collector, statistics() counts every lost span; one warning names the endpoint."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    telemetry = corral.telemetry.configure(endpoint=endpoint, set_global=False)
    with caplog.at_level(logging.WARNING, logger="corral.telemetry"):
        async with corral.Runtime(instruments=[telemetry.instrument()]) as rt:
            ref = await rt.spawn(Calculator, name="calc")
            for i in range(5):
                assert await ref.ask(Add(a=i, b=1)) == i + 1
        await telemetry.aclose()
    stats = telemetry.statistics()
    assert stats == corral.telemetry.ExportStatistics(
        endpoint=f"{endpoint}/v1/traces", exported=0, failed=10, error="connection refused"
    )
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("corral")
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "corral.telemetry"
    assert f"{endpoint}/v1/traces" in warnings[0].getMessage()


@pytest.mark.anyio
async def test_a_listening_collector_gets_every_span_and_statistics_say_so() -> None:
    """statistics() counts what the collector accepted; the spans arrive decoded."""
    with otlp_receiver() as receiver:
        telemetry = corral.telemetry.configure(
            endpoint=receiver.endpoint, set_global=False, metrics=False
        )
        async with corral.Runtime(instruments=[telemetry.instrument()]) as rt:
            ref = await rt.spawn(Calculator, name="calc")
            for i in range(3):
                await ref.ask(Add(a=i, b=1))
        await telemetry.aclose()
        assert len(receiver.spans) == 6
    assert telemetry.statistics() == corral.telemetry.ExportStatistics(
        endpoint=f"{receiver.endpoint}/v1/traces", exported=6, failed=0, error=None
    )


def test_statistics_without_otlp_have_no_endpoint() -> None:
    """A setup that exports no OTLP reports no endpoint and no counts."""
    telemetry = corral.telemetry.configure(exporter="none", set_global=False, metrics=False)
    assert telemetry.statistics() == corral.telemetry.ExportStatistics(endpoint=None)
    telemetry.shutdown()


class FakeNetwork:
    """Stands in for socket.create_connection: a collector that is up or down."""

    def __init__(self) -> None:
        self.up = False
        self.attempts = 0

    def connect(self, address: tuple[str, int], timeout: float) -> socket.socket:
        self.attempts += 1
        if not self.up:
            raise ConnectionRefusedError
        a, b = socket.socketpair()
        b.close()
        return a


def test_the_guard_checks_before_the_first_export_and_rechecks_at_most_every_two_seconds() -> None:
    """Down: batches are refused without waiting; a collector that comes up later gets the rest."""
    network, now = FakeNetwork(), [100.0]
    guard = DeliveryGuard(
        "http://127.0.0.1:4318/v1/traces", connect=network.connect, clock=lambda: now[0]
    )
    assert not guard.admit()
    guard.dropped(3)
    assert network.attempts == 1
    now[0] += 1.999
    assert not guard.admit()  # no new connect within the interval
    guard.dropped(2)
    assert network.attempts == 1
    network.up = True
    now[0] += 0.001  # exactly the interval: check again
    assert guard.admit()
    assert network.attempts == 2
    guard.sending(4)
    guard.delivered(4, True, spans=True)
    assert guard.admit() and guard.admit()  # healthy: no connect per batch
    assert network.attempts == 2
    guard.sending(1)
    guard.delivered(1, False, spans=True)  # an export failed: check before the next
    guard.dropped(1)
    network.up = False
    now[0] += 5
    assert not guard.admit()
    assert guard.statistics() == corral.telemetry.ExportStatistics(
        endpoint="http://127.0.0.1:4318/v1/traces", exported=4, failed=6, error="connection refused"
    )


def test_a_long_run_that_lost_spans_after_the_warning_reports_the_total_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One warning at the first loss; at shutdown, long after it, one line with the total."""
    network, now = FakeNetwork(), [0.0]
    guard = DeliveryGuard(
        "http://127.0.0.1:4318/v1/traces", connect=network.connect, clock=lambda: now[0]
    )
    with caplog.at_level(logging.WARNING, logger="corral.telemetry"):
        guard.admit()
        guard.dropped(2)
        guard.report()  # right after the warning: nothing new to say
        assert len(caplog.records) == 1
        now[0] += 60
        guard.admit()
        guard.dropped(5)
        guard.report()
        guard.report()  # once
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[1] == (
        "7 spans could not be delivered to http://127.0.0.1:4318/v1/traces (connection refused)"
    )


def test_a_failed_export_starts_a_quiet_period_that_doubles_and_a_success_ends() -> None:
    """A collector that takes the connection but fails exports is left alone 2 s, 4 s, ..."""
    network, now = FakeNetwork(), [0.0]
    network.up = True
    guard = DeliveryGuard(
        "http://127.0.0.1:4318/v1/traces", connect=network.connect, clock=lambda: now[0]
    )
    assert guard.admit()
    guard.sending(10)
    guard.delivered(10, False, spans=True, seconds=10.0)
    guard.dropped(10)
    connects = network.attempts
    now[0] += 1.999
    assert not guard.admit()  # quiet: not even a connect
    assert network.attempts == connects
    now[0] += 0.001
    assert guard.admit()
    guard.sending(1)
    guard.delivered(1, False, spans=True, seconds=10.0)
    guard.dropped(1)
    now[0] += 3.999
    assert not guard.admit()  # the second failure: 4 s
    now[0] += 0.001
    assert guard.admit()
    guard.sending(2)
    guard.delivered(2, True, spans=True)
    guard.sending(3)
    guard.delivered(3, False, spans=True, seconds=1.0)  # after a success: 2 s again
    guard.dropped(3)
    now[0] += 2.0
    assert guard.admit()
    assert guard.statistics() == corral.telemetry.ExportStatistics(
        endpoint="http://127.0.0.1:4318/v1/traces",
        exported=2,
        failed=14,
        error="the export failed after 10.0s",
    )


def test_shutting_down_sends_nothing_more_to_a_failing_collector() -> None:
    """After close(), a collector whose last export failed gets nothing; a healthy one does."""
    network, now = FakeNetwork(), [0.0]
    network.up = True
    failing = DeliveryGuard(
        "http://127.0.0.1:1/v1/traces", connect=network.connect, clock=lambda: now[0]
    )
    assert failing.admit()
    failing.sending(1)
    failing.delivered(1, False, spans=True, seconds=10.0)
    failing.dropped(1)
    failing.close()
    now[0] += 3600
    assert not failing.admit()
    healthy = DeliveryGuard(
        "http://127.0.0.1:2/v1/traces", connect=network.connect, clock=lambda: now[0]
    )
    assert healthy.admit()
    healthy.sending(1)
    healthy.delivered(1, True, spans=True)
    healthy.close()
    assert healthy.admit()


def test_the_error_is_that_of_the_spans_lost_not_of_a_metrics_export() -> None:
    """Regression: a failed metrics check set error while no span was lost."""
    network, now = FakeNetwork(), [0.0]
    guard = DeliveryGuard(
        "http://127.0.0.1:4318/v1/traces", connect=network.connect, clock=lambda: now[0]
    )
    assert not guard.admit()  # a metrics export, refused
    network.up = True
    now[0] += 2
    assert guard.admit()
    guard.sending(24)
    guard.delivered(24, True, spans=True)
    assert guard.statistics() == corral.telemetry.ExportStatistics(
        endpoint="http://127.0.0.1:4318/v1/traces", exported=24
    )


class SilentCollector:
    """Takes connections and reads requests, and never answers; counts the requests."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        conns: list[socket.socket] = []
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
                conn.settimeout(0.05)
                conns.append(conn)
            except TimeoutError:
                pass
            for conn in conns:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    data = b""
                self.requests += data.count(b"POST /v1/traces")
        for conn in conns:
            conn.close()
        self.listener.close()

    def __enter__(self) -> SilentCollector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@pytest.mark.anyio
async def test_a_collector_that_never_answers_gets_one_export_and_no_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: each batch waited the exporter's whole timeout for a silent collector."""
    # Longer than the 2 s between checks, so only the quiet period keeps it to one.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2.2")
    with SilentCollector() as collector:
        telemetry = corral.telemetry.configure(
            endpoint=f"http://127.0.0.1:{collector.port}",
            set_global=False,
            metrics=False,
            flush_timeout=10.0,
        )
        async with corral.Runtime(instruments=[telemetry.instrument()]) as rt:
            ref = await rt.spawn(Calculator, name="calc")
            for i in range(700):
                await ref.ask(Add(a=i, b=1))
        await telemetry.aclose()
        stats = telemetry.statistics()
        assert collector.requests == 1
    assert stats.exported == 0
    assert stats.pending == 0
    assert stats.failed == 1400
    assert stats.error is not None and stats.error.startswith("the export failed after")


def test_an_endpoint_given_with_its_signal_path_is_not_doubled() -> None:
    """Regression: configure(endpoint='…/v1/traces') exported to '…/v1/traces/v1/traces'."""
    telemetry = corral.telemetry.configure(
        endpoint="http://127.0.0.1:4318/v1/traces", set_global=False, metrics=False
    )
    assert telemetry.otlp_endpoint == "http://127.0.0.1:4318/v1/traces"
    telemetry.shutdown()
