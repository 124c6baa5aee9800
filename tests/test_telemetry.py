"""OpenTelemetry: spans from submit to resolution, metrics, propagation and export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import corral
from corral.telemetry import OpenTelemetry, read_otlp_json, to_jaeger

from .helpers import Add, Block, Boom, Calculator, Echo, Gate, Witness, closed_port
from .otlp_receiver import otlp_receiver

pytestmark = pytest.mark.anyio


def metric_points(data: Any) -> dict[str, list[Any]]:
    """The data points of each metric in a reader's collection, by metric name."""
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points[metric.name] = list(metric.data.data_points)
    return points


class Traced:
    """An SDK tracer provider with an in-memory exporter, and a corral instrument on it."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.instrument = OpenTelemetry(
            tracer_provider=self.provider, meter_provider=self.meters, flush_timeout=2.0
        )
        self.tracer = self.provider.get_tracer("test")

    def runtime(self, *args: Any, **kwargs: Any) -> corral.Runtime:
        return corral.Runtime(*args, instruments=[self.instrument], **kwargs)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    t.provider.shutdown()
    t.meters.shutdown()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


async def test_caller_producer_consumer_and_handler_spans_form_one_trace(traced: Traced) -> None:
    """The caller's span parents the producer span, which parents the consumer span,
    which is current in the handler."""

    class Inner(corral.Actor[Echo, str]):
        async def handle(self, msg: Echo) -> str:
            with traced.tracer.start_as_current_span("work inside"):
                await anyio.lowlevel.checkpoint()
            return msg.text

    async with traced.runtime() as rt:
        ref = await rt.spawn(Inner, name="inner")
        with traced.tracer.start_as_current_span("user request"):
            assert await ref.ask(Echo(text="hi")) == "hi"
    request = traced.one("user request")
    send = traced.one("send inner")
    process = traced.one("process inner")
    inner = traced.one("work inside")
    trace_id = request.context.trace_id
    assert {s.context.trace_id for s in (send, process, inner)} == {trace_id}
    assert parent_id(send) == request.context.span_id
    assert parent_id(process) == send.context.span_id
    assert parent_id(inner) == process.context.span_id
    assert send.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    for span, op in ((send, "send"), (process, "process")):
        attrs = span.attributes or {}
        assert attrs["messaging.system"] == "corral"
        assert attrs["messaging.operation.type"] == op
        assert attrs["messaging.destination.name"] == "inner"
        assert "corral.outcome" not in attrs  # success is the unset status
        assert attrs["corral.message.type"] == "Echo"
        assert len(str(attrs["messaging.message.id"])) == 36
        assert span.status.status_code is StatusCode.UNSET
    assert (process.attributes or {})["corral.attempt"] == 1
    # The conventions: a span is named "{messaging.operation.name} {destination}".
    assert (send.attributes or {})["messaging.operation.name"] == "send"
    assert (process.attributes or {})["messaging.operation.name"] == "process"
    assert send.name == "send inner" and process.name == "process inner"
    assert (send.attributes or {})["corral.kind"] == "request"
    assert event_names(send) == ["enqueued"]
    assert event_names(process) == ["dequeued"]
    assert send.events[0].attributes == {"corral.queue.depth": 1}


async def test_a_name_taken_again_by_another_class_is_traced_as_that_class(
    traced: Traced,
) -> None:
    """Span attributes follow the actor now behind a name, and the kind of send."""

    class Doubler(corral.Actor[Add, int]):
        async def handle(self, msg: Add) -> int:
            return 2 * (msg.a + msg.b)

    async with traced.runtime() as rt:
        first = await rt.spawn(Calculator, name="svc")
        assert await first.ask(Add(1, 2)) == 3
        await first.stop()
        second = await rt.spawn(Doubler, name="svc")
        assert await second.ask(Add(1, 2)) == 6
        await second.tell(Add(0, 0))
    spans = sorted(traced.exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    doubler = Doubler.__qualname__
    for name, operation in (("send svc", "send"), ("process svc", "process")):
        mine = [s.attributes or {} for s in spans if s.name == name]
        assert [a["corral.actor.class"] for a in mine] == ["Calculator", doubler, doubler]
        assert [a["messaging.operation.name"] for a in mine] == [operation] * 3
    sends = [s.attributes or {} for s in spans if s.name == "send svc"]
    assert [a["corral.kind"] for a in sends] == ["request", "request", "one-way"]


async def test_actors_coming_and_going_do_not_grow_the_instrument(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the instrument keeps per actor name is bounded; spans stay right past the bound."""
    from corral.telemetry import _instrument

    monkeypatch.setattr(_instrument, "_STATIC_CACHE_SIZE", 4)
    async with traced.runtime() as rt:
        for i in range(10):
            ref = await rt.spawn(Calculator, name=f"user-{i}")
            assert await ref.ask(Add(i, 1)) == i + 1
            await ref.stop()
            assert len(traced.instrument._static_cache) <= 4
    names = {s.name for s in traced.exporter.get_finished_spans()}
    assert {f"send user-{i}" for i in range(10)} <= names
    for span in traced.exporter.get_finished_spans():
        attrs = span.attributes or {}
        if span.name.startswith(("send ", "process ")):
            assert span.name.endswith(str(attrs["messaging.destination.name"]))


