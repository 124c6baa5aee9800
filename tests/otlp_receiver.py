"""A real OTLP/HTTP trace receiver on loopback, for end-to-end tests.

It decodes the protobuf ``ExportTraceServiceRequest`` bodies that an OTLP
exporter posts (the same bytes Jaeger receives) with ``opentelemetry-proto``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Receiver:
    """Collects decoded spans; can be told to answer slowly."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.spans: list[Any] = []
        #: The resource attributes of each batch received (string values).
        self.resources: list[dict[str, str]] = []
        self.requests = 0
        self.got_spans = threading.Event()
        #: Set when the receiver shuts down, so a slow answer ends at once.
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def spans_by_name(self) -> dict[str, Any]:
        return {span.name: span for span in self.spans}


@contextmanager
def otlp_receiver(delay: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if receiver.delay:
                receiver.stopping.wait(receiver.delay)
            if self.path == "/v1/traces":
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests += 1
                for resource_spans in request.resource_spans:
                    receiver.resources.append(
                        {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
                    )
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                receiver.got_spans.set()
            payload = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver._server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
