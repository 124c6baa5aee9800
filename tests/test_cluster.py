"""Actors across runtimes on a real 3-node NATS JetStream cluster (loopback, started here).

nats-py is asyncio-only and corral refuses a cluster on trio at entry, so
these tests run on asyncio, and one checks the refusal on trio.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from opentelemetry import trace

import corral

from .helpers import Add, Block, Boom, Calculator, Echo, Gate, closed_port
from .nats_cluster import NatsCluster

pytestmark = pytest.mark.anyio

_names = itertools.count()


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """asyncio only (in debug mode): corral's cluster runs where nats-py does."""
    return "asyncio", {"debug": True}


@pytest.fixture(scope="module")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One 3-node cluster for the module; each test uses a cluster name (a stream) of its own."""
    servers = NatsCluster(tmp_path_factory.mktemp("nats"))
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


def cluster(nats: NatsCluster, **settings: Any) -> corral.Cluster:
    """A cluster spec with a fresh name, and delivery settings short enough for tests."""
    options: dict[str, Any] = {"ack_wait": 4.0, "heartbeat": 0.5, "connect_timeout": 10.0}
    options.update(settings)
    return corral.Cluster(servers=nats.urls, name=f"t{next(_names)}_{time.time_ns()}", **options)


def serving(*children: corral.ChildSpec) -> corral.Supervisor:
    return corral.Supervisor(children=list(children))


@pytest.fixture
async def calc(nats: NatsCluster) -> AsyncIterator[tuple[corral.Runtime, corral.Runtime]]:
    """A node serving an exported Calculator, and a caller node (two runtimes, one process)."""
    spec = cluster(nats)
    tree = serving(corral.child(Calculator, name="calc", export=True, max_concurrency=4))
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        yield server, caller


async def test_a_remote_ask_is_served_by_the_node_that_exports_the_actor(
    calc: tuple[corral.Runtime, corral.Runtime],
) -> None:
    server, caller = calc
    ref = caller.remote("calc")
    assert await ref.ask(Add(a=1, b=2), timeout=10) == 3
    futures = [await ref.submit(Add(a=i, b=i)) for i in range(20)]
    assert [await f for f in futures] == [2 * i for i in range(20)]
    # The serving node's actor counted them: they ran there.
    assert server.ref("calc").status().counts["succeeded"] == 21
    assert caller.status() == {}


async def test_tell_and_ping_cross_nodes(nats: NatsCluster) -> None:
    spec = cluster(nats)
    gate = Gate()
    tree = serving(corral.child(lambda: gate, name="gate", export=True))
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("gate")
        await ref.tell(Echo("one"))
        await ref.try_tell(Echo("two"))
        await ref.ping(timeout=10)  # everything queued before it was taken
        assert gate.started == ["one", "two"]


async def test_errors_come_back_as_values(calc: tuple[corral.Runtime, corral.Runtime]) -> None:
    """corral's own errors keep their type; others become RemoteError with the remote trace."""
    _, caller = calc
    with pytest.raises(corral.UnhandledMessage, match="does not handle"):
        await caller.remote("calc").ask(Echo("not for a calculator"), timeout=10)


async def test_a_foreign_exception_is_a_remote_error_with_its_type_and_traceback(
    nats: NatsCluster,
) -> None:
    spec = cluster(nats)
    tree = serving(corral.child(Gate, name="gate", export=True))
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        with pytest.raises(corral.RemoteError) as info:
            await caller.remote("gate").ask(Boom("value"), timeout=10)
    err = info.value
    assert err.type_name == "builtins.ValueError"
    assert err.remote_message == "boom"
    assert "in handle" in err.remote_traceback and "ValueError: boom" in err.remote_traceback
    assert str(err) == "builtins.ValueError: boom"


async def test_the_caller_raises_deadline_exceeded_at_its_deadline(nats: NatsCluster) -> None:
    spec = cluster(nats)
    gate = Gate()
    tree = serving(corral.child(lambda: gate, name="gate", export=True))
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("gate")
        with pytest.raises(corral.DeadlineExceeded):
            await ref.ask(Block("never"), timeout=0.5)
        # The serving node was told: its handler was cancelled, the actor serves on.
        assert await ref.ask(Echo("after"), timeout=10) == "after"