async def test_failed_call_marks_both_spans_as_errors(traced: Traced) -> None:
    """A handler error sets status ERROR with the message, error.type and an exception event."""
    async with traced.runtime() as rt:
        ref = await rt.spawn(Gate, name="gate")
        with pytest.raises(ValueError, match="boom"):
            await ref.ask(Boom())
    for name in ("send gate", "process gate"):
        span = traced.one(name)
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "boom"
        assert (span.attributes or {})["error.type"] == "ValueError"
        assert (span.attributes or {})["corral.outcome"] == "failed"
        assert "exception" in event_names(span)


class QuotaExceeded(Exception):
    """An application's own error, for error.type."""


class Quota(corral.Actor[Add, int]):
    async def handle(self, msg: Add) -> int:
        raise QuotaExceeded("over quota")


async def test_error_type_is_the_qualified_class_name_the_exception_event_uses(
    traced: Traced,
) -> None:
    """Regression: error.type was the bare class name while exception.type was qualified."""
    async with traced.runtime() as rt:
        ref = await rt.spawn(Quota, name="quota")
        with pytest.raises(QuotaExceeded):
            await ref.ask(Add(1, 2))
    for name in ("send quota", "process quota"):
        span = traced.one(name)
        error_type = (span.attributes or {})["error.type"]
        assert error_type == f"{__name__}.QuotaExceeded"
        [exception] = [e for e in span.events if e.name == "exception"]
        assert (exception.attributes or {})["exception.type"] == error_type


async def test_cancelled_and_expired_calls_are_outcomes_not_errors(traced: Traced) -> None:
    """Cancelled and expired calls leave the status unset and record the outcome."""
    gate = Gate()
    async with traced.runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Block(key="cancel-me"))
            await gate.entered_event("cancel-me").wait()
            tg.cancel_scope.cancel()
        with pytest.raises(corral.DeadlineExceeded):
            await ref.ask(Block(key="expire-me"), timeout=0.02)
    sends = traced.named("send gate")
    processes = traced.named("process gate")
    assert len(sends) == len(processes) == 2
    outcomes = {(s.attributes or {})["corral.outcome"] for s in sends}
    assert outcomes == {"cancelled", "expired"}
    for span in sends + processes:
        assert span.status.status_code is StatusCode.UNSET
        outcome = (span.attributes or {})["corral.outcome"]
        assert ("cancelled" if outcome == "cancelled" else "deadline exceeded") in event_names(span)


