"""Spans in memory: an SDK tracer provider with an in-memory exporter, and a corral instrument."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import corral


class MemoryTracing:
    """An SDK tracer provider writing to memory, and a corral instrument on it (no metrics)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.instrument = corral.telemetry.OpenTelemetry(
            tracer_provider=self.provider, record_metrics=False
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())
