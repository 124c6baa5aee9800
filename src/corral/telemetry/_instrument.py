"""The OpenTelemetry instrument: spans and metrics for calls and supervision.

Uses the OpenTelemetry API only; the SDK comes in through :func:`configure`
or the user's own setup.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._core._calls import Call, current_call
from .._core._instrument import Instrument
from .._core._messages import Kind
from .._core._pile import CallStatus
from .._core._specs import SupervisorEvent, SupervisorEventKind
from .._services._exceptions import HttpStatusError
from .._version import __version__

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "OpenTelemetry",
    "client_span",
    "tracer_for",
    "tracer_of",
    "tracing_configured",
]

logger = logging.getLogger("corral")

#: Seconds the runtime waits, at exit, for buffered spans and metrics to be
#: handed to the exporter.
DEFAULT_FLUSH_TIMEOUT: Final = 5.0

#: The semantic conventions whose attribute names corral's spans use (the
#: GenAI ``gen_ai.provider.name`` first appears in 1.37).
_SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.37.0"
_OUTCOME: Final = {status: status.value for status in CallStatus}
#: Actors whose span names and fixed attributes are kept ready.
_STATIC_CACHE_SIZE: Final = 1024
#: (actor, outcome) call counts kept before those of gone actors are dropped.
_COUNTS_SIZE: Final = 2048
_EV = SupervisorEventKind


def tracing_configured() -> bool:
    """Whether a real (SDK or vendor) tracer provider is installed globally."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def _metering_configured() -> bool:
    provider = metrics.get_meter_provider()
    return not isinstance(provider, metrics.NoOpMeterProvider) and (
        type(provider).__name__ != "_ProxyMeterProvider"
    )


class _CallSpans:
    __slots__ = (
        "attempt",
        "attempt_token",
        "consumer",
        "message_id",
        "parent",
        "producer",
        "token",
    )

    def __init__(
        self,
        producer: trace.Span | None,
        parent: otel_context.Context | None,
        message_id: str | None = None,
    ) -> None:
        self.producer = producer
        self.parent = parent
        self.message_id = message_id
        self.consumer: trace.Span | None = None
        self.token: object = None
        self.attempt: trace.Span | None = None
        self.attempt_token: object = None


def error_type(exc: BaseException) -> str:
    """``error.type`` for *exc*: its fully qualified class name, as the exception event has it.

    (``ValueError`` for builtins, ``corral.ActorCrashed``, ``mypkg.errors.Bad``.)
    """
    cls = type(exc)
    module = cls.__module__
    return f"{module}.{cls.__qualname__}" if module and module != "builtins" else cls.__qualname__


def _mark_outcome(span: trace.Span, call: Call, outcome: CallStatus | None) -> None:
    # Success is the status left unset; other outcomes say what happened.
    if outcome is CallStatus.SUCCEEDED:
        return
    span.set_attribute("corral.outcome", _OUTCOME[outcome] if outcome is not None else "failed")
    exc = call.future.exception()
    if outcome is CallStatus.CANCELLED:
        span.add_event("cancelled")
    elif outcome is CallStatus.EXPIRED:
        span.add_event("deadline exceeded")
    elif exc is not None:
        span.set_attribute("error.type", error_type(exc))
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.record_exception(exc)


def _mark_stream(span: trace.Span, call: Call) -> None:
    # A streamed call: how many chunks, and how soon the first one came.
    span.set_attribute("corral.stream.chunks", call.chunks)
    first = call.first_chunk_at
    if first is not None:
        span.set_attribute("corral.stream.time_to_first_chunk", first - call.enqueued_at)


