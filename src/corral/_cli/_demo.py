"""``corral demo``: a fake provider with faults, a supervision tree, a few hundred calls.

What fails is decided by the seed and the call, never by timing: the fake
server draws each request's fault from its body (which names the call) and
how often it saw that body (the attempt), and the flaky tool crashes on the
queries the seed picks. So the same seed gives the same counts and outcome on
every run, however the calls interleave — as long as the circuit stays
closed (it opens on failures in a row, in the order they happen to arrive).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import random
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import anyio
import attrs
from opentelemetry.trace import Status, StatusCode

import corral
from corral.telemetry import ExportStatistics, Telemetry, configure, read_otlp_json
from corral.testing import FakeLLMServer, Faults

from . import CommandError
from ._invocation import command, quote
from ._view import ActorRow, Columns, Snapshot, View
from ._waterfall import draw_trace

__all__ = ["DemoResult", "run_demo"]

#: Errors the demo provokes on purpose; any other error is a bug (a 404 from
#: a wrong URL, a 401, a malformed reply...), and makes it exit 1.
EXPECTED = (
    corral.CircuitOpen,
    corral.DeadlineExceeded,
    corral.Crash,
    corral.ActorStopped,
)
#: The statuses its fake server answers with on purpose.
EXPECTED_STATUSES = frozenset({429, 500, 503})


def intended(error: BaseException) -> bool:
    """Whether *error* is one of the failures the demo provokes."""
    if isinstance(error, corral.HttpStatusError):
        return error.status in EXPECTED_STATUSES
    return isinstance(error, EXPECTED)


_ACTORS = ("chat", "embed", "tool")
_MAX_ATTEMPTS = 5


def chance(seed: int, *key: object) -> float:
    """A number in [0, 1) fixed by *seed* and *key*, the same in every process."""
    # Seeding with a str hashes it with SHA-512 (not hash(), which varies per process).
    return random.Random(":".join(map(str, (seed, *key)))).random()


@corral.message(name="demo.ToolCall")
class ToolCall:
    """A call to the demo's flaky tool."""

    query: str


class FlakyTool(corral.Actor[ToolCall, str]):
    """A tool that crashes on the queries the seed picks; its supervisor restarts it."""

    def __init__(self, seed: int, crash_rate: float) -> None:
        self.seed = seed
        self.crash_rate = crash_rate

    async def handle(self, msg: ToolCall) -> str:
        await anyio.sleep(0.005 + chance(self.seed, "tool time", msg.query) * 0.01)
        if chance(self.seed, "tool crash", msg.query) < self.crash_rate:
            raise corral.Crash(f"the tool lost its state while answering {msg.query!r}")
        return f"tool result for {msg.query}"

    def retry_interrupted(self, msg: ToolCall, error: BaseException) -> bool:
        # Looking a query up twice does no harm. Running the calls cut short
        # by another call's crash again keeps which calls fail a matter of
        # the seed, not of which calls happened to run beside a crash.
        return True


def demo_tree(
    base_url: str,
    seed: int,
    fail_rate: float,
    *,
    export: bool = False,
    shared: str | None = None,
    actors: Mapping[str, Callable[[], corral.Actor[Any, Any]]] | None = None,
) -> tuple[corral.Supervisor, corral.RateLimiter, corral.CircuitBreaker]:
    """The demo's tree (chat and embeddings under one rate limiter and circuit, a flaky tool
    under a supervisor of its own), its limiter and its breaker.

    *export* serves the three actors to a cluster, whose nodes share the
    limiter as *shared*; *actors* replaces the default factories by name.
    """
    limiter = corral.RateLimiter(requests=200, per=1.0, burst=20, max_concurrency=24, shared=shared)
    breaker = corral.CircuitBreaker(failure_threshold=12, cooldown=0.5, name="fake-llm")
    policy = corral.ServicePolicy(
        retry=corral.RetryPolicy(max_attempts=_MAX_ATTEMPTS, min_delay=0.05, max_delay=0.4),
        rate_limiter=limiter,
        breaker=breaker,
    )

    def chat() -> corral.OpenAIChat:
        return corral.OpenAIChat(model="demo-chat", base_url=base_url, api_key_env=None)

    def embed() -> corral.OpenAIEmbeddings:
        return corral.OpenAIEmbeddings(model="demo-embed", base_url=base_url, api_key_env=None)

    factories: dict[str, Callable[[], corral.Actor[Any, Any]]] = {
        "chat": chat,
        "embed": embed,
        "tool": lambda: FlakyTool(seed, 0.02 + fail_rate / 5),
    }
    factories.update(actors or {})
    tree = corral.Supervisor(
        max_restarts=20,
        within=10.0,
        children=[
            corral.child(
                factories["chat"], name="chat", max_concurrency=16, policy=policy, export=export
            ),
            corral.child(
                factories["embed"], name="embed", max_concurrency=8, policy=policy, export=export
            ),
            corral.Supervisor(
                name="tools",
                strategy=corral.ONE_FOR_ONE,
                max_restarts=200,
                within=10.0,
                children=[
                    corral.child(factories["tool"], name="tool", max_concurrency=4, export=export)
                ],
            ),
        ],
    )
    return tree, limiter, breaker