async def test_concurrent_calls_keep_their_own_traces(traced: Traced) -> None:
    """Two calls served at once by one actor each keep their own context."""

    class Interleave(corral.Actor[Block, str]):
        def __init__(self) -> None:
            self.gates = {"a": anyio.Event(), "b": anyio.Event()}
            self.entered = {"a": anyio.Event(), "b": anyio.Event()}

        async def handle(self, msg: Block) -> str:
            self.entered[msg.key].set()
            await self.gates[msg.key].wait()
            with traced.tracer.start_as_current_span(f"inner {msg.key}"):
                pass
            return msg.key

    actor = Interleave()
    async with traced.runtime() as rt:
        ref = await rt.spawn(lambda: actor, name="il", max_concurrency=2)

        async def caller(key: str) -> None:
            with traced.tracer.start_as_current_span(f"caller {key}"):
                await ref.ask(Block(key=key))

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller, "a")
            tg.start_soon(caller, "b")
            await actor.entered["a"].wait()
            await actor.entered["b"].wait()
            actor.gates["b"].set()  # b finishes first, a after
            await anyio.wait_all_tasks_blocked()
            actor.gates["a"].set()
    for key in ("a", "b"):
        caller_span = traced.one(f"caller {key}")
        inner = traced.one(f"inner {key}")
        assert inner.context.trace_id == caller_span.context.trace_id
        consumer = next(
            s
            for s in traced.named("process il")
            if s.context.trace_id == caller_span.context.trace_id
        )
        assert parent_id(inner) == consumer.context.span_id


async def test_no_provider_means_no_instrument_no_span_no_carrier() -> None:
    """Without OpenTelemetry configured the runtime installs nothing and allocates nothing."""
    assert not corral.telemetry._instrument.tracing_configured()
    witness = Witness()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: witness, name="calc")
        assert await ref.ask(Add(a=1, b=2)) == 3
        [call] = witness.served
        assert tuple(call.instruments) == ()
        assert call.instrument_data is None
        assert call.envelope.trace_context is corral.Envelope.__attrs_attrs__.trace_context.default


async def test_restarts_and_give_ups_are_traced(traced: Traced) -> None:
    """A crash and its restart form one span with events; a give-up is an error span."""
    from .test_supervision import Do, Worker

    journal: list[str] = []
    tree = corral.Supervisor(
        max_restarts=1,
        children=[corral.child(lambda: Worker(journal, "w"), name="w", shutdown=0.05)],
    )
    with pytest.raises(corral.SupervisorGaveUp):
        async with traced.runtime(tree, clock=corral.testing.ManualClock()) as rt:
            with pytest.raises(corral.Crash):
                await rt.ref("w").ask(Do("crash"))
            await rt.ref("w").ping()
            with pytest.raises(corral.Crash):
                await rt.ref("w").ask(Do("crash"))
            await anyio.sleep_forever()
    supervise = traced.named("supervise w")
    assert len(supervise) == 2
    first = supervise[0]
    assert first.parent is None  # a trace of its own
    assert first.status.status_code is StatusCode.ERROR
    attrs = first.attributes or {}
    assert attrs["corral.supervisor"] == "root"
    assert attrs["corral.strategy"] == "one_for_one"
    assert attrs["error.type"] == "corral.Crash"
    assert attrs["corral.restarts"] == 1
    assert event_names(first)[-2:] == ["restart scheduled", "restarted"]
    assert attrs["corral.outcome"] == "restarted"
    give_up = traced.one("give up root")
    assert give_up.status.status_code is StatusCode.ERROR
    assert event_names(give_up) == ["escalated"]
    # Regression: the crash that was one too many ended only at runtime exit.
    last = supervise[1]
    assert (last.attributes or {})["corral.outcome"] == "gave up"
    assert event_names(last)[-1] == "gave up"
    assert last.end_time is not None and give_up.end_time is not None
    assert last.end_time <= give_up.end_time


