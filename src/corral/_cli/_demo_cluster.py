"""``corral demo --nodes N``: the demo's calls served by N processes, one of them SIGKILLed.

The caller (this process) starts a local nats-server, the fake provider, and
N ``corral serve`` processes running the demo's tree with its actors exported
and its rate limiter shared; it sends the demo's calls to the cluster and
SIGKILLs one serving node when half of them are done. The calls that node was
running are delivered again to another node (attempt 2). Each serving node
appends a line per call it starts and ends to a ledger file outside the
processes, and writes its spans to a file of its own; at the end the ledger
shows where each call ran, and the traces of every process are merged into
one file, from which the waterfall of one failed-over call is drawn.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import anyio
import attrs

import corral
from corral.telemetry import configure, read_otlp_json
from corral.testing import FakeLLMServer

from . import CommandError
from ._demo import (
    _ACTORS,
    _MAX_ATTEMPTS,
    CallRun,
    DemoResult,
    FlakyTool,
    ToolCall,
    _quiet_corral_logger,
    _summary,
    demo_faults,
    demo_tree,
)
from ._view import ActorRow, Columns, Snapshot, View
from ._waterfall import draw_trace

__all__ = ["ClusterDemoResult", "node_tree", "run_cluster_demo"]

#: The environment a serving node of the demo reads its settings from.
_ENV = "CORRAL_DEMO_"
_CLUSTER = "corral-demo"
#: Short enough that a killed node's calls are run again within seconds.
_ACK_WAIT = 2.0
_HEARTBEAT = 0.5
_SHARED = "demo-llm"


# --- a serving node (in its own process, under corral serve) ---------------------------------


class _Ledger:
    """Appends ``start|ok|error <call> <node> <delivery>`` lines to a file shared by the nodes."""

    def __init__(self, path: str, node: str) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - for the process's life
        self._node = node

    @contextlib.contextmanager
    def call(self, key: str) -> Iterator[None]:
        current = corral.current_call()
        delivery = current.envelope.attempt if current is not None else 1
        self._file.write(f"start {key} {self._node} {delivery}\n")
        try:
            yield
        except BaseException:
            self._file.write(f"error {key} {self._node} {delivery}\n")
            raise
        self._file.write(f"ok {key} {self._node} {delivery}\n")


def node_tree() -> corral.Supervisor:
    """The tree a demo node serves (``corral serve corral._cli._demo_cluster:node_tree``)."""
    env = os.environ
    node = env[_ENV + "NODE"]
    endpoint = env.get(_ENV + "OTLP")
    configure(
        service_name="corral-demo",
        service_instance_id=node,
        exporter=["file", "otlp"] if endpoint else "file",
        endpoint=endpoint,
        trace_file=env[_ENV + "TRACES"],
        # Each span on the file when it ends: the node may be SIGKILLed. With OTLP
        # too, in batches (OTEL_BSP_SCHEDULE_DELAY, set short by the demo).
        batch=bool(endpoint),
        metrics=False,
    )
    ledger = _Ledger(env[_ENV + "LEDGER"], node)
    base_url = env[_ENV + "URL"]
    seed, fail_rate = int(env[_ENV + "SEED"]), float(env[_ENV + "FAIL"])

    class Chat(corral.OpenAIChat):
        async def handle(self, msg: corral.ChatRequest) -> corral.ChatReply:
            content = msg.messages[-1].content
            with ledger.call(f"chat:{str(content).split(':')[0].split()[-1]}"):
                return await super().handle(msg)

    class Embed(corral.OpenAIEmbeddings):
        async def handle(self, msg: corral.EmbeddingsRequest) -> corral.EmbeddingsReply:
            with ledger.call(f"embed:{msg.inputs[0].split()[-1]}"):
                return await super().handle(msg)

    class Tool(FlakyTool):
        async def handle(self, msg: ToolCall) -> str:
            with ledger.call(f"tool:{msg.query.removeprefix('q')}"):
                return await super().handle(msg)

    tree, _, _ = demo_tree(
        base_url,
        seed,
        fail_rate,
        export=True,
        shared=_SHARED,
        actors={
            "chat": lambda: Chat(model="demo-chat", base_url=base_url, api_key_env=None),
            "embed": lambda: Embed(model="demo-embed", base_url=base_url, api_key_env=None),
            "tool": lambda: Tool(seed, 0.02 + fail_rate / 5),
        },
    )
    return tree


# --- the caller --------------------------------------------------------------------------------


@attrs.frozen
class ClusterDemoResult:
    """What ``corral demo --nodes`` did, beside what the single-process demo reports."""

    demo: DemoResult
    nodes: int
    killed: str
    #: Calls finished per node (from the ledger), in node order.
    per_node: dict[str, int]
    #: ``(call, first node, node that finished it, its first attempt there)`` for the
    #: calls delivered again to another node (first node ``None``: it never started there).
    rerun: list[tuple[str, str | None, str, int]]
    #: Calls with no outcome at the caller, or answered without a trace in the ledger.
    lost: list[str]
    failed_over: list[str]

    @property
    def exit_code(self) -> int:
        return 0 if self.demo.exit_code == 0 and not self.lost else 1


class _Node:
    """One serving process: ``corral serve`` of :func:`node_tree`, its log in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=env,
                start_new_session=True,  # Ctrl-C at the terminal reaches the caller only
            )

    async def wait_serving(self, timeout: float = 60.0) -> None:
        with anyio.move_on_after(timeout):
            while "serving " not in self.log.read_text():
                if self.proc.poll() is not None:
                    break
                await anyio.sleep(0.05)
            else:
                return
        tail = self.log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise CommandError(f"demo node {self.name} did not start: {tail[0]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def run_cluster_demo(
    *,
    nodes: int,
    calls: int = 300,
    seed: int = 1,
    fail_rate: float = 0.15,
    trace_file: str = "corral-demo-traces.jsonl",
    otlp: str | None = None,
    out: TextIO | None = None,
    live: bool | None = None,
    width: int | None = None,
) -> ClusterDemoResult:
    """Run the demo across *nodes* serving processes, one SIGKILLed midway.

    Every process writes its spans to a file of its own (merged into
    *trace_file* at the end) and, with *otlp* (or
    ``OTEL_EXPORTER_OTLP_ENDPOINT``), sends them there too, each with its
    ``service.instance.id``: one trace per call across the processes.

    Raises:
        CommandError: No nats-server binary, or a process that does not start.
    """
    from .._cluster._local import LocalNats, nats_server_binary

    if nodes < 2:
        raise CommandError(f"--nodes must be >= 2 (one of them is killed midway), got {nodes}")
    try:
        nats_server_binary()
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from None
    out = sys.stdout if out is None else out  # the stdout of the call, not of the import
    live = out.isatty() if live is None else live
    endpoint = otlp or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
    root = Path(tempfile.mkdtemp(prefix="corral-demo-"))
    path = Path(trace_file)
    await anyio.Path(path).unlink(missing_ok=True)
    ledger = root / "ledger"
    await anyio.Path(ledger).touch()
    nats = LocalNats(root / "nats", size=1)
    started: list[_Node] = []
    with _quiet_corral_logger():
        try:
            await anyio.to_thread.run_sync(nats.start)
            with FakeLLMServer(
                latency=0.02,
                jitter=0.04,
                faults=demo_faults(fail_rate),
                seed=seed,
                faults_by="body",
            ) as server:
                for i in range(1, nodes + 1):
                    name = f"node-{i}"
                    env = {
                        **os.environ,
                        _ENV + "NODE": name,
                        _ENV + "URL": server.base_url,
                        _ENV + "SEED": str(seed),
                        _ENV + "FAIL": str(fail_rate),
                        _ENV + "LEDGER": str(ledger),
                        _ENV + "TRACES": str(root / f"{name}.jsonl"),
                    }
                    if endpoint:
                        # Batches of at most 0.2 s: what a SIGKILL takes with it stays small.
                        env |= {_ENV + "OTLP": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
                    argv = [sys.executable, "-m", "corral", "serve"]
                    argv += ["corral._cli._demo_cluster:node_tree", "--nats", nats.urls[0]]
                    argv += ["--cluster", _CLUSTER, "--name", name]
                    argv += ["--ack-wait", str(_ACK_WAIT), "--heartbeat", str(_HEARTBEAT)]
                    started.append(_Node(name, argv, env, root / f"{name}.log"))
                for node in started:
                    await node.wait_serving()
                killed = started[len(started) // 2]
                demo = await _call(
                    nats.urls[0],
                    killed,
                    calls=calls,
                    seed=seed,
                    caller_traces=root / "caller.jsonl",
                    otlp=endpoint,
                    out=out,
                    live=live,
                    width=width,
                )
                # The survivors drain: what they still run finishes.
                for node in started:
                    node.stop()
                deadline = time.monotonic() + 15
                for node in started:
                    await anyio.to_thread.run_sync(
                        lambda n=node: n.reap(deadline - time.monotonic())  # type: ignore[misc]
                    )
            result = _finish(demo, started, killed.name, ledger, root, path, out, width)
        finally:
            for node in started:
                if node.proc.poll() is None:
                    node.proc.kill()
                    node.proc.wait()
            nats.stop()
            shutil.rmtree(root, ignore_errors=True)
    return result


async def _call(
    nats_url: str,
    killed: _Node,
    *,
    calls: int,
    seed: int,
    caller_traces: Path,
    otlp: str | None,
    out: TextIO,
    live: bool,
    width: int | None,
) -> DemoResult:
    """Send the demo's calls to the cluster; SIGKILL *killed* when half are done."""
    from .._cluster._status import StatusReader

    telemetry = configure(
        service_name="corral-demo",
        service_instance_id="caller",
        exporter=["file", "otlp"] if otlp else "file",
        endpoint=otlp,
        trace_file=caller_traces,
        set_global=False,
        metrics=False,
        flush_timeout=3.0,
    )
    tracer = telemetry.tracer_provider.get_tracer("corral.demo")
    # The last counts each node reported (a killed node's stay as they were).
    last: dict[str, dict[str, Any]] = {}
    snapshot_state: dict[str, Any] = {"waiting": 0, "paused": 0.0, "circuit": "closed"}
    cluster = corral.Cluster(
        servers=[nats_url],
        name=_CLUSTER,
        node="caller",
        ack_wait=_ACK_WAIT,
        heartbeat=_HEARTBEAT,
        types=(corral.ChatReply, corral.EmbeddingsReply),
    )
    columns = Columns.for_run(_ACTORS, calls, _MAX_ATTEMPTS)

    def rows() -> list[ActorRow]:
        result = []
        for name in _ACTORS:
            per_node = [actors[name] for actors in last.values() if name in actors]
            result.append(
                ActorRow(
                    actor=name,
                    queued=sum(a.queued for a in per_node),
                    running=sum(a.running for a in per_node),
                    ok=run.by_actor[name]["ok"],
                    failed=run.by_actor[name]["failed"],
                    retries=sum(a.retries for a in per_node),
                    restarts=sum(a.restarts for a in per_node),
                )
            )
        return result

    def snapshot() -> Snapshot:
        return Snapshot(
            rows=rows(),
            waiting=int(snapshot_state["waiting"]),
            paused_for=float(snapshot_state["paused"]),
            circuit=str(snapshot_state["circuit"]),
            done=run.done,
            total=calls,
        )

    async with (
        corral.Runtime(cluster=cluster, instruments=[telemetry.instrument()]) as rt,
        StatusReader([nats_url], _CLUSTER) as reader,
    ):
        refs = {name: rt.remote(name) for name in _ACTORS}

        async def send(kind: str, msg: Any) -> corral.Future[Any]:
            return await refs[kind].submit(msg, timeout=15)

        run = CallRun(calls, seed, tracer, send)

        async def watch() -> None:
            while True:
                try:
                    status = await reader.snapshot(wait=0.3)
                except corral.CorralError:
                    await anyio.sleep(0.25)
                    continue
                limiters = []
                for node in status.nodes:
                    if node.node == "caller":
                        continue
                    last[node.node] = {a.name: a for a in node.actors}
                    limiters += [a for a in node.actors if a.limiter is not None]
                snapshot_state["waiting"] = sum(a.limiter.waiting for a in limiters if a.limiter)
                snapshot_state["paused"] = max(
                    (a.limiter.paused_for for a in limiters if a.limiter), default=0.0
                )
                circuits = {a.circuit for a in limiters}
                snapshot_state["circuit"] = "open" if "open" in circuits else "closed"
                await anyio.sleep(0.25)

        async def kill_midway() -> None:
            await run.half_done.wait()
            # Midway, and while calls run on it (what the kill is about), within reason.
            with anyio.move_on_after(5):
                while sum(a.running for a in last.get(killed.name, {}).values()) < 3:  # noqa: ASYNC110 - reports of another process
                    await anyio.sleep(0.05)
            running = sum(a.running for a in last.get(killed.name, {}).values())
            killed.proc.kill()
            print(
                f"SIGKILLed {killed.name} (pid {killed.proc.pid}; its last report: {running} "
                f"calls running); another node takes its calls after ack_wait ({_ACK_WAIT:g} s)",
                file=out,
                flush=True,
            )

        await run.run(View(out, live, columns, width), snapshot, watch, kill_midway)
        final_rows = rows()
    await telemetry.aclose()
    return run.result(telemetry, final_rows, circuit_opened=0)


def _finish(
    demo: DemoResult,
    nodes: list[_Node],
    killed: str,
    ledger: Path,
    root: Path,
    path: Path,
    out: TextIO,
    width: int | None,
) -> ClusterDemoResult:
    """Read the ledger, merge the traces, print the summary."""
    # Per call: the nodes that started it, in order, with the first attempt each saw
    # (attempt numbers run on across a node's retries and the next node's delivery).
    starts: dict[str, dict[str, int]] = collections.defaultdict(dict)
    ended: dict[str, tuple[str, str]] = {}
    for line in ledger.read_text().splitlines():
        what, key, node, attempt = line.split()
        if what == "start":
            starts[key].setdefault(node, int(attempt))
        else:
            ended[key] = (what, node)
    per_node = {n.name: sum(1 for _, node in ended.values() if node == n.name) for n in nodes}
    # Run again elsewhere: started on more than one node, or first seen on its node as a
    # later delivery (the node that took it first died before its handler started).
    rerun = sorted(
        (key, next(iter(starts[key])) if len(starts[key]) > 1 else None, node, starts[key][node])
        for key, (_, node) in ended.items()
        if node in starts[key] and (len(starts[key]) > 1 or starts[key][node] > 1)
    )
    lost = [f"{demo.pending} calls left pending"] if demo.pending else []
    answered_ok = sum(1 for what, _ in ended.values() if what == "ok")
    if answered_ok < demo.succeeded:
        lost.append(f"{demo.succeeded - answered_ok} successes with no trace in the ledger")
    with path.open("w") as merged:
        for part in sorted(root.glob("*.jsonl")):
            merged.write(part.read_text())
    spans = read_otlp_json(path)
    failed_over: list[str] = []
    if rerun:
        # The first call run again: its trace's root is "demo request <i>".
        index = rerun[0][0].split(":")[1]
        roots = [s for s in spans if s.name == f"demo request {index}" and not s.parent_id]
        kind = rerun[0][0].split(":")[0]
        roots = [s for s in roots if s.attributes.get("demo.kind") == kind]
        if roots:
            failed_over = draw_trace(
                [s for s in spans if s.trace_id == roots[0].trace_id],
                width=None if width is None else width - 2,
            )
    demo = attrs.evolve(demo, trace_file=str(path), spans=len(spans))
    result = ClusterDemoResult(
        demo=demo,
        nodes=len(nodes),
        killed=killed,
        per_node=per_node,
        rerun=rerun,
        lost=lost,
        failed_over=failed_over,
    )
    _summary(out, demo, width)
    _cluster_summary(out, result)
    return result


def _cluster_summary(out: TextIO, result: ClusterDemoResult) -> None:
    def say(line: str = "") -> None:
        print(line, file=out)

    say()
    counts = ", ".join(
        f"{node} {n}" + (" (SIGKILLed midway)" if node == result.killed else "")
        for node, n in result.per_node.items()
    )
    say(f"calls per node: {counts}")
    if result.rerun:
        say(
            f"calls run again on another node after {result.killed} was killed: {len(result.rerun)}"
        )
        for key, first, last, attempt in result.rerun[:8]:
            where = f"started on {first}" if first else "taken by a node that died first"
            say(f"  {key}: {where}, finished on {last} (attempt {attempt})")
        if len(result.rerun) > 8:
            say(f"  ... and {len(result.rerun) - 8} more")
    else:
        say(f"no call was running on {result.killed} when it was killed")
    demo = result.demo
    if result.lost:
        say(f"LEDGER CHECK FAILED: {'; '.join(result.lost)}")
    else:
        say(
            f"ledger check: all {demo.calls} calls answered "
            f"({demo.succeeded} succeeded, {demo.calls - demo.succeeded} failed), none lost"
        )
    if result.failed_over:
        say()
        say(
            f"the trace of {result.rerun[0][0]}, failed over (the spans of {result.killed}, "
            "killed before they ended, were never written):"
        )
        for line in result.failed_over:
            say(f"  {line}")