def demo_call(seed: int, i: int) -> tuple[str, Any]:
    """Call *i* of the demo: the actor it goes to and its message (the seed's choice)."""
    pick = chance(seed, "kind", i)
    if pick < 0.6:
        # Each body names its call: the fake server draws faults from it.
        request = corral.ChatRequest(
            messages=(corral.ChatMessage(role="user", content=f"question {i}: what is {i}?"),),
            max_tokens=32,
        )
        return "chat", request
    if pick < 0.85:
        return "embed", corral.EmbeddingsRequest(inputs=(f"document {i}", f"summary {i}"))
    return "tool", ToolCall(query=f"q{i}")


def demo_faults(fail_rate: float) -> Faults:
    """What the demo's fake server gets wrong, and how often."""
    return Faults(
        rate_429=fail_rate * 0.4,
        retry_after=0.2,
        rate_500=fail_rate * 0.3,
        rate_503=fail_rate * 0.3,
        rate_slow=0.02,
        slow_delay=0.4,
    )


class _Counters(corral.Instrument):
    """Counts retries per actor for the live view."""

    def __init__(self) -> None:
        self.retries: collections.Counter[str] = collections.Counter()

    def retry_scheduled(self, call: corral.Call, delay: float, error: BaseException) -> None:
        self.retries[call.actor_name] += 1