async def test_a_call_rerun_after_a_crash_ends_its_first_consumer_span(traced: Traced) -> None:
    """Regression: a call re-queued by retry_interrupted never ended its first consumer span."""
    from .test_supervision import Do, Idempotent, idempotent_tree

    made: list[Idempotent] = []
    async with traced.runtime(idempotent_tree(made)) as rt:
        ref = rt.ref("a")
        first = await ref.submit(Do("block", text="1"))
        await made[0].entered.wait()
        with pytest.raises(corral.Crash):
            await ref.ask(Do("crash"))
        await ref.ping()
        made[1].release.set()
        assert await first == "a:1"
    by_parent: dict[int, list[ReadableSpan]] = {}
    for span in traced.named("process a"):
        assert span.parent is not None
        by_parent.setdefault(span.parent.span_id, []).append(span)
    [runs] = [spans for spans in by_parent.values() if len(spans) > 1]
    assert len(runs) == 2
    interrupted, rerun = sorted(runs, key=lambda p: p.start_time or 0)
    assert (interrupted.attributes or {})["corral.outcome"] == "interrupted"
    assert (interrupted.attributes or {})["error.type"] == "corral.Crash"
    assert interrupted.status.status_code is StatusCode.ERROR
    assert event_names(interrupted)[-1] == "requeued"
    assert (rerun.attributes or {})["corral.attempt"] == 2
    assert rerun.status.status_code is StatusCode.UNSET


async def test_envelope_crossing_a_process_continues_the_trace(traced: Traced) -> None:
    """Given the span's carrier (inject), an envelope carries traceparent; deliver continues it.

    The protocol itself reads no ambient span: an envelope dumped without a
    carrier carries none, whatever span is current.
    """
    proto = corral.Protocol([Add])
    async with traced.runtime() as rt:
        await rt.spawn(Calculator, name="calc")
        with traced.tracer.start_as_current_span("remote sender"):
            envelope = corral.Envelope(payload=Add(a=1, b=2), target="calc")
            assert b"traceparent" not in proto.dumps(envelope)
            wire = proto.dumps(corral.telemetry.inject(envelope))
            carrier = corral.telemetry.inject(envelope).trace_context
        assert b"traceparent" in wire
        given = proto.loads(proto.dumps(envelope, trace_context=carrier))
        assert given.trace_context == carrier
        fut = await rt.deliver(proto.loads(wire))
        assert fut is not None
        assert await fut == 3
        outside = proto.loads(proto.dumps(corral.Envelope(payload=Add(a=1, b=2), target="calc")))
        assert outside.trace_context == {}
    sender = traced.one("remote sender")
    process = traced.one("process calc")
    assert process.context.trace_id == sender.context.trace_id
    assert parent_id(process) == sender.context.span_id
    assert traced.named("send calc") == []  # the send happened on the other side


async def test_metrics_count_calls_by_outcome_and_observe_queues(traced: Traced) -> None:
    """Calls by outcome, durations, queue waits, queue depth and in-flight are recorded."""
    gate = Gate()
    async with traced.runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        await ref.ask(Echo(text="x"))
        with pytest.raises(ValueError, match="boom"):
            await ref.ask(Boom())
        blocked = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        await ref.submit(Echo(text="queued"))
        data = traced.reader.get_metrics_data()
        gate.gates["b"].set()
        await blocked
    points = metric_points(data)
    calls = {p.attributes["corral.outcome"]: p.value for p in points["corral.calls"]}
    assert calls == {"succeeded": 1, "failed": 1}
    assert sum(p.count for p in points["corral.call.duration"]) == 2
    assert sum(p.count for p in points["corral.queue.wait"]) == 2
    depth = {
        p.attributes["messaging.destination.name"]: p.value for p in points["corral.queue.depth"]
    }
    assert depth == {"gate": 1}
    in_flight = {
        p.attributes["messaging.destination.name"]: p.value
        for p in points["corral.calls.in_flight"]
    }
    assert in_flight == {"gate": 1}


