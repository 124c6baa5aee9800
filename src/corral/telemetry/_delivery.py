"""Delivery to an OTLP collector: fail fast when nothing listens, count what was lost.

The OTLP exporters retry a refused connection with backoff for up to their
timeout (10 s by default), logging a line per retry; at a program's exit
that is seconds of waiting and a screenful of warnings for spans that will
never arrive. :class:`DeliveryGuard` stands in front of the exporters:

* before the first export, and after a failed one, a TCP connect to the
  collector decides whether the next batch is sent at all (at most every
  :data:`_RECHECK_INTERVAL` seconds; batches in between are dropped);
* an export that failed although the collector took the connection (it
  answered an error, or did not answer in time) starts a quiet period
  (2 s, doubling to 30 s while failures go on) in which nothing is sent;
* once the program shuts down, a collector whose last export failed gets
  nothing more, so the exit waits for at most the export under way.

A collector that answers sees no difference. Spans that are not delivered
are counted, and one warning names the endpoint.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

__all__ = ["DeliveryGuard", "ExportStatistics", "GuardedSpanExporter", "guarded_metric_exporter"]

logger = logging.getLogger("corral.telemetry")

#: Seconds between reachability checks while the collector is unreachable.
_RECHECK_INTERVAL: Final = 2.0
#: The quiet period after a failed export: first, and longest.
_QUIET_MIN: Final = 2.0
_QUIET_MAX: Final = 30.0
#: Longest a reachability check waits for the TCP handshake.
_CONNECT_TIMEOUT: Final = 1.0
#: A shutdown this long after the warning repeats the count of lost spans.
_REPORT_AFTER: Final = 10.0


@attrs.frozen(kw_only=True)
class ExportStatistics:
    """What was delivered to the OTLP collector, from :meth:`Telemetry.statistics`.

    Read it after :meth:`Telemetry.aclose` for the whole run; before, it is
    what the exporter has handled so far (spans still buffered count in no
    field).

    Attributes:
        endpoint: The OTLP/HTTP traces endpoint, or ``None`` without OTLP export.
        exported: Spans the collector accepted.
        failed: Spans that could not be delivered (dropped, never retried later).
        pending: Spans sent to the collector that had no answer yet when
            the statistics were read (an export still under way: a slow or
            silent collector).
        error: Why the first undelivered spans were not delivered, one line
            (``"connection refused"``), or ``None``.
    """

    endpoint: str | None
    exported: int = 0
    failed: int = 0
    pending: int = 0
    error: str | None = None


def display_url(url: str) -> str:
    """*url* without userinfo, for messages."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {_CONNECT_TIMEOUT:g}s"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return exc.strerror or type(exc).__name__


