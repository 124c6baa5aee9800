"""``configure()``: an OpenTelemetry SDK setup for users who have none of their own."""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any, Final, cast

import anyio
import attrs

from .._extras import need
from ._delivery import DeliveryGuard, ExportStatistics, GuardedSpanExporter, guarded_metric_exporter
from ._instrument import DEFAULT_FLUSH_TIMEOUT, OpenTelemetry
from ._otlp_json import OTLPJsonFileExporter

__all__ = ["DEFAULT_OTLP_ENDPOINT", "Telemetry", "configure"]

#: Where OTLP over HTTP goes by default: the port Jaeger (and any collector)
#: takes OTLP/HTTP on.
DEFAULT_OTLP_ENDPOINT: Final = "http://localhost:4318"

_EXPORTERS: Final = ("otlp", "console", "file", "none")


@attrs.define(kw_only=True)
class Telemetry:
    """The providers :func:`configure` made; shut them down when done.

    Attributes:
        tracer_provider: The SDK tracer provider.
        meter_provider: The SDK meter provider, or ``None`` without a metrics exporter.
        trace_file: The OTLP JSON file spans are written to, if any.
        otlp_endpoint: The OTLP/HTTP traces endpoint in use, if any.
    """

    tracer_provider: Any
    meter_provider: Any
    trace_file: str | None
    otlp_endpoint: str | None
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT
    _guard: DeliveryGuard | None = attrs.field(default=None, repr=False)

    def statistics(self) -> ExportStatistics:
        """What reached the OTLP collector: spans accepted, spans lost and why.

        Complete after :meth:`aclose`; ``endpoint`` is ``None`` (and the counts
        0) without OTLP export.
        """
        if self._guard is None:
            return ExportStatistics(endpoint=None)
        return self._guard.statistics()

    def instrument(self) -> OpenTelemetry:
        """An instrument bound to these providers, for ``Runtime(instruments=[...])``."""
        return OpenTelemetry(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            flush_timeout=self.flush_timeout,
            record_metrics=self.meter_provider is not None,
        )

    async def aclose(self) -> None:
        """Flush and shut the providers down, in a worker thread, within ``flush_timeout``."""
        with anyio.move_on_after(self.flush_timeout):
            await anyio.to_thread.run_sync(self.shutdown, abandon_on_cancel=True)

    def shutdown(self) -> None:
        """Flush and shut the providers down (blocking; prefer :meth:`aclose` in async code)."""
        if self._guard is not None:
            self._guard.close()
        self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _signal_endpoint(signal: str, endpoint: str | None) -> str:
    # The standard variables: a signal-specific endpoint is used as is; the
    # general one gets the signal's path appended. An *endpoint* given with
    # a signal's path already (…/v1/traces) is taken as the base it names.
    if endpoint:
        base = endpoint.rstrip("/")
        for known in ("traces", "metrics", "logs"):
            base = base.removesuffix(f"/v1/{known}")
        return base + f"/v1/{signal}"
    specific = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    general = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_OTLP_ENDPOINT
    return general.rstrip("/") + f"/v1/{signal}"


