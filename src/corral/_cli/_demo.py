"""``corral demo``: a fake provider with faults, a supervision tree, a few hundred calls."""

from __future__ import annotations

import collections
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
import attrs

import corral
from corral.telemetry import configure, read_otlp_json
from corral.testing import FakeLLMServer, Faults

from ._waterfall import draw_trace

__all__ = ["DemoResult", "run_demo"]

#: Errors the demo provokes on purpose; any other error is a bug.
EXPECTED = (
    corral.ServiceError,
    corral.CircuitOpen,
    corral.DeadlineExceeded,
    corral.Crash,
    corral.ActorStopped,
)


@corral.message(name="demo.ToolCall")
class ToolCall:
    """A call to the demo's flaky tool."""

    query: str


class FlakyTool(corral.Actor[ToolCall, str]):
    """A tool that crashes now and then; its supervisor restarts it."""

    def __init__(self, rng: random.Random, crash_rate: float) -> None:
        self.rng = rng
        self.crash_rate = crash_rate

    async def handle(self, msg: ToolCall) -> str:
        await anyio.sleep(0.005 + self.rng.random() * 0.01)
        if self.rng.random() < self.crash_rate:
            raise corral.Crash(f"the tool lost its state while answering {msg.query!r}")
        return f"tool result for {msg.query}"


class _Counters(corral.Instrument):
    """Counts retries and restarts per actor for the live view."""

    def __init__(self) -> None:
        self.retries: collections.Counter[str] = collections.Counter()
        self.restarts: collections.Counter[str] = collections.Counter()

    def retry_scheduled(self, call: corral.Call, delay: float, error: BaseException) -> None:
        self.retries[call.actor_name] += 1

    def supervisor_event(self, event: corral.SupervisorEvent) -> None:
        if event.kind is corral.SupervisorEventKind.CHILD_RESTARTED and event.child:
            self.restarts[event.child] += 1


@attrs.define
class DemoResult:
    """What the demo did; ``exit_code`` is 0 when every call ended as expected."""

    calls: int
    succeeded: int
    failed: dict[str, int]
    unexpected: list[str]
    pending: int
    trace_file: str
    otlp: str | None
    slowest: list[str]
    elapsed: float
    spans: int

    @property
    def exit_code(self) -> int:
        return 0 if not self.unexpected and self.pending == 0 else 1