class OpenTelemetry(Instrument):
    """Traces every call from submit to the resolution of its future, and records metrics.

    A PRODUCER span ``send <actor>`` starts when a call is accepted (its
    parent is the caller's current span); a CONSUMER span ``process
    <actor>``, child of the producer span, covers the handler and is the
    current span while it runs, so spans the handler makes nest under it.
    The producer span ends when the future resolves, the consumer span when
    the handler has unwound. A crash and its restart, and a supervisor giving
    up, are spans of their own. Attribute names follow the OpenTelemetry
    messaging conventions (``messaging.system`` = ``corral``); corral's own
    are under ``corral.*`` (see ``docs/jaeger.md``).

    Metrics (when a meter provider is there): ``corral.calls`` (by actor and
    outcome), ``corral.call.duration`` and ``corral.queue.wait``
    (histograms, seconds), ``corral.queue.depth`` and ``corral.calls.in_flight``
    (gauges per actor), ``corral.restarts``.

    Every runtime installs one automatically when OpenTelemetry has been
    configured globally (by :func:`corral.telemetry.configure` or by your own
    setup); pass one in ``Runtime(instruments=[...])`` to use other providers.
    With no provider configured nothing is installed and calls pay nothing.

    Args:
        tracer_provider: Where spans go; default the global provider.
        meter_provider: Where metrics go; default the global provider.
        flush_timeout: Seconds the runtime waits at exit for the providers
            to hand buffered data to their exporters (in a worker thread).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        trace_calls: bool = True,
        record_metrics: bool = True,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.flush_timeout = flush_timeout
        self._tracer: trace.Tracer | None = None
        if trace_calls:
            self._tracer = trace.get_tracer(
                "corral", __version__, tracer_provider, schema_url=_SCHEMA_URL
            )
        self._runtimes: list[Runtime] = []
        self._static_cache: dict[
            tuple[str, type], dict[Kind | None, tuple[str, Mapping[str, Any]]]
        ] = {}
        self._supervision_spans: dict[tuple[str, str], trace.Span | None] = {}
        self._metrics = False
        if record_metrics:
            self._setup_metrics(metrics.get_meter("corral", __version__, meter_provider))

    @classmethod
    def from_globals(cls, existing: Iterable[Instrument] = ()) -> OpenTelemetry | None:
        """Return an instrument bound to the global providers, or ``None`` when there is
        nothing to report to (no provider configured) or one is registered already."""
        if any(isinstance(item, OpenTelemetry) for item in existing):
            return None
        tracing = tracing_configured()
        metering = _metering_configured()
        if not (tracing or metering):
            return None
        return cls(trace_calls=tracing, record_metrics=metering)

    def _setup_metrics(self, meter: metrics.Meter) -> None:
        self._metrics = True
        # Calls are counted here, one dict entry per actor and outcome, and
        # reported when the reader collects: an SDK counter would cost more
        # per call than the rest of the metrics together.
        self._call_counts: dict[tuple[str, str], int] = {}
        meter.create_observable_counter(
            "corral.calls",
            callbacks=[self._observe_calls],
            unit="{call}",
            description="Calls that left an actor's pile",
        )
        self._duration = meter.create_histogram(
            "corral.call.duration", unit="s", description="From acceptance to the end of a call"
        )
        self._queue_wait = meter.create_histogram(
            "corral.queue.wait", unit="s", description="Time a call waited in the mailbox"
        )
        self._restarts = meter.create_counter(
            "corral.restarts", unit="{restart}", description="Restarts done by supervisors"
        )
        meter.create_observable_gauge(
            "corral.queue.depth",
            callbacks=[self._observe_queue_depth],
            unit="{call}",
            description="Calls waiting in each actor's mailbox",
        )
        meter.create_observable_gauge(
            "corral.calls.in_flight",
            callbacks=[self._observe_in_flight],
            unit="{call}",
            description="Calls whose handler is running, per actor",
        )

    def _observe_queue_depth(
        self, options: metrics.CallbackOptions
    ) -> Iterable[metrics.Observation]:
        for runtime in list(self._runtimes):
            for ref in runtime.refs():
                yield metrics.Observation(ref.queue_depth, {"messaging.destination.name": ref.name})

    def _observe_calls(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        # Called in the reader's thread: copy before walking.
        for (actor, outcome), count in list(self._call_counts.items()):
            yield metrics.Observation(
                count, {"messaging.destination.name": actor, "corral.outcome": outcome}
            )

    def _observe_in_flight(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        for runtime in list(self._runtimes):
            for ref in runtime.refs():
                yield metrics.Observation(ref.in_flight, {"messaging.destination.name": ref.name})

    # --- runtime --------------------------------------------------------------------

    def runtime_started(self, runtime: Runtime) -> None:
        self._runtimes.append(runtime)

    async def runtime_closing(self, runtime: Runtime) -> None:
        if runtime in self._runtimes:
            self._runtimes.remove(runtime)
        for span in self._supervision_spans.values():
            if span is not None:
                span.end()
        self._supervision_spans.clear()
        await self.flush()

    async def flush(self) -> bool:
        """Hand buffered spans and metrics to the exporters, within :attr:`flush_timeout`.

        Runs the providers' ``force_flush`` in a worker thread, so a slow or
        dead collector never blocks the event loop; gives up (returning
        ``False``) when the time is out.
        """
        providers: list[Any] = [
            self._tracer_provider or trace.get_tracer_provider(),
            self._meter_provider or metrics.get_meter_provider(),
        ]
        timeout_ms = max(1, int(self.flush_timeout * 1000))
        done = True
        with anyio.move_on_after(self.flush_timeout) as scope:
            for provider in providers:
                flush = getattr(provider, "force_flush", None)
                if flush is None:
                    continue
                await anyio.to_thread.run_sync(
                    functools.partial(flush, timeout_ms), abandon_on_cancel=True
                )
        if scope.cancelled_caught:
            done = False
            logger.warning(
                "telemetry was not flushed within %ss; some spans may be lost", self.flush_timeout
            )
        return done

    # --- calls ---------------------------------------------------------------------------

    def _static(self, call: Call, kind: Kind | None) -> tuple[str, Mapping[str, Any]]:
        """The span name and the attributes every span of this actor and operation has.

        *kind* is the envelope's kind for the sending side, ``None`` for the
        processing side.
        """
        # By class too: a name can be taken again by an actor of another class.
        key = (call.actor_name, call.actor_class)
        found = self._static_cache.get(key)
        if found is None:
            if len(self._static_cache) >= _STATIC_CACHE_SIZE:
                # Actors with names of their own (one per user, say) come
                # and go: start afresh rather than keep every name forever.
                self._static_cache.clear()
            found = self._static_cache[key] = span_statics(*key)
        return found[kind]

    def call_submitted(self, call: Call) -> None:
        tracer = self._tracer
        if tracer is None:
            return
        envelope = call.envelope
        if envelope.trace_context:
            # The call came from elsewhere with its producer's context: the
            # consumer span continues that trace, and there is no local send.
            call.instrument_data = _CallSpans(None, propagate.extract(envelope.trace_context))
            return
        name, attributes = self._static(call, envelope.kind)
        span = tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attributes)
        # Per-call details only for spans that are recorded: a call in a
        # trace the sampler dropped pays for the sampling decision and no more.
        message_id = None
        if span.is_recording():
            message_id = str(envelope.id)
            span.set_attributes(
                {
                    "messaging.message.id": message_id,
                    "corral.message.type": type(envelope.payload).__qualname__,
                }
            )
            span.add_event("enqueued", {"corral.queue.depth": call.actor_ref.queue_depth})
        call.instrument_data = _CallSpans(span, None, message_id)

    def call_started(self, call: Call) -> None:
        tracer = self._tracer
        data = call.instrument_data
        if tracer is None or not isinstance(data, _CallSpans):
            return
        producer = data.producer
        parent: otel_context.Context | None
        if producer is not None:
            parent = trace.set_span_in_context(producer)
            if not producer.is_recording():
                # Sampled out at the send: the consumer would be too (parent
                # based). The producer's context is made current instead, so
                # the handler's own spans follow the same decision.
                data.token = otel_context.attach(parent)
                return
        else:
            parent = data.parent
        name, attributes = self._static(call, None)
        envelope = call.envelope
        waited = (call.started_at or call.enqueued_at) - call.enqueued_at
        # All attributes at the start: the SDK checks them in one pass.
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                **attributes,
                "messaging.message.id": data.message_id or str(envelope.id),
                "corral.message.type": type(envelope.payload).__qualname__,
                "corral.attempt": envelope.attempt,
                "corral.queue.wait": waited,
            },
        )
        if span.is_recording():
            span.add_event("dequeued", {"corral.queue.wait": waited})
        data.consumer = span
        # Current for the handler, in the worker's own context only: two
        # calls served at once run in two workers, each with its own context.
        data.token = otel_context.attach(trace.set_span_in_context(span))

    def call_resolved(self, call: Call) -> None:
        data = call.instrument_data
        if not isinstance(data, _CallSpans):
            return
        producer = data.producer
        if producer is not None and producer.is_recording():
            _mark_outcome(producer, call, call.outcome)
            if call.is_stream:
                _mark_stream(producer, call)
            producer.end()

    def call_finished(self, call: Call) -> None:
        data = call.instrument_data
        if isinstance(data, _CallSpans):
            if data.attempt is not None:  # cut short mid-attempt
                self.attempt_finished(call, None)
            if data.token is not None:
                otel_context.detach(data.token)  # type: ignore[arg-type]
                data.token = None
            consumer = data.consumer
            if consumer is not None and consumer.is_recording():
                _mark_outcome(consumer, call, call.status)
                if call.is_stream:
                    _mark_stream(consumer, call)
                consumer.end()
            call.instrument_data = None
        if self._metrics:
            self._record(call)

    def call_interrupted(self, call: Call, error: BaseException) -> None:
        # This run of the call ends here; the next one gets a consumer span
        # of its own under the same producer span.
        data = call.instrument_data
        if not isinstance(data, _CallSpans):
            return
        if data.attempt is not None:
            self.attempt_finished(call, error)
        if data.token is not None:
            otel_context.detach(data.token)  # type: ignore[arg-type]
            data.token = None
        consumer, data.consumer = data.consumer, None
        if consumer is not None and consumer.is_recording():
            consumer.set_attributes(
                {"corral.outcome": "interrupted", "error.type": error_type(error)}
            )
            consumer.set_status(Status(StatusCode.ERROR, f"the actor crashed: {error}"))
            consumer.record_exception(error)
            consumer.add_event("requeued", {"corral.attempt": call.envelope.attempt + 1})
            consumer.end()

    # --- attempts, retries and waits (reported by call policies) ------------------------

    def attempt_started(self, call: Call) -> None:
        tracer = self._tracer
        data = call.instrument_data
        if tracer is None or not isinstance(data, _CallSpans):
            return
        consumer = data.consumer
        if consumer is None or not consumer.is_recording():
            return
        number = call.envelope.attempt
        span = tracer.start_span(
            f"attempt {number}",
            context=trace.set_span_in_context(consumer),
            attributes={"corral.attempt": number, "messaging.destination.name": call.actor_name},
        )
        data.attempt = span
        # The attempt is current while it runs: an HTTP request made by the
        # handler nests under it.
        data.attempt_token = otel_context.attach(trace.set_span_in_context(span))

    def attempt_finished(self, call: Call, error: BaseException | None) -> None:
        data = call.instrument_data
        if not isinstance(data, _CallSpans) or data.attempt is None:
            return
        span, data.attempt = data.attempt, None
        if data.attempt_token is not None:
            otel_context.detach(data.attempt_token)  # type: ignore[arg-type]
            data.attempt_token = None
        if error is not None:
            span.set_attribute("error.type", error_type(error))
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()

    def retry_scheduled(self, call: Call, delay: float, error: BaseException) -> None:
        data = call.instrument_data
        consumer = data.consumer if isinstance(data, _CallSpans) else None
        if consumer is not None and consumer.is_recording():
            consumer.add_event(
                "retry scheduled",
                {
                    "corral.retry.delay": delay,
                    "corral.retry.reason": error_type(error),
                    "corral.attempt": call.envelope.attempt,
                },
            )

    def call_waited(self, call: Call, reason: str, seconds: float) -> None:
        data = call.instrument_data
        consumer = data.consumer if isinstance(data, _CallSpans) else None
        if consumer is not None and consumer.is_recording():
            consumer.add_event(f"{reason} wait", {"corral.wait": seconds})

    def _record(self, call: Call) -> None:
        actor = call.actor_name
        status = call.status
        outcome = _OUTCOME[status] if status is not None else "failed"
        counts = self._call_counts
        key = (actor, outcome)
        if key not in counts and len(counts) >= _COUNTS_SIZE:
            self._forget_gone_actors()
        counts[key] = counts.get(key, 0) + 1
        where = {"messaging.destination.name": actor}
        finished = call.finished_at
        if finished is not None:
            self._duration.record(max(0.0, finished - call.enqueued_at), where)
        if call.started_at is not None:
            self._queue_wait.record(max(0.0, call.started_at - call.enqueued_at), where)

    def _forget_gone_actors(self) -> None:
        # Counts of actors no runtime has any more stop being reported (a
        # later actor of the same name starts again from zero, which readers
        # take as a counter reset).
        alive = {ref.name for runtime in self._runtimes for ref in runtime.refs()}
        for key in [key for key in self._call_counts if key[0] not in alive]:
            del self._call_counts[key]

    # --- supervision -----------------------------------------------------------------------

    def supervisor_event(self, event: SupervisorEvent) -> None:
        kind = event.kind
        if kind is _EV.CHILD_RESTARTED and self._metrics:
            self._restarts.add(
                1, {"corral.supervisor": event.supervisor, "corral.child": event.child or ""}
            )
        tracer = self._tracer
        if tracer is None:
            return
        key = (event.supervisor, event.child or "")
        attributes = {
            "corral.supervisor": event.supervisor,
            "corral.strategy": event.strategy.value,
            "corral.child": event.child or "",
            "corral.restarts": event.restarts,
        }
        spans = self._supervision_spans
        if kind in (_EV.CHILD_CRASHED, _EV.CHILD_EXITED):
            previous = spans.pop(key, None)
            if previous is not None:
                previous.end()
            # Its own trace: a crash is not part of any caller's request.
            span = tracer.start_span(
                f"supervise {event.child}",
                context=otel_context.Context(),
                attributes={**attributes, "corral.event": kind.value},
            )
            if event.error is not None:
                span.set_attribute("error.type", error_type(event.error))
                span.set_status(Status(StatusCode.ERROR, str(event.error)))
                span.record_exception(event.error)
            spans[key] = span
        elif kind is _EV.RESTART_SCHEDULED:
            open_span = spans.get(key)
            if open_span is not None:
                open_span.add_event(
                    "restart scheduled", {"corral.restart.delay": event.delay or 0.0}
                )
        elif kind in (_EV.CHILD_RESTARTED, _EV.CHILD_STOPPED):
            open_span = spans.pop(key, None)
            if open_span is not None:
                outcome = "restarted" if kind is _EV.CHILD_RESTARTED else "stopped"
                open_span.set_attributes(
                    {"corral.restarts": event.restarts, "corral.outcome": outcome}
                )
                open_span.add_event(outcome)
                open_span.end()
        elif kind is _EV.GAVE_UP:
            # The crash that was one too many ends here, with the give-up as
            # its outcome, not when the runtime closes.
            for other in [k for k in spans if k[0] == event.supervisor and k[1]]:
                open_span = spans.pop(other)
                if open_span is not None:
                    open_span.set_attribute("corral.outcome", "gave up")
                    open_span.add_event("gave up")
                    open_span.end()
            span = tracer.start_span(
                f"give up {event.supervisor}",
                context=otel_context.Context(),
                attributes={**attributes, "corral.event": kind.value},
            )
            error = event.error
            span.set_status(Status(StatusCode.ERROR, f"restart intensity exceeded: {error!r}"))
            if error is not None:
                span.set_attribute("error.type", error_type(error))
            spans[(event.supervisor, "")] = span
        elif kind is _EV.ESCALATED:
            open_span = spans.pop((event.supervisor, ""), None)
            if open_span is not None:
                open_span.add_event("escalated")
                open_span.end()


def span_statics(name: str, actor_class: type) -> dict[Kind | None, tuple[str, Mapping[str, Any]]]:
    """The span names and fixed attributes of an actor's calls, by envelope kind.

    Each :class:`Kind` maps to its producer span (``send <name>``); ``None``
    to the consumer span (``process <name>``). :class:`OpenTelemetry` caches
    them per actor; the benchmark's tracing ceilings use the same ones.
    """
    common = {
        "messaging.system": "corral",
        "messaging.destination.name": name,
        "corral.actor.class": actor_class.__qualname__,
    }
    # The conventions name a span "{messaging.operation.name} {destination}";
    # what kind of send it was (request, one-way, system) is corral.kind.
    statics: dict[Kind | None, tuple[str, Mapping[str, Any]]] = {
        kind: (
            f"send {name}",
            {
                **common,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
                "corral.kind": kind.value,
            },
        )
        for kind in Kind
    }
    statics[None] = (
        f"process {name}",
        {
            **common,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
        },
    )
    return statics


def tracer_for(call: Call | None) -> trace.Tracer | None:
    """The tracer of the runtime serving *call*, or ``None`` when it is not traced.

    Layers that add spans of their own (HTTP requests, model calls) use it,
    so their spans go where the call's spans go.
    """
    if call is None:
        return None
    return tracer_of(call.instruments)


def tracer_of(instruments: Iterable[Instrument]) -> trace.Tracer | None:
    """The tracer of the first tracing :class:`OpenTelemetry` among *instruments*, or ``None``."""
    for item in instruments:
        if isinstance(item, OpenTelemetry) and item._tracer is not None:
            return item._tracer
    return None


#: What :func:`client_span` gives for a call that is not traced: one, reused.
UNTRACED: Final[contextlib.nullcontext[None]] = contextlib.nullcontext()


def client_span(
    name: str, attributes: Mapping[str, Any]
) -> contextlib.AbstractContextManager[trace.Span | None]:
    """A CLIENT span for an outgoing request of the current call, current while it runs.

    Gives ``None`` (and costs a lookup) when the call is not traced. An
    exception marks the span as failed and goes on.
    """
    tracer = tracer_for(current_call())
    if tracer is None:
        return UNTRACED
    return _client_span(tracer, name, attributes)


def is_traced() -> bool:
    """Whether the current call is traced: build a span's attributes only if so."""
    return tracer_for(current_call()) is not None


@contextlib.contextmanager
def _client_span(
    tracer: trace.Tracer, name: str, attributes: Mapping[str, Any]
) -> Iterator[trace.Span]:
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        if span.is_recording() and isinstance(exc, Exception):
            # The HTTP conventions: an error status is its code; else the class.
            status = exc.status if isinstance(exc, HttpStatusError) else None
            span.set_attribute("error.type", error_type(exc) if status is None else str(status))
            span.set_status(Status(StatusCode.ERROR, str(exc)))
        raise
    finally:
        otel_context.detach(token)
        span.end()


def default_instrument(existing: list[Instrument]) -> Instrument | None:
    """The OpenTelemetry instrument every runtime adds (``corral._core``'s DEFAULT_INSTRUMENTS).

    One reading the globally configured providers, unless *existing* has an
    OpenTelemetry instrument already or nothing is configured.
    """
    return OpenTelemetry.from_globals(existing)