async def test_a_cancelled_caller_cancels_the_remote_handler(nats: NatsCluster) -> None:
    spec = cluster(nats)
    gate = Gate()
    tree = serving(corral.child(lambda: gate, name="gate", export=True))
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("gate")
        fut = await ref.submit(Block("held"))
        await gate.entered_event("held").wait()
        assert fut.cancel()
        with pytest.raises(corral.CallCancelled):
            await fut
        assert await ref.ask(Echo("next"), timeout=10) == "next"
        counts = server.ref("gate").status().counts
        assert counts["cancelled"] == 1


async def test_try_submit_refuses_when_the_remote_mailbox_is_full(nats: NatsCluster) -> None:
    """The bound is kept by the servers: queued plus running calls per actor."""
    spec = cluster(nats, mailbox=2)
    gate = Gate()
    tree = serving(corral.child(lambda: gate, name="gate", export=True))
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("gate")
        held = await ref.try_submit(Block("held"))
        await gate.entered_event("held").wait()
        queued = await ref.try_submit(Echo("queued"))
        with pytest.raises(corral.MailboxFull, match="'gate' is full"):
            await ref.try_submit(Echo("refused"))
        with pytest.raises(corral.MailboxFull):
            await ref.try_tell(Echo("refused too"))
        gate.gates["held"].set()
        assert await held == "held"
        assert await queued == "queued"
        assert gate.started == ["held", "queued"]


async def test_one_full_actor_does_not_block_another(nats: NatsCluster) -> None:
    spec = cluster(nats, mailbox=1)
    gate = Gate()
    tree = serving(
        corral.child(lambda: gate, name="gate", export=True),
        corral.child(Calculator, name="calc", export=True),
    )
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        await caller.remote("gate").try_submit(Block("held"))
        await gate.entered_event("held").wait()
        with pytest.raises(corral.MailboxFull):
            await caller.remote("gate").try_submit(Echo("x"))
        assert await caller.remote("calc").ask(Add(a=2, b=2), timeout=10) == 4
        gate.gates["held"].set()


async def test_garbage_on_an_actor_subject_is_dropped_and_the_node_goes_on(
    nats: NatsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    import nats as nats_client

    spec = cluster(nats)
    tree = serving(corral.child(Calculator, name="calc", export=True))
    with caplog.at_level(logging.WARNING, logger="corral.cluster"):
        async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
            raw = await nats_client.connect(nats.urls[0])
            try:
                js = raw.jetstream()
                await js.publish(spec.subject("calc"), b"\x00 not json")
                await js.publish(spec.subject("calc"), b'{"type": "nobody.Knows"}')
            finally:
                await raw.close()
            assert await caller.remote("calc").ask(Add(a=1, b=1), timeout=10) == 2
    dropped = [r for r in caplog.records if "not a call" in r.getMessage()]
    assert len(dropped) == 2


async def test_an_oversized_call_is_refused_before_publishing(nats: NatsCluster) -> None:
    spec = cluster(nats, max_payload=200)
    async with corral.Runtime(cluster=spec) as caller:
        with pytest.raises(
            corral.ProtocolError, match=r"takes \d+ bytes; the cluster takes at most 200"
        ):
            await caller.remote("calc").submit(Echo("x" * 500))


async def test_unreachable_nats_fails_entry_in_bounded_time_naming_the_servers() -> None:
    port = closed_port()
    spec = corral.Cluster(servers=[f"nats://user:s3cret@127.0.0.1:{port}"], connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(corral.ClusterUnavailable) as info:
        async with corral.Runtime(cluster=spec):
            pass
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "s3cret" not in str(info.value)


async def test_remote_without_a_cluster_is_refused() -> None:
    async with corral.Runtime() as rt:
        with pytest.raises(corral.InvalidStateError, match="no cluster"):
            rt.remote("calc")


def test_a_cluster_on_trio_is_refused_at_entry() -> None:
    spec = corral.Cluster(servers=["nats://127.0.0.1:4222"])

    async def enter() -> None:
        async with corral.Runtime(cluster=spec):
            pass

    with pytest.raises(corral.InvalidStateError, match="asyncio backend only"):
        anyio.run(enter, backend="trio")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"servers": []}, "at least one NATS server"),
        ({"servers": ["localhost:4222"]}, "starts with nats://"),
        ({"name": "a.b"}, "cluster name is 1-64 letters"),
        ({"ack_wait": 0}, "ack_wait must be finite and > 0"),
        ({"ack_wait": 2, "heartbeat": 1.5}, "at most half of ack_wait"),
        ({"attempts": 0}, "attempts must be >= 1"),
        ({"mailbox": True}, "mailbox must be an int"),
        ({"replicas": 2}, "replicas must be 1, 3, 5 or None"),
    ],
)
def test_bad_cluster_settings_are_refused_naming_them(
    settings: dict[str, Any], message: str
) -> None:
    options: dict[str, Any] = {"servers": ["nats://127.0.0.1:4222"]}
    options.update(settings)
    with pytest.raises((ValueError, TypeError), match=message):
        corral.Cluster(**options)


