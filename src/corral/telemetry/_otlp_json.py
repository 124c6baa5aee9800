"""OTLP JSON files: writing spans (one export request per line), reading them back,
and turning them into the JSON that the Jaeger UI opens from a file."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from .._extras import need

__all__ = [
    "OTLPJsonFileExporter",
    "SpanRecord",
    "TraceFileError",
    "encode_spans_json",
    "read_otlp_json",
    "to_jaeger",
]

_KIND_NAMES = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


class TraceFileError(ValueError):
    """An OTLP JSON trace file could not be read; the message says where and why."""


def _hex(value: str) -> str:
    # The protobuf JSON mapping writes bytes as base64; OTLP JSON wants hex ids.
    return base64.b64decode(value).hex() if value else ""


def encode_spans_json(spans: Sequence[Any]) -> str:
    """Encode SDK spans as one OTLP JSON ``ExportTraceServiceRequest`` (no newline)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    data = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in data.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _hex(span[key])
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = _hex(link[key])
    return json.dumps(data, separators=(",", ":"))


class OTLPJsonFileExporter:
    """A span exporter that appends OTLP JSON to a file: one export request per line.

    Trace and span ids are hex, as the OTLP JSON encoding requires, so the
    file can be read by :func:`read_otlp_json`, ``corral trace`` or any
    OTLP JSON reader, and converted for Jaeger with :func:`to_jaeger`. It
    is a ``SpanExporter`` for the OpenTelemetry SDK (duck-typed, so this
    module needs only the SDK when it exports).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        need("opentelemetry.exporter.otlp.proto.common", "otel", "OTLPJsonFileExporter")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if not spans:
            return SpanExportResult.SUCCESS
        line = encode_spans_json(spans)
        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            self._file.write(line + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            if self._file is not None:
                self._file.flush()
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


@attrs.frozen(kw_only=True)
class SpanRecord:
    """One span read from an OTLP JSON file."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    #: ``internal``, ``server``, ``client``, ``producer`` or ``consumer``.
    kind: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    #: ``(time_ns, name, attributes)`` per event.
    events: tuple[tuple[int, str, Mapping[str, Any]], ...]
    #: ``unset``, ``ok`` or ``error``.
    status: str
    status_message: str
    service: str
    links: tuple[tuple[str, str], ...] = ()
    #: The resource's ``service.instance.id`` (the process of the service), or ``""``.
    instance: str = ""

    @property
    def duration_s(self) -> float:
        """The span's duration in seconds."""
        return max(0, self.end_ns - self.start_ns) / 1e9


def _value(raw: Mapping[str, Any]) -> Any:
    if "stringValue" in raw:
        return raw["stringValue"]
    if "boolValue" in raw:
        return bool(raw["boolValue"])
    if "intValue" in raw:
        return int(raw["intValue"])
    if "doubleValue" in raw:
        return float(raw["doubleValue"])
    if "arrayValue" in raw:
        return [_value(v) for v in raw["arrayValue"].get("values", [])]
    if "kvlistValue" in raw:
        return _attributes(raw["kvlistValue"].get("values", []))
    if "bytesValue" in raw:
        return raw["bytesValue"]
    return None


def _attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


_STATUS = {0: "unset", 1: "ok", 2: "error"}


def _spans_of(request: Mapping[str, Any], where: str) -> Iterator[SpanRecord]:
    for resource_spans in request.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = str(resource.get("service.name", "unknown"))
        instance = str(resource.get("service.instance.id", ""))
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                try:
                    status = span.get("status", {})
                    yield SpanRecord(
                        trace_id=span["traceId"],
                        span_id=span["spanId"],
                        parent_id=span.get("parentSpanId") or None,
                        name=span.get("name", ""),
                        kind=_KIND_NAMES.get(int(span.get("kind", 0)), "unspecified"),
                        start_ns=int(span["startTimeUnixNano"]),
                        end_ns=int(span["endTimeUnixNano"]),
                        attributes=_attributes(span.get("attributes", [])),
                        events=tuple(
                            (
                                int(e.get("timeUnixNano", 0)),
                                e.get("name", ""),
                                _attributes(e.get("attributes", [])),
                            )
                            for e in span.get("events", [])
                        ),
                        status=_STATUS.get(int(status.get("code", 0)), "unset"),
                        status_message=status.get("message", ""),
                        service=service,
                        instance=instance,
                        links=tuple(
                            (link.get("traceId", ""), link.get("spanId", ""))
                            for link in span.get("links", [])
                        ),
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise TraceFileError(f"{where}: a span lacks a valid {exc}") from exc


def read_otlp_json(source: str | os.PathLike[str] | Iterable[str]) -> list[SpanRecord]:
    """Read the spans of an OTLP JSON file (one export request per line).

    Raises:
        TraceFileError: The file cannot be read, or a line is not OTLP JSON;
            the message names the file and line.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with open(name, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TraceFileError(f"cannot read {name}: {exc}") from exc
    else:
        name = "<lines>"
        lines = list(source)
    records: list[SpanRecord] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceFileError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(request, dict) or "resourceSpans" not in request:
            raise TraceFileError(f"{where}: not an OTLP ExportTraceServiceRequest")
        records.extend(_spans_of(request, where))
    return records


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value)}


def to_jaeger(spans: Iterable[SpanRecord]) -> dict[str, Any]:
    """Convert spans to the JSON the Jaeger UI opens from a file ("JSON File" upload).

    One entry per trace, each with its own process table.
    """
    traces: dict[str, list[SpanRecord]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    data = []
    for trace_id, members in traces.items():
        processes: dict[str, dict[str, Any]] = {}
        process_ids: dict[str, str] = {}
        jaeger_spans = []
        for span in sorted(members, key=lambda s: s.start_ns):
            pid = process_ids.get(span.service)
            if pid is None:
                pid = process_ids[span.service] = f"p{len(process_ids) + 1}"
                processes[pid] = {"serviceName": span.service, "tags": []}
            tags = [_tag(k, v) for k, v in span.attributes.items()]
            tags.append(_tag("span.kind", span.kind))
            if span.status == "error":
                tags.append(_tag("error", True))
                tags.append(_tag("otel.status_code", "ERROR"))
                if span.status_message:
                    tags.append(_tag("otel.status_description", span.status_message))
            references = []
            if span.parent_id:
                references.append(
                    {"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id}
                )
            for link_trace, link_span in span.links:
                references.append(
                    {"refType": "FOLLOWS_FROM", "traceID": link_trace, "spanID": link_span}
                )
            jaeger_spans.append(
                {
                    "traceID": span.trace_id,
                    "spanID": span.span_id,
                    "operationName": span.name,
                    "references": references,
                    "startTime": span.start_ns // 1000,
                    "duration": max(0, span.end_ns - span.start_ns) // 1000,
                    "tags": tags,
                    "logs": [
                        {
                            "timestamp": time_ns // 1000,
                            "fields": [
                                _tag("event", name),
                                *(_tag(k, v) for k, v in attributes.items()),
                            ],
                        }
                        for time_ns, name, attributes in span.events
                    ],
                    "processID": pid,
                    "warnings": None,
                }
            )
        data.append(
            {
                "traceID": trace_id,
                "spans": jaeger_spans,
                "processes": processes,
                "warnings": None,
            }
        )
    return {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}