async def test_call_counts_of_gone_actors_are_dropped_past_the_bound(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts are kept per actor and outcome, for actors still there once past the bound."""
    from corral.telemetry import _instrument

    monkeypatch.setattr(_instrument, "_COUNTS_SIZE", 4)
    async with traced.runtime() as rt:
        keep = await rt.spawn(Calculator, name="keep")
        assert await keep.ask(Add(1, 1)) == 2
        for i in range(10):
            ref = await rt.spawn(Calculator, name=f"user-{i}")
            assert await ref.ask(Add(i, 1)) == i + 1
            await ref.stop()
            assert len(traced.instrument._call_counts) <= 4
        assert await keep.ask(Add(2, 2)) == 4
        points = metric_points(traced.reader.get_metrics_data())
    calls = {p.attributes["messaging.destination.name"]: p.value for p in points["corral.calls"]}
    assert calls["keep"] == 2
    assert calls["user-9"] == 1
    assert "user-0" not in calls


# --- export over the wire and to files ----------------------------------------------------


async def test_spans_reach_a_real_otlp_http_receiver() -> None:
    """configure(exporter="otlp") sends protobuf ExportTraceServiceRequests over HTTP,
    with the resource's service.name and service.instance.id."""
    with otlp_receiver() as receiver:
        telemetry = corral.telemetry.configure(
            service_name="e2e",
            service_instance_id="node-7",
            endpoint=receiver.endpoint,
            set_global=False,
            metrics=False,
        )
        try:
            async with corral.Runtime(instruments=[telemetry.instrument()]) as rt:
                ref = await rt.spawn(Calculator, name="calc")
                assert await ref.ask(Add(a=2, b=2)) == 4
            # The runtime flushed at exit: the spans have been handed over.
            assert receiver.got_spans.is_set()
        finally:
            await telemetry.aclose()
    by_name = receiver.spans_by_name()
    send, process = by_name["send calc"], by_name["process calc"]
    assert process.parent_span_id == send.span_id
    assert process.trace_id == send.trace_id
    attributes = {kv.key: kv.value.string_value for kv in send.attributes}
    assert attributes["messaging.destination.name"] == "calc"
    assert {(r["service.name"], r["service.instance.id"]) for r in receiver.resources} == {
        ("e2e", "node-7")
    }


@pytest.mark.parametrize("receiver_state", ["down", "slow"])
async def test_dead_or_slow_collector_never_fails_calls_nor_hangs_shutdown(
    receiver_state: str,
) -> None:
    """Calls succeed and the runtime exits within the flush bound whatever the collector does."""
    with otlp_receiver(delay=30.0) as slow:
        endpoint = (
            slow.endpoint if receiver_state == "slow" else f"http://127.0.0.1:{closed_port()}"
        )
        telemetry = corral.telemetry.configure(
            endpoint=endpoint, set_global=False, metrics=False, flush_timeout=0.5
        )
        started = time.monotonic()
        async with corral.Runtime(instruments=[telemetry.instrument()]) as rt:
            ref = await rt.spawn(Calculator, name="calc")
            for i in range(20):
                assert await ref.ask(Add(a=i, b=1)) == i + 1
        assert time.monotonic() - started < 10
        with anyio.fail_after(5):
            await telemetry.aclose()


async def test_otlp_json_file_round_trips_ids_and_parentage(tmp_path: Path) -> None:
    """The file exporter writes OTLP JSON lines that parse back to the same spans."""
    memory = InMemorySpanExporter()
    path = tmp_path / "traces.jsonl"
    telemetry = corral.telemetry.configure(
        exporter=["file", memory], trace_file=path, set_global=False, metrics=False
    )
    try:
        async with corral.Runtime(instruments=[telemetry.instrument()]) as rt:
            ref = await rt.spawn(Gate, name="gate")
            await ref.ask(Echo(text="x"))
            with pytest.raises(ValueError, match="boom"):
                await ref.ask(Boom())
    finally:
        await telemetry.aclose()
    lines = path.read_text().splitlines()
    assert lines
    assert all(json.loads(line)["resourceSpans"] for line in lines)
    records = {r.span_id: r for r in read_otlp_json(path)}
    originals = memory.get_finished_spans()
    assert len(records) == len(originals) == 4
    for span in originals:
        record = records[f"{span.context.span_id:016x}"]
        assert record.trace_id == f"{span.context.trace_id:032x}"
        assert record.parent_id == (f"{span.parent.span_id:016x}" if span.parent else None)
        assert record.name == span.name
        assert record.start_ns == span.start_time
        assert record.service == "corral"
    failed = [r for r in records.values() if r.status == "error"]
    assert {r.kind for r in failed} == {"producer", "consumer"}
    assert failed[0].status_message == "boom"


def test_jaeger_conversion_keeps_traces_and_references(tmp_path: Path) -> None:
    """to_jaeger groups spans by trace with CHILD_OF references, tags and logs."""
    provider = TracerProvider()
    path = tmp_path / "t.jsonl"
    exporter = corral.telemetry.OTLPJsonFileExporter(path)
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        root.add_event("hello", {"n": 1})
        with tracer.start_as_current_span("child", attributes={"k": "v", "f": 1.5}):
            pass
    provider.shutdown()
    data = to_jaeger(read_otlp_json(path))
    (trace_entry,) = data["data"]
    spans = {s["operationName"]: s for s in trace_entry["spans"]}
    assert spans["child"]["references"] == [
        {
            "refType": "CHILD_OF",
            "traceID": trace_entry["traceID"],
            "spanID": spans["root"]["spanID"],
        }
    ]
    assert {"key": "k", "type": "string", "value": "v"} in spans["child"]["tags"]
    assert {"key": "f", "type": "float64", "value": 1.5} in spans["child"]["tags"]
    assert spans["root"]["logs"][0]["fields"][0] == {
        "key": "event",
        "type": "string",
        "value": "hello",
    }
    assert trace_entry["processes"]["p1"]["serviceName"].startswith("unknown_service")
    assert len(trace_entry["traceID"]) == 32


def test_bad_trace_files_are_refused_with_the_line(tmp_path: Path) -> None:
    """Unreadable or malformed files raise TraceFileError naming the file and line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"resourceSpans": []}\nnot json\n')
    with pytest.raises(corral.telemetry.TraceFileError, match=r"bad\.jsonl:2: not JSON"):
        read_otlp_json(bad)
    bad.write_text('{"something": 1}\n')
    with pytest.raises(corral.telemetry.TraceFileError, match="not an OTLP"):
        read_otlp_json(bad)
    with pytest.raises(corral.telemetry.TraceFileError, match="cannot read"):
        read_otlp_json(tmp_path / "missing.jsonl")


def test_configure_refuses_bad_options() -> None:
    """Unknown exporters and a file exporter without a file are refused."""
    with pytest.raises(ValueError, match="exporter must be one of"):
        corral.telemetry.configure(exporter="jaeger", set_global=False)
    with pytest.raises(ValueError, match="needs trace_file"):
        corral.telemetry.configure(exporter="file", set_global=False)


def _run(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        cwd=tmp_path,
        check=False,
    )


def test_global_setup_needs_no_corral_wiring_and_honours_env(tmp_path: Path) -> None:
    """With OpenTelemetry configured globally (env vars honoured), a plain Runtime traces."""
    code = """
        import anyio, corral
        from corral.telemetry import configure, read_otlp_json
        from tests.helpers import Add, Calculator
        t = configure(exporter="file", trace_file="out.jsonl", metrics=False)
        async def main():
            async with corral.Runtime() as rt:
                ref = await rt.spawn(Calculator, name="calc")
                await ref.ask(Add(a=1, b=1))
        anyio.run(main)
        t.shutdown()
        spans = read_otlp_json("out.jsonl")
        print(sorted(s.name for s in spans), {s.service for s in spans})
    """
    env = {"OTEL_SERVICE_NAME": "from-env", "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = _run(code, env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "['process calc', 'send calc'] {'from-env'}" in out.stdout

    (tmp_path / "out.jsonl").unlink()
    env["OTEL_TRACES_SAMPLER"] = "always_off"
    out = _run(code, env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "[] set()" in out.stdout


def test_endpoint_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT beats OTEL_EXPORTER_OTLP_ENDPOINT; default :4318."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    t = corral.telemetry.configure(set_global=False, metrics=False)
    assert t.otlp_endpoint == "http://localhost:4318/v1/traces"
    t.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    t = corral.telemetry.configure(set_global=False, metrics=False)
    assert t.otlp_endpoint == "http://collector:4318/v1/traces"
    t.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9999/custom")
    t = corral.telemetry.configure(set_global=False, metrics=False)
    assert t.otlp_endpoint == "http://other:9999/custom"
    t.shutdown()


def test_tracing_is_off_by_default_in_this_process() -> None:
    """The test process never installs a global provider (tests pass their own)."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