def configure(
    *,
    service_name: str | None = None,
    service_instance_id: str | None = None,
    exporter: str | Sequence[str | Any] = "otlp",
    endpoint: str | None = None,
    trace_file: str | os.PathLike[str] | None = None,
    sampler: Any = None,
    metrics: bool = True,
    metrics_interval: float = 10.0,
    set_global: bool = True,
    batch: bool = True,
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> Telemetry:
    """Set up OpenTelemetry's SDK for corral (and anything else in the process).

    Args:
        service_name: The ``service.name`` of the resource; ``OTEL_SERVICE_NAME``
            wins when set; default ``"corral"``.
        exporter: ``"otlp"`` (OTLP over HTTP/protobuf, to *endpoint* or
            ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``,
            default ``http://localhost:4318``, where Jaeger takes OTLP),
            ``"console"``, ``"file"`` (OTLP JSON lines, to *trace_file*),
            ``"none"``, an SDK ``SpanExporter``, or a list of these.
        endpoint: Base URL of the OTLP/HTTP receiver (``/v1/traces`` is appended).
        trace_file: Path of the OTLP JSON file for ``"file"``.
        sampler: An SDK sampler; default from ``OTEL_TRACES_SAMPLER`` (and
            ``OTEL_TRACES_SAMPLER_ARG``), else parent-based always-on.
        metrics: Also set up a meter provider, exporting the same way (OTLP or console).
        metrics_interval: Seconds between metric exports.
        set_global: Install the providers globally, so every corral runtime
            (and any other instrumented library) reports to them. Set it to
            ``False`` and pass :meth:`Telemetry.instrument` to a runtime instead.
        batch: Export spans from a background thread in batches (the default
            and the right choice; ``False`` exports each span as it ends).
        flush_timeout: Seconds flushes and shutdown may take.

    Export runs off the event loop: in the batch processor's thread, and
    flushes and shutdown through a worker thread, so a slow collector never
    blocks calls; at its exit a runtime flushes within *flush_timeout*.

    When no collector listens at the OTLP endpoint, nothing waits for one:
    before the first export and after a failed one a TCP connect (at most
    every 2 s) decides whether the next batch is sent at all; a collector
    that takes the connection but fails the export (an error, or no answer
    within the exporter's timeout, ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s) gets
    nothing for a quiet period (2 s, doubling to 30 s), and nothing more once
    the program shuts down. Spans that cannot be delivered are counted
    (:meth:`Telemetry.statistics`) and dropped, and one warning naming the
    endpoint goes to the ``corral.telemetry`` logger. A collector that
    answers, however slowly, is used as the exporter always did.

    Raises:
        ValueError: An unknown exporter name, or ``"file"`` without *trace_file*.
        ModuleNotFoundError: The OpenTelemetry SDK is not installed (the
            ``otel`` extra: ``pip install 'corral[otel]'``).
    """
    need("opentelemetry.sdk", "otel", "corral.telemetry.configure()")
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    exporters = [exporter] if isinstance(exporter, str) else list(exporter)
    for item in exporters:
        if isinstance(item, str) and item not in _EXPORTERS:
            raise ValueError(f"exporter must be one of {', '.join(_EXPORTERS)}, got {item!r}")
    if "file" in exporters and trace_file is None:
        raise ValueError("exporter 'file' needs trace_file=PATH")
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name or "corral"
    attributes: dict[str, str] = {SERVICE_NAME: name}
    if service_instance_id is not None:
        attributes[SERVICE_INSTANCE_ID] = service_instance_id
    resource = Resource.create(attributes)
    provider = TracerProvider(resource=resource, sampler=sampler)
    processor = BatchSpanProcessor if batch else SimpleSpanProcessor
    otlp_endpoint = None
    guard: DeliveryGuard | None = None
    for item in exporters:
        if item == "none":
            continue
        if item == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            otlp_endpoint = _signal_endpoint("traces", endpoint)
            guard = DeliveryGuard(otlp_endpoint)
            # Runs before the SDK's own exit handler (registered earlier, so
            # later): the final export at exit skips a failing collector.
            atexit.register(guard.close)
            span_exporter = GuardedSpanExporter(OTLPSpanExporter(endpoint=otlp_endpoint), guard)
            provider.add_span_processor(processor(span_exporter))  # type: ignore[arg-type]
        elif item == "console":
            provider.add_span_processor(processor(ConsoleSpanExporter()))
        elif item == "file":
            assert trace_file is not None
            provider.add_span_processor(processor(OTLPJsonFileExporter(trace_file)))  # type: ignore[arg-type]
        else:
            provider.add_span_processor(processor(cast("SpanExporter", item)))
    meter_provider = None
    if metrics and ("otlp" in exporters or "console" in exporters):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            MetricReader,
            PeriodicExportingMetricReader,
        )

        readers: list[MetricReader] = []
        interval_ms = max(1.0, metrics_interval * 1000)
        if "otlp" in exporters:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            metric_exporter = OTLPMetricExporter(endpoint=_signal_endpoint("metrics", endpoint))
            if guard is not None:
                metric_exporter = guarded_metric_exporter(metric_exporter, guard)
            readers.append(
                PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval_ms)
            )
        if "console" in exporters:
            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(), export_interval_millis=interval_ms
                )
            )
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if set_global:
        trace.set_tracer_provider(provider)
        if meter_provider is not None:
            otel_metrics.set_meter_provider(meter_provider)
    return Telemetry(
        tracer_provider=provider,
        meter_provider=meter_provider,
        trace_file=None if trace_file is None else os.fspath(trace_file),
        otlp_endpoint=otlp_endpoint,
        flush_timeout=flush_timeout,
        guard=guard,
    )