class _View:
    """The live view (rich) on a terminal, plain progress lines otherwise."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.live = live
        self._last_line = 0.0
        self._live: Any = None

    def __enter__(self) -> _View:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.out), refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(
        self, rows: list[dict[str, Any]], done: int, total: int, final: bool = False
    ) -> None:
        if self._live is not None:
            self._live.update(self._render(rows, done, total))
            return
        now = time.monotonic()
        if not final and now - self._last_line < 1.0:
            return
        self._last_line = now
        parts = " | ".join(
            f"{r['actor']} q={r['queued']} run={r['running']} ok={r['ok']} "
            f"fail={r['failed']} retry={r['retries']} restart={r['restarts']}"
            for r in rows
        )
        print(f"progress {done}/{total} | {parts}", file=self.out, flush=True)

    @staticmethod
    def _render(rows: list[dict[str, Any]], done: int, total: int) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table(title="corral demo", expand=False)
        for column in (
            "actor",
            "queue",
            "run",
            "ok",
            "fail",
            "retry",
            "restart",
            "limiter",
            "circuit",
        ):
            table.add_column(column, justify="left" if column in ("actor", "limiter") else "right")
        for r in rows:
            table.add_row(
                r["actor"],
                str(r["queued"]),
                str(r["running"]),
                str(r["ok"]),
                str(r["failed"]),
                str(r["retries"]),
                str(r["restarts"]),
                r["limit"],
                r["circuit"],
            )
        bar = ProgressBar(total=total, completed=done, width=50)
        return Group(table, bar, f"{done}/{total} calls done")


async def run_demo(
    *,
    calls: int = 300,
    seed: int = 1,
    fail_rate: float = 0.15,
    trace_file: str = "corral-demo-traces.jsonl",
    otlp: str | None = None,
    port: int = 0,
    out: TextIO = sys.stdout,
    live: bool | None = None,
) -> DemoResult:
    """Run the demo and return what happened (see ``corral demo --help``)."""
    if calls < 1:
        raise ValueError(f"--calls must be >= 1, got {calls}")
    if not 0 <= fail_rate <= 1:
        raise ValueError(f"--fail-rate must be between 0 and 1, got {fail_rate}")
    live = out.isatty() if live is None else live
    # The demo shows crashes and restarts itself; the corral logger would
    # print each one's traceback over the live view.
    corral_logger = logging.getLogger("corral")
    if not corral_logger.handlers:
        corral_logger.addHandler(logging.NullHandler())
        corral_logger.propagate = False
    rng = random.Random(seed)
    path = Path(trace_file)
    await anyio.Path(path).unlink(missing_ok=True)
    endpoint = otlp or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    exporters: list[str] = ["file"] + (["otlp"] if endpoint else [])
    telemetry = configure(
        service_name="corral-demo",
        exporter=exporters,
        trace_file=path,
        endpoint=otlp,
        set_global=False,
        metrics=False,
        flush_timeout=3.0,
    )
    counters = _Counters()
    faults = Faults(
        rate_429=fail_rate * 0.4,
        retry_after=0.2,
        rate_500=fail_rate * 0.3,
        rate_503=fail_rate * 0.3,
        rate_slow=0.02,
        slow_delay=0.4,
    )
    outcomes: collections.Counter[str] = collections.Counter()
    unexpected: list[str] = []
    futures: list[corral.Future[Any]] = []
    tracer = telemetry.tracer_provider.get_tracer("corral.demo")
    started = time.monotonic()
    limiter = corral.RateLimiter(requests=200, per=1.0, burst=20, max_concurrency=24)
    breaker = corral.CircuitBreaker(failure_threshold=12, cooldown=0.5, name="fake-llm")
    policy = corral.ServicePolicy(
        retry=corral.RetryPolicy(max_attempts=5, min_delay=0.05, max_delay=0.4),
        rate_limiter=limiter,
        breaker=breaker,
    )
    async with FakeLLMServer(
        latency=0.02, jitter=0.04, faults=faults, seed=seed, port=port
    ) as server:

        def chat() -> corral.OpenAIChat:
            return corral.OpenAIChat(model="demo-chat", base_url=server.base_url, api_key_env=None)

        def embed() -> corral.OpenAIEmbeddings:
            return corral.OpenAIEmbeddings(
                model="demo-embed", base_url=server.base_url, api_key_env=None
            )

        tree = corral.Supervisor(
            max_restarts=20,
            within=10.0,
            children=[
                corral.child(chat, name="chat", max_concurrency=16, policy=policy),
                corral.child(embed, name="embed", max_concurrency=8, policy=policy),
                corral.Supervisor(
                    name="tools",
                    strategy=corral.ONE_FOR_ONE,
                    max_restarts=200,
                    within=10.0,
                    children=[
                        corral.child(
                            lambda: FlakyTool(random.Random(rng.random()), 0.02 + fail_rate / 5),
                            name="tool",
                            max_concurrency=4,
                        )
                    ],
                ),
            ],
        )
        async with corral.Runtime(tree, instruments=[telemetry.instrument(), counters]) as rt:
            refs = {name: rt.ref(name) for name in ("chat", "embed", "tool")}

            def rows() -> list[dict[str, Any]]:
                out_rows = []
                lim = limiter.status()
                limit = f"{lim.waiting} wait" + (
                    f", paused {lim.paused_for:.1f}s" if lim.paused_for else ""
                )
                for name, ref in refs.items():
                    st = ref.status()
                    out_rows.append(
                        {
                            "actor": name,
                            "queued": st.queue_depth,
                            "running": st.in_flight,
                            "ok": st.counts[corral.CallStatus.SUCCEEDED],
                            "failed": st.counts[corral.CallStatus.FAILED]
                            + st.counts[corral.CallStatus.EXPIRED],
                            "retries": counters.retries[name],
                            "restarts": st.restarts,
                            "limit": limit if name != "tool" else "-",
                            "circuit": breaker.state.value if name != "tool" else "-",
                        }
                    )
                return out_rows

            def make(i: int) -> tuple[str, Callable[[], Any]]:
                pick = rng.random()
                if pick < 0.6:
                    request = corral.ChatRequest(
                        messages=(
                            corral.ChatMessage(role="user", content=f"question {i}: what is {i}?"),
                        ),
                        max_tokens=32,
                    )
                    return "chat", lambda: refs["chat"].submit(request, timeout=10)
                if pick < 0.85:
                    texts = (f"document {i}", f"summary {i}")
                    return "embed", lambda: refs["embed"].submit(
                        corral.EmbeddingsRequest(inputs=texts), timeout=10
                    )
                return "tool", lambda: refs["tool"].submit(ToolCall(query=f"q{i}"), timeout=10)

            done = 0
            all_done = anyio.Event()
            sem = anyio.Semaphore(48)

            async def one(i: int) -> None:
                nonlocal done
                kind, send = make(i)
                async with sem:
                    with tracer.start_as_current_span(
                        f"demo request {i}", attributes={"demo.kind": kind}
                    ):
                        fut = await send()
                        futures.append(fut)
                        await fut.wait()
                error = fut.exception()
                if error is None:
                    outcomes["succeeded"] += 1
                elif isinstance(error, EXPECTED):
                    outcomes[type(error).__name__] += 1
                else:
                    unexpected.append(f"{kind}: {type(error).__name__}: {error}")
                done += 1
                if done == calls:
                    all_done.set()

            with _View(out, live) as view:
                async with anyio.create_task_group() as tg:
                    for i in range(calls):
                        tg.start_soon(one, i)

                    async def refresh() -> None:
                        while True:
                            view.update(rows(), done, calls)
                            await anyio.sleep(0.125)

                    tg.start_soon(refresh)
                    await all_done.wait()
                    tg.cancel_scope.cancel()
                view.update(rows(), done, calls, final=True)
            final_rows = rows()
        await telemetry.aclose()
    pending = sum(1 for f in futures if not f.done()) + (calls - len(futures))
    spans = read_otlp_json(path)
    slowest: list[str] = []
    roots = [s for s in spans if s.name.startswith("demo request")]
    if roots:
        worst = max(roots, key=lambda s: s.end_ns - s.start_ns)
        slowest = draw_trace([s for s in spans if s.trace_id == worst.trace_id])
    result = DemoResult(
        calls=calls,
        succeeded=outcomes.pop("succeeded", 0),
        failed=dict(outcomes),
        unexpected=unexpected,
        pending=pending,
        trace_file=str(path),
        otlp=telemetry.otlp_endpoint,
        slowest=slowest,
        elapsed=time.monotonic() - started,
        spans=len(spans),
    )
    _summary(out, result, final_rows)
    return result


def _summary(out: TextIO, result: DemoResult, rows: list[dict[str, Any]]) -> None:
    print("", file=out)
    print(f"{'actor':<8}{'succeeded':>10}{'failed':>8}{'retries':>9}{'restarts':>10}", file=out)
    for r in rows:
        print(
            f"{r['actor']:<8}{r['ok']:>10}{r['failed']:>8}{r['retries']:>9}{r['restarts']:>10}",
            file=out,
        )
    failed = ", ".join(f"{n} {k}" for k, n in sorted(result.failed.items())) or "none"
    print(
        f"\n{result.calls} calls in {result.elapsed:.1f}s: {result.succeeded} succeeded; "
        f"failed as the demo intends: {failed}; pending: {result.pending}",
        file=out,
    )
    if result.unexpected:
        print(f"UNEXPECTED failures ({len(result.unexpected)}):", file=out)
        for line in result.unexpected[:10]:
            print(f"  {line}", file=out)
    if result.slowest:
        print("\nthe slowest call, as traced:", file=out)
        for line in result.slowest:
            print(f"  {line}", file=out)
    print(f"\n{result.spans} spans written to {result.trace_file} (OTLP JSON)", file=out)
    print(f"  look at them:  corral trace {result.trace_file} --slowest", file=out)
    if result.otlp:
        print(f"  and sent over OTLP/HTTP to {result.otlp} (open Jaeger on :16686)", file=out)
    else:
        print(
            "  to see them in Jaeger: start it (docker run --rm -p 16686:16686 -p 4318:4318 "
            "jaegertracing/all-in-one) and run  corral demo --otlp http://localhost:4318",
            file=out,
        )