def test_actor_names_become_valid_subject_tokens() -> None:
    from corral._cluster._wire import token

    assert token("chat") == "chat"
    assert token("a.b c*>") == "a=2eb=20c=2a=3e"
    assert token("é") == "=c3=a9"
    assert token("x=y") == "x=3dy"  # the escape itself is escaped: the encoding reverses


def test_the_stream_is_per_cluster_name(tmp_path: Path) -> None:
    spec = corral.Cluster(servers=["nats://127.0.0.1:4222"], name="app")
    assert spec.stream == "CORRAL_app"
    assert spec.subject("chat.v2") == "corral.app.call.chat=2ev2"


# --- nodes in processes of their own, killed ------------------------------------------------


def _ledger(path: Path) -> list[tuple[str, str, str, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, key, node, attempt, _ = line.split()
        rows.append((what, key, node, int(attempt)))
    return rows


async def _until(check: Any, what: str, timeout: float = 30.0) -> None:
    """Poll a file-backed condition (another process writes it) until it holds."""
    with anyio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - another process writes it: no event to wait on
            await anyio.sleep(0.02)


async def _node(
    nats: NatsCluster, spec: corral.Cluster, name: str, ledger: Path, **options: object
) -> Any:
    from .cluster_node import start

    return await anyio.to_thread.run_sync(
        lambda: start(
            servers=nats.urls,
            cluster=spec.name,
            node=name,
            ledger=ledger,
            ack_wait=spec.ack_wait,
            heartbeat=spec.heartbeat,
            **options,
        )
    )


def _reap(*procs: Any) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


async def test_no_call_is_lost_when_a_serving_process_is_killed(
    nats: NatsCluster, tmp_path: Path
) -> None:
    """SIGKILL a node with calls running on it: another node serves them again, as attempt 2."""
    from .cluster_node import Work

    spec = cluster(nats, ack_wait=2.0, heartbeat=0.5)
    ledger = tmp_path / "ledger"
    a = await _node(nats, spec, "a", ledger)
    b = None
    try:
        async with corral.Runtime(cluster=spec) as caller:
            ref = caller.remote("work")
            # Node a alone takes the first calls; they would run until long after it died.
            futures = {}
            for i in range(4):
                futures[str(i)] = await ref.submit(Work(str(i), ms=60_000, retry_ms=10), timeout=60)
            await _until(lambda: sum(r[0] == "start" for r in _ledger(ledger)) == 4, "a started")
            b = await _node(nats, spec, "b", ledger)
            for i in range(4, 24):
                futures[str(i)] = await ref.submit(Work(str(i), ms=50), timeout=60)
            a.kill()
            a.wait()
            results = {}
            for key, fut in futures.items():
                try:
                    results[key] = await fut
                except corral.NodeLost as exc:  # pragma: no cover - only past 3 deliveries
                    results[key] = exc
        rows = _ledger(ledger)
        started_on_a = {k for what, k, node, _ in rows if what == "start" and node == "a"}
        done_on_a = {k for what, k, node, _ in rows if what == "done" and node == "a"}
        lost_with_a = started_on_a - done_on_a
        assert len(results) == 24  # every future resolved
        assert {"0", "1", "2", "3"} <= lost_with_a, ledger.read_text()  # the kill cut these short
        for key in lost_with_a:
            assert results[key] == "b:2"  # served again elsewhere, as its second attempt
        assert all(isinstance(v, str) for v in results.values())
    finally:
        _reap(a, *([b] if b is not None else []))


async def test_a_node_stopped_gracefully_finishes_its_calls_and_hands_back_the_rest(
    nats: NatsCluster, tmp_path: Path
) -> None:
    """SIGTERM: running calls finish on the node; nothing waits for ack_wait to move on."""
    import signal

    from .cluster_node import Work

    spec = cluster(nats, ack_wait=20.0, heartbeat=0.5)
    ledger = tmp_path / "ledger"
    a = await _node(nats, spec, "a", ledger)
    b = await _node(nats, spec, "b", ledger)
    try:
        async with corral.Runtime(cluster=spec) as caller:
            ref = caller.remote("work")
            futures = [await ref.submit(Work(str(i), ms=200), timeout=60) for i in range(16)]
            await _until(lambda: any(r[2] == "a" for r in _ledger(ledger)), "a serving")
            started = time.monotonic()
            a.send_signal(signal.SIGTERM)
            results = [await f for f in futures]
            elapsed = time.monotonic() - started
        assert await anyio.to_thread.run_sync(a.wait) == 0
        assert len(results) == 16
        assert elapsed < spec.ack_wait / 2  # not left to the servers' redelivery
        rows = _ledger(ledger)
        keys = [k for w, k, _, _ in rows if w == "start"]
        assert sorted(keys) == sorted(set(keys)), ledger.read_text()  # none ran twice
        assert {k for w, k, n, _ in rows if w == "start" and n == "a"} == {
            k for w, k, n, _ in rows if w == "done" and n == "a"
        }
    finally:
        _reap(a, b)


# --- result records -----------------------------------------------------------------------


class Counter(corral.Actor[Add, int]):
    """Adds, and keeps the ids of the calls it ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def handle(self, msg: Add) -> int:
        call = corral.current_call()
        assert call is not None
        self.ran.append(call.envelope.id.hex)
        return msg.a + msg.b


class IdempotentCounter(Counter):
    idempotent = True


async def _record(nats: NatsCluster, spec: corral.Cluster, key: str) -> bytes | None:
    import nats as nats_client
    from nats.js.errors import KeyNotFoundError

    raw = await nats_client.connect(nats.urls[0])
    try:
        kv = await raw.jetstream().key_value(f"{spec.stream}_results")
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value
    finally:
        await raw.close()


async def test_an_answer_is_kept_before_the_call_is_acknowledged(nats: NatsCluster) -> None:
    spec = cluster(nats)
    counter = Counter()
    tree = serving(corral.child(lambda: counter, name="calc", export=True))
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        assert await caller.remote("calc").ask(Add(a=2, b=3), timeout=10) == 5
    [key] = counter.ran
    record = await _record(nats, spec, key)
    assert record is not None and b'"value":5' in record


async def test_an_idempotent_actor_keeps_no_answers(nats: NatsCluster) -> None:
    spec = cluster(nats)
    counter = IdempotentCounter()
    tree = serving(corral.child(lambda: counter, name="calc", export=True))
    async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
        assert await caller.remote("calc").ask(Add(a=2, b=3), timeout=10) == 5
    [key] = counter.ran
    assert await _record(nats, spec, key) is None


@pytest.mark.parametrize("actor", [Counter, IdempotentCounter], ids=["kept", "idempotent"])
async def test_an_answer_lost_on_the_way_is_read_back_or_reported_not_waited_for(
    nats: NatsCluster, actor: type[Counter]
) -> None:
    """The serving node's answer never reaches the caller (core NATS dropped it).

    Kept answers are read from the result record; an idempotent actor keeps
    none, so the caller hears that the answer was lost within a few
    ack_wait instead of waiting for its deadline (here none).
    """
    spec = cluster(nats, ack_wait=1.0, heartbeat=0.5)
    counter = actor()
    tree = serving(corral.child(lambda: counter, name="calc", export=True))
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        serving_side = server._node.serving  # type: ignore[union-attr]
        send = serving_side._send
        dropped: list[bytes] = []

        async def lossy(reply_to: Any, call_id: Any, data: bytes, *rest: Any) -> None:
            if not dropped:
                dropped.append(data)  # lost on the way
                return
            await send(reply_to, call_id, data, *rest)

        serving_side._send = lossy
        fut = await caller.remote("calc").submit(Add(a=2, b=3))
        with anyio.fail_after(20):
            if actor is Counter:
                assert await fut == 5
            else:
                with pytest.raises(corral.ClusterUnavailable, match="answer was lost on the way"):
                    await fut
        assert dropped and len(counter.ran) == 1


async def test_a_redelivered_call_with_an_answer_is_answered_without_running_again(
    nats: NatsCluster,
) -> None:
    """A node that died after keeping the answer, before acknowledging: nothing runs twice."""
    import json

    import nats as nats_client
    from nats.js import api
    from nats.js.errors import ServiceUnavailableError

    from corral._cluster._wire import encode_reply, token

    spec = cluster(nats, ack_wait=1.0, heartbeat=0.5)
    counter = Counter()
    tree = serving(corral.child(lambda: counter, name="calc", export=True))
    async with corral.Runtime(cluster=spec) as caller:
        fut = await caller.remote("calc").submit(Add(a=1, b=1), timeout=30)
        # A node takes the call, keeps its answer (42, to tell it apart) and dies.
        raw = await nats_client.connect(nats.urls[0])
        try:
            js = raw.jetstream()
            consumer = api.ConsumerConfig(
                durable_name=token("calc"),
                filter_subject=spec.subject("calc"),
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=spec.ack_wait,
                max_deliver=spec.attempts,
                max_ack_pending=-1,
            )
            await js.add_consumer(spec.stream, consumer)
            with anyio.fail_after(30):  # a new R3 consumer answers fetches once it has a leader
                while True:
                    info = await js.consumer_info(spec.stream, token("calc"))
                    if info.cluster is None or info.cluster.leader:
                        break
                    await anyio.sleep(0.02)
            sub = await js.pull_subscribe_bind(durable=token("calc"), stream=spec.stream)
            with anyio.fail_after(30):
                while True:
                    try:
                        [taken] = await sub.fetch(batch=1, timeout=10)
                        break
                    except ServiceUnavailableError:  # the leader was elected, not yet serving
                        await anyio.sleep(0.05)
            call_id = uuid.UUID(json.loads(taken.data)["id"])
            kv = await js.key_value(f"{spec.stream}_results")
            await kv.put(call_id.hex, encode_reply(corral.Protocol(), call_id, 42))
        finally:
            await raw.close()
        # The servers give it to the next node after ack_wait: it answers from the record.
        async with corral.Runtime(tree, cluster=spec):
            assert await fut == 42
    assert counter.ran == []


async def test_one_trace_per_call_across_processes(nats: NatsCluster, tmp_path: Path) -> None:
    """The caller's producer span and the serving process's consumer span share the trace.

    The serving node exports over OTLP/HTTP to a receiver that decodes the
    protobuf; the caller's spans are in memory.
    """
    from .cluster_node import Work
    from .otlp_receiver import otlp_receiver
    from .tracing import MemoryTracing

    spec = cluster(nats)
    tracing = MemoryTracing()
    with otlp_receiver() as receiver:
        node = await _node(nats, spec, "a", tmp_path / "ledger", otlp=receiver.endpoint)
        try:
            async with corral.Runtime(cluster=spec, instruments=[tracing.instrument]) as caller:
                assert await caller.remote("work").ask(Work("traced"), timeout=10) == "a:1"
            node.terminate()
            assert await anyio.to_thread.run_sync(node.wait) == 0  # spans flushed at exit
        finally:
            _reap(node)
        [producer] = [s for s in tracing.spans() if s.name == "send work"]
        consumers = [s for s in receiver.spans if s.kind == s.SPAN_KIND_CONSUMER]
    assert producer.kind is trace.SpanKind.PRODUCER
    [consumer] = consumers
    assert consumer.trace_id == producer.context.trace_id.to_bytes(16, "big")
    assert consumer.parent_span_id == producer.context.span_id.to_bytes(8, "big")
    assert producer.attributes is not None
    assert producer.attributes["messaging.destination.name"] == spec.subject("work")


# --- NATS servers killed ------------------------------------------------------------------


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsCluster]:
    """A 3-node cluster of this test's own, to kill servers of."""
    servers = NatsCluster(tmp_path / "nats")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def _stream_leader(nats: NatsCluster, spec: corral.Cluster) -> int:
    import nats as nats_client

    raw = await nats_client.connect(nats.urls)
    try:
        info = await raw.jetstream().stream_info(spec.stream)
    finally:
        await raw.close()
    assert info.cluster is not None and info.cluster.leader is not None
    return int(info.cluster.leader.removeprefix("n"))


async def test_no_call_is_lost_when_the_stream_leader_is_killed(own_nats: NatsCluster) -> None:
    """Publishes fail during the election and are retried with the same id: stored once each."""
    spec = cluster(own_nats, ack_wait=4.0, heartbeat=0.5)
    counter = Counter()
    tree = serving(corral.child(lambda: counter, name="calc", export=True, max_concurrency=8))
    async with corral.Runtime(tree, cluster=spec):
        # The caller connects to the stream's leader, so that the kill cuts its
        # connection too: answers sent while it reconnects are lost on core NATS
        # and must come from their result records.
        leader = await _stream_leader(own_nats, spec)
        to_leader = attrs.evolve(spec, servers=(own_nats.urls[leader],))
        async with corral.Runtime(cluster=to_leader) as caller:
            await _calls_survive_the_kill(own_nats, caller, counter, leader)


async def _calls_survive_the_kill(
    own_nats: NatsCluster, caller: corral.Runtime, counter: Counter, leader: int
) -> None:
    ref = caller.remote("calc")
    assert await ref.ask(Add(a=0, b=0), timeout=10) == 0
    results: dict[int, int | BaseException] = {}

    async def call(i: int) -> None:
        try:
            results[i] = await ref.ask(Add(a=i, b=1), timeout=40)
        except corral.CorralError as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(call, i)
        await _until(lambda: len(results) >= 5, "calls flowing")
        own_nats.kill(leader)
        for i in range(20, 40):
            tg.start_soon(call, i)
    assert sorted(results) == list(range(40))
    assert results == {i: i + 1 for i in range(40)}  # every one answered
    assert len(counter.ran) == len(set(counter.ran))  # none stored (and run) twice


async def test_nats_lost_mid_run_fails_calls_at_their_deadline_and_the_node_recovers(
    tmp_path: Path,
) -> None:
    nats = NatsCluster(tmp_path / "nats", size=1)
    nats.start()
    try:
        spec = cluster(nats, ack_wait=2.0, heartbeat=0.5)
        tree = serving(corral.child(Calculator, name="calc", export=True))
        async with corral.Runtime(tree, cluster=spec), corral.Runtime(cluster=spec) as caller:
            ref = caller.remote("calc")
            assert await ref.ask(Add(a=1, b=1), timeout=10) == 2
            nats.kill(0)
            started = time.monotonic()
            with pytest.raises(corral.DeadlineExceeded):
                await ref.ask(Add(a=2, b=2), timeout=1.0)
            assert time.monotonic() - started < 5  # at its deadline, not after
            await anyio.to_thread.run_sync(nats.start)  # the same store: the stream is back
            assert await ref.ask(Add(a=3, b=3), timeout=30) == 6
    finally:
        nats.stop()


async def test_an_exported_actor_that_crashes_is_restarted_and_its_calls_wait(
    nats: NatsCluster,
) -> None:
    """Supervision stays local: the node restarts the actor; the calls in the stream wait."""
    spec = cluster(nats)
    gate = Gate()
    made: list[Gate] = []

    def factory() -> Gate:
        made.append(gate if not made else Gate())
        return made[-1]

    tree = serving(corral.child(factory, name="gate", export=True))
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("gate")
        with pytest.raises(corral.Crash):
            await ref.ask(Boom("crash"), timeout=10)
        later = [await ref.submit(Echo(f"after {i}"), timeout=30) for i in range(3)]
        assert [await f for f in later] == ["after 0", "after 1", "after 2"]
        assert len(made) == 2  # restarted once, by its own node's supervisor
        assert server.supervisor("root").children()[0].restarts == 1


# --- durable=False: core NATS request/reply --------------------------------------------------


async def _stream_messages(nats: NatsCluster, spec: corral.Cluster) -> tuple[int, list[str]]:
    """Messages ever stored in the cluster's stream (its last sequence), and its consumers."""
    import nats as nats_client

    raw = await nats_client.connect(nats.urls[0])
    try:
        js = raw.jetstream()
        info = await js.stream_info(spec.stream)
        names = [c.name for c in await js.consumers_info(spec.stream)]
        return info.state.last_seq, names
    finally:
        await raw.close()


async def test_a_durable_false_export_is_called_over_core_nats(nats: NatsCluster) -> None:
    spec = cluster(nats)
    gate = Gate()
    tree = serving(
        corral.child(Calculator, name="calc", export=True, durable=False, max_concurrency=4),
        corral.child(lambda: gate, name="gate", export=True, durable=False),
    )
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("calc")
        assert await ref.ask(Add(a=1, b=2), timeout=10) == 3
        futures = [await ref.submit(Add(a=i, b=i)) for i in range(20)]
        assert [await f for f in futures] == [2 * i for i in range(20)]
        await caller.remote("gate").tell(Echo("one"))
        await caller.remote("gate").ping(timeout=10)
        assert gate.started == ["one"]
        with pytest.raises(corral.UnhandledMessage):
            await ref.ask(Echo("not for a calculator"), timeout=10)
        assert server.ref("calc").status().counts["succeeded"] == 21
        # Nothing went through the stream: no call was stored, no consumer made.
        assert await _stream_messages(nats, spec) == (0, [])


async def test_durable_false_cancel_deadline_and_a_full_mailbox(nats: NatsCluster) -> None:
    spec = cluster(nats)
    gate = Gate()
    tree = serving(corral.child(lambda: gate, name="gate", export=True, durable=False, mailbox=1))
    async with corral.Runtime(tree, cluster=spec) as server, corral.Runtime(cluster=spec) as caller:
        ref = caller.remote("gate")
        held = await ref.submit(Block("held"))
        await gate.entered_event("held").wait()
        queued = await ref.submit(Echo("queued"))
        await _wait_for(lambda: server.ref("gate").status().queue_depth == 1)
        refused = await ref.try_submit(Echo("refused"))
        with pytest.raises(corral.MailboxFull, match="'gate' is full"):
            await refused  # over core NATS the refusal comes back on the future
        assert held.cancel()  # the serving node cancels the running handler
        assert await queued == "queued"
        await _wait_for(lambda: server.ref("gate").status().counts["cancelled"] == 1)
        with pytest.raises(corral.DeadlineExceeded):
            await ref.ask(Block("never opened"), timeout=0.5)
        assert gate.started == ["held", "queued", "never opened"]


async def _wait_for(check: Any) -> None:
    with anyio.fail_after(30):
        while not check():  # noqa: ASYNC110 - the other runtime's status: no event to wait on
            await anyio.sleep(0.01)


async def test_durable_false_with_no_node_serving_fails_at_once(nats: NatsCluster) -> None:
    """The servers' no-responders status: ActorNotFound, not a wait for the deadline."""
    spec = cluster(nats)
    tree = serving(corral.child(Calculator, name="calc", export=True, durable=False))
    async with corral.Runtime(cluster=spec) as caller:
        async with corral.Runtime(tree, cluster=spec):
            assert await caller.remote("calc").ask(Add(a=1, b=1), timeout=10) == 2
        with pytest.raises(corral.ActorNotFound, match="no node serves actor 'calc' now"):
            await caller.remote("calc").ask(Add(a=1, b=1), timeout=60)


async def test_durable_false_calls_of_a_killed_node_fail_with_node_lost(
    nats: NatsCluster, tmp_path: Path
) -> None:
    """Its calls are lost with it: the callers hear so within about ack_wait, not at deadline."""
    from .cluster_node import Work

    spec = cluster(nats, ack_wait=1.0, heartbeat=0.25)
    ledger = tmp_path / "ledger"
    a = await _node(nats, spec, "a", ledger, direct=True)
    try:
        async with corral.Runtime(cluster=spec) as caller:
            ref = caller.remote("work")
            # Longer than ack_wait: the node's still-alive messages keep the caller waiting.
            assert await ref.ask(Work("long", ms=2500), timeout=60) == "a:1"
            held = [await ref.submit(Work(str(i), ms=60_000), timeout=120) for i in range(3)]
            await _until(lambda: sum(r[0] == "start" for r in _ledger(ledger)) == 4, "started")
            a.kill()
            a.wait()
            for fut in held:
                with pytest.raises(corral.NodeLost, match="durable=False"):
                    await fut
    finally:
        _reap(a)


def test_durable_false_needs_export() -> None:
    with pytest.raises(ValueError, match="applies to an exported actor"):
        corral.child(Calculator, name="calc", durable=False)
    with pytest.raises(TypeError, match="durable of child 'calc' must be a bool"):
        corral.child(Calculator, name="calc", export=True, durable="no")  # type: ignore[arg-type]