class CallRun:
    """The demo's calls: sent 48 at a time, each under a root span, their outcomes tallied.

    What the single-process demo and ``--nodes`` share; *send* submits one
    message to the actor it names and returns the call's future.
    """

    def __init__(
        self,
        calls: int,
        seed: int,
        tracer: Any,
        send: Callable[[str, Any], Awaitable[corral.Future[Any]]],
    ) -> None:
        self.calls = calls
        self.seed = seed
        self._tracer = tracer
        self._send = send
        self.done = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        #: Per actor: ``ok`` and ``failed`` as the callers saw them.
        self.by_actor: dict[str, collections.Counter[str]] = {
            name: collections.Counter() for name in _ACTORS
        }
        self.unexpected: list[str] = []
        self.futures: list[corral.Future[Any]] = []
        self.all_done = anyio.Event()
        self.half_done = anyio.Event()
        self.elapsed = 0.0

    async def _one(self, i: int, sem: anyio.Semaphore) -> None:
        kind, msg = demo_call(self.seed, i)
        async with sem:
            with self._tracer.start_as_current_span(
                f"demo request {i}", attributes={"demo.kind": kind}
            ) as span:
                fut = await self._send(kind, msg)
                self.futures.append(fut)
                await fut.wait()
                error = fut.exception()
                if error is not None:
                    # The request's outcome is the call's: corral trace
                    # reads a trace's outcome from its root span.
                    span.set_status(Status(StatusCode.ERROR, str(error)))
        if error is None:
            self.outcomes["succeeded"] += 1
            self.by_actor[kind]["ok"] += 1
        else:
            self.by_actor[kind]["failed"] += 1
            if intended(error):
                self.outcomes[type(error).__name__] += 1
            else:
                self.unexpected.append(f"{kind}: {type(error).__name__}: {error}")
        self.done += 1
        if self.done * 2 >= self.calls:
            self.half_done.set()
        if self.done == self.calls:
            self.all_done.set()

    async def run(
        self,
        view: View,
        snapshot: Callable[[], Snapshot],
        *beside: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        """Send every call, redraw *view*, run *beside* tasks, until every call has ended."""
        started = time.monotonic()
        with view:
            async with anyio.create_task_group() as tg:
                sem = anyio.Semaphore(48)
                for i in range(self.calls):
                    tg.start_soon(self._one, i, sem)
                for task in beside:
                    tg.start_soon(task)

                async def refresh() -> None:
                    while True:
                        view.update(snapshot())
                        await anyio.sleep(0.125)

                tg.start_soon(refresh)
                await self.all_done.wait()
                self.elapsed = time.monotonic() - started
                tg.cancel_scope.cancel()
            view.update(snapshot(), final=True)

    def result(self, telemetry: Telemetry, rows: list[ActorRow], circuit_opened: int) -> DemoResult:
        """What happened, before the traces are read."""
        outcomes = collections.Counter(self.outcomes)
        return DemoResult(
            calls=self.calls,
            seed=self.seed,
            succeeded=outcomes.pop("succeeded", 0),
            failed=dict(outcomes),
            unexpected=self.unexpected,
            pending=sum(1 for f in self.futures if not f.done()) + (self.calls - len(self.futures)),
            trace_file="",
            export=telemetry.statistics(),
            slowest=[],
            elapsed=self.elapsed,
            spans=0,
            circuit_opened=circuit_opened,
            rows=rows,
        )


@attrs.frozen
class DemoResult:
    """What the demo did; ``exit_code`` is 0 when every call ended as expected."""

    calls: int
    seed: int
    succeeded: int
    failed: dict[str, int]
    unexpected: list[str]
    pending: int
    trace_file: str
    #: What reached the OTLP endpoint (``endpoint`` ``None`` without one).
    export: ExportStatistics
    slowest: list[str]
    #: Seconds from the first call to the last outcome (not the flush at exit).
    elapsed: float
    spans: int
    circuit_opened: int
    rows: list[ActorRow]

    @property
    def exit_code(self) -> int:
        return 0 if not self.unexpected and self.pending == 0 else 1


async def run_demo(
    *,
    calls: int = 300,
    seed: int = 1,
    fail_rate: float = 0.15,
    trace_file: str = "corral-demo-traces.jsonl",
    otlp: str | None = None,
    port: int = 0,
    out: TextIO | None = None,
    live: bool | None = None,
    width: int | None = None,
) -> DemoResult:
    """Run the demo and return what happened (see ``corral demo --help``).

    *width* is the columns the output may use (default: unlimited, and for
    the live view the terminal's).

    Raises:
        CommandError: The fake server cannot listen on *port*.
    """
    if calls < 1:
        raise ValueError(f"--calls must be >= 1, got {calls}")
    if not 0 <= fail_rate <= 1:
        raise ValueError(f"--fail-rate must be between 0 and 1, got {fail_rate}")
    out = sys.stdout if out is None else out  # the stdout of the call, not of the import
    live = out.isatty() if live is None else live
    with _quiet_corral_logger():
        return await _demo(
            calls=calls,
            seed=seed,
            fail_rate=fail_rate,
            trace_file=trace_file,
            otlp=otlp,
            port=port,
            out=out,
            live=live,
            width=width,
        )


@contextlib.contextmanager
def _quiet_corral_logger() -> Iterator[None]:
    # The demo shows crashes, restarts and lost spans itself; the corral
    # logger would print each one over the live view. Unless the program set
    # the logger up, it is quiet while the demo runs (and only then).
    logger = logging.getLogger("corral")
    if logger.handlers:
        yield
        return
    handler = logging.NullHandler()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


async def _demo(
    *,
    calls: int,
    seed: int,
    fail_rate: float,
    trace_file: str,
    otlp: str | None,
    port: int,
    out: TextIO,
    live: bool,
    width: int | None,
) -> DemoResult:
    path = Path(trace_file)
    await anyio.Path(path).unlink(missing_ok=True)
    endpoint = otlp or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    exporters: list[str] = ["file"] + (["otlp"] if endpoint else [])
    server = FakeLLMServer(
        latency=0.02,
        jitter=0.04,
        faults=demo_faults(fail_rate),
        seed=seed,
        port=port,
        faults_by="body",
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(server)
        except OSError as exc:
            raise CommandError(
                f"{exc.strerror}; pick another --port, or leave it out to use a free one"
            ) from exc
        telemetry = configure(
            service_name="corral-demo",
            exporter=exporters,
            trace_file=path,
            endpoint=otlp,
            set_global=False,
            metrics=False,
            flush_timeout=3.0,
        )
        result = await _run(
            server,
            telemetry,
            calls=calls,
            seed=seed,
            fail_rate=fail_rate,
            out=out,
            live=live,
            width=width,
        )
    spans = read_otlp_json(path)
    roots = [s for s in spans if s.name.startswith("demo request")]
    slowest: list[str] = []
    if roots:
        worst = max(roots, key=lambda s: s.end_ns - s.start_ns)
        slowest = draw_trace(
            [s for s in spans if s.trace_id == worst.trace_id],
            width=None if width is None else width - 2,  # printed indented by two
        )
    result = attrs.evolve(result, trace_file=str(path), spans=len(spans), slowest=slowest)
    _summary(out, result, width)
    return result


async def _run(
    server: FakeLLMServer,
    telemetry: Telemetry,
    *,
    calls: int,
    seed: int,
    fail_rate: float,
    out: TextIO,
    live: bool,
    width: int | None,
) -> DemoResult:
    counters = _Counters()
    tracer = telemetry.tracer_provider.get_tracer("corral.demo")
    tree, limiter, breaker = demo_tree(server.base_url, seed, fail_rate)
    columns = Columns.for_run(_ACTORS, calls, _MAX_ATTEMPTS)
    async with corral.Runtime(tree, instruments=[telemetry.instrument(), counters]) as rt:
        refs = {name: rt.ref(name) for name in _ACTORS}

        def rows() -> list[ActorRow]:
            out_rows = []
            for name, ref in refs.items():
                st = ref.status()
                out_rows.append(
                    ActorRow(
                        actor=name,
                        queued=st.queue_depth,
                        running=st.in_flight,
                        ok=st.counts[corral.CallStatus.SUCCEEDED],
                        failed=st.counts[corral.CallStatus.FAILED]
                        + st.counts[corral.CallStatus.EXPIRED],
                        retries=counters.retries[name],
                        restarts=st.restarts,
                    )
                )
            return out_rows

        def snapshot() -> Snapshot:
            lim = limiter.status()
            return Snapshot(
                rows=rows(),
                waiting=lim.waiting,
                paused_for=lim.paused_for,
                circuit=breaker.state.value,
                done=run.done,
                total=calls,
            )

        async def send(kind: str, msg: Any) -> corral.Future[Any]:
            return await refs[kind].submit(msg, timeout=10)

        run = CallRun(calls, seed, tracer, send)
        await run.run(View(out, live, columns, width), snapshot)
        final_rows = rows()
    await telemetry.aclose()
    return run.result(telemetry, final_rows, breaker.status().opened)


def summary_table(rows: list[ActorRow]) -> list[str]:
    """The per-actor table printed at the end: what the same seed reproduces."""
    lines = [f"{'actor':<8}{'succeeded':>10}{'failed':>8}{'retries':>9}{'restarts':>10}"]
    lines.extend(f"{r.actor:<8}{r.ok:>10}{r.failed:>8}{r.retries:>9}{r.restarts:>10}" for r in rows)
    return lines


def _summary(out: TextIO, result: DemoResult, width: int | None) -> None:
    def say(line: str = "", *, prose: bool = False) -> None:
        # Sentences wrap to the terminal; commands and drawn rows never do
        # (they are copied, or were drawn to fit).
        if prose and width is not None and len(line) > width:
            line = textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False)
        print(line, file=out)

    say()
    for line in summary_table(result.rows):
        say(line)
    failed = ", ".join(f"{n} {k}" for k, n in sorted(result.failed.items())) or "none"
    say()
    say(
        f"{result.calls} calls, seed {result.seed}: {result.succeeded} succeeded, "
        f"{result.pending} pending",
        prose=True,
    )
    say(f"failed as the demo intends: {failed}", prose=True)
    say(f"the calls took {result.elapsed:.1f}s")
    if result.circuit_opened:
        times = {1: "once", 2: "twice"}.get(result.circuit_opened, f"{result.circuit_opened} times")
        say(
            f"the circuit opened {times}: which calls then failed fast depends on timing, "
            "so another run with this seed may differ",
            prose=True,
        )
    if result.unexpected:
        say(f"UNEXPECTED failures ({len(result.unexpected)}):")
        for line in result.unexpected[:10]:
            say(f"  {line}")
    if result.slowest:
        say()
        say("the slowest call, as traced:")
        for line in result.slowest:
            say(f"  {line}")
    corral_ = command()
    trace_file = quote(result.trace_file)
    say()
    say(
        f"{result.spans} spans written to {result.trace_file} (OTLP JSON); look at them:",
        prose=True,
    )
    say(f"  {corral_} trace {trace_file} --slowest")
    if result.succeeded < result.calls:
        say(f"  {corral_} trace {trace_file} --errors")
    export = result.export
    if export.endpoint is None:
        say("to see them in Jaeger, start it:")
        say("  docker run --rm -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one")
        say("and send them to it:")
        say(f"  {corral_} demo --otlp http://localhost:4318")
    elif export.failed or export.pending or export.error is not None:
        # Only what the collector accepted counts as sent.
        reason = export.error or (
            f"no answer yet for {export.pending} spans" if export.pending else "spans were lost"
        )
        counts = [f"{export.exported} spans sent"] if export.exported else []
        counts += [f"{export.failed} lost"] if export.failed else []
        counts += [f"{export.pending} unanswered"] if export.pending else []
        detail = f" ({', '.join(counts)})" if export.exported else ""
        say(f"could not reach {export.endpoint}: {reason}{detail}", prose=True)
    else:
        say(f"sent {export.exported} spans to {export.endpoint}", prose=True)