class DeliveryGuard:
    """The shared state of one collector's exporters: reachable or not, counts, one warning.

    Thread-safe: the span and metric exporters call it from their own threads.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        connect: Callable[[tuple[str, int], float], Any] = socket.create_connection,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        parts = urllib.parse.urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._address = (parts.hostname or "localhost", port)
        # Behind a proxy a direct connect says nothing about the collector.
        self._check = not urllib.request.getproxies() or urllib.request.proxy_bypass(
            self._address[0]
        )
        self._connect = connect
        self._clock = clock
        self._lock = threading.Lock()
        # Checked before the first export and after any failed one; a success
        # means the next batch goes straight to the exporter.
        self._healthy = False
        self._next_check = 0.0
        self._quiet_until = 0.0
        self._quiet = 0.0  # the last quiet period (0: none since the last success)
        self._closing = False
        self._exported = 0
        self._failed = 0
        self._pending = 0
        self._failed_at_warning = 0
        self._reason = "no export yet"  # why the last check or export failed
        self._error: str | None = None
        self._warned = False
        self._warned_at = 0.0

    # --- called by the exporters ------------------------------------------------

    def admit(self) -> bool:
        """Whether to hand the next batch to the exporter (else it is counted as lost)."""
        with self._lock:
            if self._healthy:
                return True
            if self._closing and self._quiet:
                return False  # shutting down: no more waiting on a failing collector
            now = self._clock()
            if now < self._quiet_until:
                return False
            if not self._check:
                return True
            if now < self._next_check:
                return False
            self._next_check = now + _RECHECK_INTERVAL
        try:
            sock = self._connect(self._address, _CONNECT_TIMEOUT)
        except OSError as exc:
            with self._lock:
                self._reason = _reason(exc)
            return False
        sock.close()
        return True

    def sending(self, count: int) -> None:
        """*count* spans go to the exporter now."""
        with self._lock:
            self._pending += count

    def delivered(self, count: int, ok: bool, *, spans: bool, seconds: float = 0.0) -> None:
        """Record an export's outcome (*spans*: whether *count* counts spans)."""
        with self._lock:
            if spans:
                self._pending -= count
            self._healthy = ok
            if ok:
                self._quiet = 0.0
                if spans:
                    self._exported += count
                return
            # It took the connection and still failed: stay quiet a while.
            self._quiet = min(_QUIET_MAX, max(_QUIET_MIN, self._quiet * 2))
            self._quiet_until = self._clock() + self._quiet
            self._reason = f"the export failed after {seconds:.1f}s"

    def dropped(self, count: int) -> None:
        """Count *count* spans not delivered; warn the first time."""
        with self._lock:
            self._failed += count
            if self._error is None:
                self._error = self._reason
            warn = not self._warned
            if warn:
                self._warned = True
                self._warned_at = self._clock()
                self._failed_at_warning = self._failed
            error = self._error
        if warn:
            logger.warning(
                "cannot deliver spans to the OTLP collector at %s (%s): they are counted "
                "and dropped until it answers",
                display_url(self.endpoint),
                error,
            )

    def close(self) -> None:
        """The program is shutting down: a collector whose last export failed gets no more."""
        with self._lock:
            self._closing = True

    # --- for Telemetry ----------------------------------------------------------

    def statistics(self) -> ExportStatistics:
        with self._lock:
            return ExportStatistics(
                endpoint=self.endpoint,
                exported=self._exported,
                failed=self._failed,
                pending=self._pending,
                error=self._error,
            )

    def report(self) -> None:
        """At shutdown: the count of lost spans, once, unless the warning just said it.

        A short program that never reached its collector prints one line (the
        warning, at its exit flush); a long one whose collector went away
        long ago also gets the total.
        """
        with self._lock:
            if not self._warned:
                return
            lost = self._failed - self._failed_at_warning
            recent = self._clock() - self._warned_at < _REPORT_AFTER
            failed, error = self._failed, self._error
            self._failed_at_warning = failed
        if lost > 0 and not recent:
            logger.warning(
                "%d spans could not be delivered to %s (%s)",
                failed,
                display_url(self.endpoint),
                error,
            )


class GuardedSpanExporter:
    """An SDK ``SpanExporter`` that asks a :class:`DeliveryGuard` before each export."""

    def __init__(self, inner: Any, guard: DeliveryGuard) -> None:
        self._inner = inner
        self._guard = guard

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        guard, count = self._guard, len(spans)
        if not guard.admit():
            guard.dropped(count)
            return SpanExportResult.FAILURE
        guard.sending(count)
        started = time.monotonic()
        ok = False
        try:
            result = self._inner.export(spans)
            ok = result is SpanExportResult.SUCCESS
        finally:
            guard.delivered(count, ok, spans=True, seconds=time.monotonic() - started)
            if not ok:
                guard.dropped(count)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()
        self._guard.report()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def guarded_metric_exporter(inner: Any, guard: DeliveryGuard) -> Any:
    """The SDK metric exporter *inner* behind *guard* (made here: the SDK is imported lazily)."""
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class _Guarded(MetricExporter):
        def __init__(self) -> None:
            super().__init__(
                preferred_temporality=inner._preferred_temporality,
                preferred_aggregation=inner._preferred_aggregation,
            )

        def export(
            self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            if not guard.admit():
                return MetricExportResult.FAILURE
            started = time.monotonic()
            result: MetricExportResult = inner.export(
                metrics_data, timeout_millis=timeout_millis, **kwargs
            )
            ok = result is MetricExportResult.SUCCESS
            guard.delivered(0, ok, spans=False, seconds=time.monotonic() - started)
            return result

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return bool(inner.force_flush(timeout_millis=timeout_millis))

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    return _Guarded()
