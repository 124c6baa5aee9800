"""The runtime: spawning, names, refusals, stopping, crashes and the no-hang guarantee."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import corral
from corral import ActorState, CallStatus

from .helpers import Add, Block, Boom, Calculator, Echo, Gate

pytestmark = pytest.mark.anyio

# --- spawning and names -----------------------------------------------------------------


async def test_names_are_unique_and_found_by_lookup() -> None:
    """A name finds its ref; a second actor under a taken name is refused."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        assert rt.ref("calc") == calc
        assert calc.name == "calc"
        with pytest.raises(corral.NameTaken, match="'calc' is already in use"):
            await rt.spawn(Calculator, name="calc")
        with pytest.raises(corral.ActorNotFound, match="no live actor named 'nope'"):
            rt.ref("nope")
        assert rt.refs() == (calc,)
        assert set(rt.status()) == {"calc"}


async def test_a_stopped_actors_name_can_be_reused() -> None:
    """After an actor stopped for good its name is free again."""
    async with corral.Runtime() as rt:
        first = await rt.spawn(Calculator, name="calc")
        await first.stop()
        with pytest.raises(corral.ActorNotFound):
            rt.ref("calc")
        second = await rt.spawn(Calculator, name="calc")
        assert second != first
        assert await second.ask(Add(a=1, b=1)) == 2


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"mailbox": 0}, ValueError, "mailbox capacity must be >= 1, got 0"),
        ({"mailbox": -5}, ValueError, "mailbox capacity must be >= 1, got -5"),
        ({"mailbox": 2.5}, TypeError, "mailbox capacity must be an int, got 2.5"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency must be >= 1, got 0"),
        ({"max_concurrency": True}, TypeError, "max_concurrency must be an int"),
        ({"shutdown": -1.0}, ValueError, "shutdown must be >= 0 seconds or None, got -1.0"),
        ({"shutdown": float("nan")}, ValueError, "shutdown must be >= 0"),
        ({"name": ""}, ValueError, "child name must be a non-empty str"),
    ],
)
async def test_bad_configuration_is_refused_and_changes_nothing(
    settings: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Out-of-range settings raise a clear error at spawn and register nothing."""
    async with corral.Runtime() as rt:
        options: dict[str, Any] = {"name": "calc", **settings}
        with pytest.raises(error, match=match):
            await rt.spawn(Calculator, **options)
        assert rt.refs() == ()
        assert (await rt.spawn(Calculator, name="calc")).name == "calc"


def test_bad_runtime_configuration_is_refused() -> None:
    """A negative shutdown timeout or a non-instrument is refused at construction."""
    with pytest.raises(ValueError, match="shutdown_timeout must be >= 0"):
        corral.Runtime(shutdown_timeout=-1)
    with pytest.raises(TypeError, match=r"corral\.Instrument"):
        corral.Runtime(instruments=[object()])  # type: ignore[list-item]


async def test_spawn_outside_the_runtime_block_is_refused() -> None:
    """Spawning before entering or after leaving the runtime raises InvalidStateError."""
    rt = corral.Runtime()
    with pytest.raises(corral.InvalidStateError, match="runtime is new"):
        await rt.spawn(Calculator, name="calc")
    async with rt:
        pass
    with pytest.raises(corral.InvalidStateError, match="runtime is closed"):
        await rt.spawn(Calculator, name="calc")
    with pytest.raises(corral.InvalidStateError, match="entered only once"):
        async with rt:
            pass


async def test_spawn_needs_an_actor_that_declares_messages() -> None:
    """A factory that makes no Actor, or an Actor with no message types, is refused."""

    class Nothing(corral.Actor[Any, Any]):
        pass

    async with corral.Runtime() as rt:
        with pytest.raises(TypeError, match="spawn needs an Actor"):
            await rt.spawn(lambda: object(), name="x")  # type: ignore[arg-type,return-value]
        with pytest.raises(TypeError, match="handles no message types"):
            await rt.spawn(Nothing, name="x")
        assert rt.refs() == ()


# --- sending refusals ------------------------------------------------------------------


async def test_unhandled_and_non_attrs_messages_are_refused_at_the_ref() -> None:
    """A message the actor does not declare, or a non-attrs payload, is refused before queueing."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        with pytest.raises(corral.UnhandledMessage, match=r"does not handle Echo; it handles: Add"):
            await calc.ask(Echo(text="x"))  # type: ignore[arg-type]
        with pytest.raises(corral.UnhandledMessage, match="was sent a int, which is not a corral"):
            await calc.submit(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):  # UnhandledMessage is a TypeError
            calc.try_submit({"a": 1})  # type: ignore[arg-type]
        with pytest.raises(corral.UnhandledMessage):
            await calc.tell(Echo(text="x"))  # type: ignore[arg-type]
        status = calc.status()
        assert status.queue_depth == 0
        assert sum(status.counts.values()) == 0


async def test_a_dataclass_payload_is_refused_naming_its_type_once() -> None:
    """Regression: the refusal of a dataclass said its type twice (name, then repr)."""

    @dataclasses.dataclass
    class Plain:
        a: int

    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        with pytest.raises(corral.UnhandledMessage) as info:
            await calc.ask(Plain(a=1))  # type: ignore[arg-type]
        assert str(info.value).count("Plain") == 1, str(info.value)
        assert "@corral.message" in str(info.value)


@pytest.mark.parametrize("bad", ["5", [1], True, b"1"])
async def test_a_timeout_of_the_wrong_type_is_a_type_error_naming_timeout(bad: object) -> None:
    """timeout="5" is a TypeError that names timeout, and nothing is queued."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        for send in (calc.ask, calc.submit):
            with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
                await send(Add(a=1, b=2), timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="timeout must be a number"):
            calc.try_submit(Add(a=1, b=2), timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="timeout must be a number"):
            await calc.ping(timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="stop timeout must be a number"):
            await calc.stop(timeout=bad)  # type: ignore[arg-type]
        assert sum(calc.status().counts.values()) == 0
        assert await calc.ask(Add(a=1, b=2)) == 3


async def test_negative_timeout_is_refused() -> None:
    """A negative or NaN timeout is a ValueError that names it."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        with pytest.raises(ValueError, match="timeout must be >= 0 seconds or None, got -1"):
            await calc.ask(Add(a=1, b=2), timeout=-1)
        with pytest.raises(ValueError, match="got nan"):
            await calc.submit(Add(a=1, b=2), timeout=float("nan"))


async def test_sending_to_a_stopped_actor_raises_actor_stopped() -> None:
    """A ref whose actor stopped refuses every send with ActorStopped."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        assert await calc.ask(Add(a=1, b=1)) == 2
        await calc.stop()
        assert calc.state is ActorState.STOPPED
        with pytest.raises(corral.ActorStopped, match="not accepting calls"):
            await calc.ask(Add(a=1, b=1))
        with pytest.raises(corral.ActorStopped):
            calc.try_submit(Add(a=1, b=1))
        with pytest.raises(corral.ActorStopped):
            await calc.tell(Add(a=1, b=1))
        with pytest.raises(corral.ActorStopped):
            await calc.ping()


def test_refs_futures_calls_and_streams_have_no_public_constructor() -> None:
    """ActorRef, Future, Call and Stream are made by the runtime only; the error says how."""
    with pytest.raises(TypeError, match=r"ActorRef has no public constructor; use Runtime\.spawn"):
        corral.ActorRef()
    with pytest.raises(TypeError, match=r"Future has no public constructor; ActorRef\.submit"):
        corral.Future()
    with pytest.raises(TypeError, match="Call has no public constructor"):
        corral.Call()
    with pytest.raises(TypeError, match=r"Stream has no public constructor; use ActorRef\.stream"):
        corral.Stream()


# --- mailbox back-pressure -------------------------------------------------------------


async def test_try_submit_refuses_when_full_and_nothing_is_queued() -> None:
    """try_submit/try_tell raise MailboxFull at capacity and leave the queue as it was."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", mailbox=2)
        running = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        queued = [ref.try_submit(Echo(text="1")), ref.try_submit(Echo(text="2"))]
        with pytest.raises(corral.MailboxFull, match="mailbox of actor 'gate' is full"):
            ref.try_submit(Echo(text="3"))
        with pytest.raises(corral.MailboxFull):
            ref.try_tell(Echo(text="4"))
        assert ref.status().queue_depth == 2
        gate.gates["b"].set()
        assert [await running, *[await f for f in queued]] == ["b", "1", "2"]
        assert gate.started == ["b", "1", "2"]


async def test_submit_waits_for_room_first_come_first_served() -> None:
    """A full mailbox makes submit wait; waiting senders get in in the order they came."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", mailbox=1)
        running = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        await ref.submit(Echo(text="q"))
        results: list[str] = []

        async def sender(text: str) -> None:
            results.append(await ref.ask(Echo(text=text)))

        async with anyio.create_task_group() as tg:
            for text in ("w1", "w2", "w3"):
                tg.start_soon(sender, text)
                await anyio.wait_all_tasks_blocked()
            assert ref.status().queue_depth == 1
            assert ref.status().waiting_senders == 3
            gate.gates["b"].set()
        await running
        assert gate.started == ["b", "q", "w1", "w2", "w3"]
        assert sorted(results) == ["w1", "w2", "w3"]


async def test_cancelled_waiting_sender_leaves_no_call_behind() -> None:
    """A sender cancelled while waiting for room queues nothing."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", mailbox=1)
        running = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        await ref.submit(Echo(text="q"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.submit, Echo(text="never"))
            await anyio.wait_all_tasks_blocked()
            assert ref.status().waiting_senders == 1
            tg.cancel_scope.cancel()  # the sender gives up while it waits for room
        assert ref.status().waiting_senders == 0
        gate.gates["b"].set()
        await running
        await ref.ping()
        assert gate.started == ["b", "q"]


async def test_waiting_senders_fail_when_the_actor_stops() -> None:
    """Senders waiting on a full mailbox get ActorStopped when the actor stops."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", mailbox=1)
        await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        await ref.submit(Echo(text="q"))
        errors: list[BaseException] = []

        async def sender() -> None:
            try:
                await ref.submit(Echo(text="w"))
            except corral.ActorStopped as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            await ref.stop(timeout=0)
        assert len(errors) == 1


async def test_ping_gets_through_a_full_mailbox_behind_the_queue() -> None:
    """System messages bypass the capacity but keep their place in line."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", mailbox=1)
        running = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        await ref.submit(Echo(text="q"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ping)
            await anyio.wait_all_tasks_blocked()
            assert ref.status().queue_depth == 2
            gate.gates["b"].set()
        await running
        assert gate.started == ["b", "q"]


# --- the no-hang guarantee ------------------------------------------------------------


def _pending(futures: list[corral.Future[Any]]) -> list[corral.Future[Any]]:
    return [f for f in futures if not f.done()]


async def _fill(ref: corral.ActorRef[Any, Any], gate: Gate) -> list[corral.Future[Any]]:
    """Two running calls and three queued ones."""
    futures = [await ref.submit(Block(key="r1")), await ref.submit(Block(key="r2"))]
    await gate.entered_event("r1").wait()
    await gate.entered_event("r2").wait()
    futures += [await ref.submit(Echo(text=f"q{i}")) for i in range(3)]
    return futures


async def test_no_future_pending_after_a_normal_exit_that_runs_out_of_time() -> None:
    """Normal exit drains up to shutdown_timeout, then fails what is left with ActorStopped."""
    gate = Gate()
    async with corral.Runtime(shutdown_timeout=0.05) as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
        futures = await _fill(ref, gate)
    assert _pending(futures) == []
    for f in futures:
        assert isinstance(f.exception(), corral.ActorStopped)
    assert ref.state is ActorState.STOPPED


async def test_normal_exit_drains_queued_and_running_calls() -> None:
    """On a normal exit every accepted call is served before the actor stops."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
        futures = await _fill(ref, gate)
        # Open the gates from a task that outlives the block's body.
        rt_tg_opened = anyio.Event()

        async def opener() -> None:
            await rt_tg_opened.wait()
            for key in ("r1", "r2"):
                gate.gates[key].set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(opener)
            rt_tg_opened.set()
    assert [f.result() for f in futures] == ["r1", "r2", "q0", "q1", "q2"]


async def test_no_future_pending_after_an_exception_in_the_block() -> None:
    """An exception inside the block cancels every call and propagates unchanged."""
    gate = Gate()
    futures: list[corral.Future[Any]] = []
    with pytest.raises(RuntimeError, match="user error") as info:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
            futures = await _fill(ref, gate)
            raise RuntimeError("user error")
    assert type(info.value) is RuntimeError  # not an exception group
    assert _pending(futures) == []
    assert all(isinstance(f.exception(), corral.ActorStopped) for f in futures)


async def test_no_future_pending_after_the_enclosing_scope_is_cancelled() -> None:
    """Cancelling the scope around the runtime resolves every future and leaks nothing."""
    gate = Gate()
    futures: list[corral.Future[Any]] = []
    with anyio.CancelScope() as outer:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
            futures = await _fill(ref, gate)
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert _pending(futures) == []
    assert all(isinstance(f.exception(), corral.ActorStopped) for f in futures)


async def test_no_future_pending_after_a_crashing_handler() -> None:
    """A fatal handler error crashes the actor: every other call fails with ActorCrashed."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
        running = [await ref.submit(Block(key="r1")), await ref.submit(Block(key="r2"))]
        await gate.entered_event("r1").wait()
        await gate.entered_event("r2").wait()
        crash = await ref.submit(Boom(kind="fatal"))  # next in line
        queued = [await ref.submit(Echo(text=f"q{i}")) for i in range(3)]
        gate.gates["r1"].set()
        with pytest.raises(KeyError, match="fatal boom"):
            await crash
        await ref.wait_stopped()
        assert ref.state is ActorState.CRASHED
    assert _pending([*running, crash, *queued]) == []
    assert running[0].result() == "r1"
    for f in [running[1], *queued]:
        err = f.exception()
        assert isinstance(err, corral.ActorCrashed)
        assert isinstance(err.__cause__, KeyError)
    assert gate.started == ["r1", "r2", "boom:fatal"]


async def test_queue_depth_in_flight_wait_stopped_and_the_calls_public_view() -> None:
    """The seams upper layers use: ref.queue_depth/in_flight, wait_stopped, Call's accessors."""
    gate = Gate()
    seen: list[tuple[Any, ...]] = []

    class Watch(corral.Instrument):
        def call_resolved(self, call: corral.Call) -> None:
            seen.append((call.outcome, call.status, call.actor_class, call.actor_ref.name))
            seen.append(tuple(type(i).__name__ for i in call.instruments))

    async with corral.Runtime(instruments=[Watch()]) as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        running = await ref.submit(Block(key="r"))
        await gate.entered_event("r").wait()
        queued = [await ref.submit(Echo(text="q")) for _ in range(2)]
        assert (ref.queue_depth, ref.in_flight) == (2, 1)
        assert await ref.wait_stopped(timeout=0) is False  # still there; nothing changed
        assert (ref.queue_depth, ref.in_flight) == (2, 1)
        gate.gates["r"].set()
        assert await running == "r" and [await f for f in queued] == ["q", "q"]
        assert (ref.queue_depth, ref.in_flight) == (0, 0)
        await ref.stop()
        assert await ref.wait_stopped(timeout=5) is True
        assert await ref.wait_stopped() is True
    # Resolved, not yet left the pile: the outcome is known, the status still running.
    assert seen[0] == (CallStatus.SUCCEEDED, CallStatus.RUNNING, Gate, "gate")
    assert "Watch" in seen[1]


async def test_crash_raised_on_purpose_crashes_the_actor(
    caplog_corral: pytest.LogCaptureFixture,
) -> None:
    """corral.Crash from a handler crashes the actor; the crash is logged, calls fail."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        with pytest.raises(corral.Crash, match="asked to crash"):
            await ref.ask(Boom(kind="crash"))
        await ref.wait_stopped()
        assert ref.state is ActorState.CRASHED
        with pytest.raises(corral.ActorStopped):
            await ref.ask(Echo(text="x"))
        with pytest.raises(corral.ActorNotFound):
            rt.ref("gate")
    assert any(
        "child 'gate' crashed: Crash: asked to crash" in r.message for r in caplog_corral.records
    )


async def test_no_task_outlives_the_runtime() -> None:
    """Every task the runtime started is gone when its block exits, on every path."""
    before = {t.id for t in anyio.get_running_tasks()}

    async def body(rt: corral.Runtime) -> None:
        gate = Gate()
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=3)
        await _fill(ref, gate)
        calc = await rt.spawn(Calculator, name="calc", max_concurrency=4)
        await calc.ask(Add(a=1, b=1))
        await rt.spawn(Calculator, name="idle")

    paths: list[Callable[[], Awaitable[None]]] = []

    async def normal() -> None:
        async with corral.Runtime(shutdown_timeout=0.05) as rt:
            await body(rt)

    async def error() -> None:
        with pytest.raises(ZeroDivisionError):
            async with corral.Runtime() as rt:
                await body(rt)
                _ = 1 / 0

    async def cancelled() -> None:
        with anyio.CancelScope() as scope:
            async with corral.Runtime() as rt:
                await body(rt)
                scope.cancel()
                await anyio.sleep_forever()

    paths += [normal, error, cancelled]
    for path in paths:
        await path()
        assert {t.id for t in anyio.get_running_tasks()} == before, path.__name__


# --- lifecycle hooks --------------------------------------------------------------------


class Lifecycle(corral.Actor[Echo, str]):
    log: list[str]

    def __init__(self, log: list[str], fail_start: bool = False, slow_stop: bool = False) -> None:
        self.log = log
        self.fail_start = fail_start
        self.slow_stop = slow_stop

    async def on_start(self) -> None:
        self.log.append(f"start {self.name}")
        await anyio.lowlevel.checkpoint()
        if self.fail_start:
            raise ConnectionError("no backend")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.slow_stop:
            await anyio.sleep_forever()

    async def handle(self, msg: Echo) -> str:
        self.log.append(f"handle {msg.text}")
        return msg.text


async def test_on_start_runs_before_calls_and_on_stop_after() -> None:
    """on_start finishes before spawn returns; on_stop runs after the last call."""
    log: list[str] = []
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: Lifecycle(log), name="life")
        assert log == ["start life"]
        assert await ref.ask(Echo(text="hi")) == "hi"
    assert log == ["start life", "handle hi", "stop life"]


async def test_actors_stop_in_reverse_spawn_order() -> None:
    """The runtime stops its actors in the reverse of the order they were spawned."""
    log: list[str] = []
    async with corral.Runtime() as rt:
        for name in ("a", "b", "c"):
            await rt.spawn(lambda: Lifecycle(log), name=name)
    assert [entry for entry in log if entry.startswith("stop")] == ["stop c", "stop b", "stop a"]


async def test_failing_on_start_fails_spawn_and_frees_the_name() -> None:
    """An on_start error makes spawn raise ActorCrashed from it; on_stop does not run."""
    log: list[str] = []
    async with corral.Runtime() as rt:
        with pytest.raises(corral.ActorCrashed, match="failed to start") as info:
            await rt.spawn(lambda: Lifecycle(log, fail_start=True), name="life")
        assert isinstance(info.value.__cause__, ConnectionError)
        with pytest.raises(corral.ActorNotFound):
            rt.ref("life")
        await rt.spawn(lambda: Lifecycle(log), name="life")
    assert log == ["start life", "start life", "stop life"]


async def test_on_stop_is_bounded_by_the_shutdown_time(
    caplog_corral: pytest.LogCaptureFixture,
) -> None:
    """An on_stop that hangs is cancelled after the actor's shutdown time."""
    log: list[str] = []
    async with corral.Runtime() as rt:
        await rt.spawn(lambda: Lifecycle(log, slow_stop=True), name="life", shutdown=0.05)
    assert log == ["start life", "stop life"]
    assert any("on_stop of actor 'life' was cancelled" in r.message for r in caplog_corral.records)


async def test_stop_with_timeout_zero_cancels_at_once() -> None:
    """ref.stop(timeout=0) cancels running calls and fails queued ones with ActorStopped."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
        futures = await _fill(ref, gate)
        await ref.stop(timeout=0)
        assert _pending(futures) == []
        assert all(isinstance(f.exception(), corral.ActorStopped) for f in futures)
        status = ref.status()
        assert status.state is ActorState.STOPPED
        assert status.counts[CallStatus.FAILED] == 5


async def test_actor_knows_its_ref_and_name() -> None:
    """Inside the runtime an actor reaches its own ref and name; outside it cannot."""

    class SelfAware(corral.Actor[Echo, str]):
        async def handle(self, msg: Echo) -> str:
            assert self.ref.name == self.name
            return self.name

    lone = SelfAware()
    with pytest.raises(corral.InvalidStateError, match="not running in a corral runtime"):
        _ = lone.ref
    async with corral.Runtime() as rt:
        ref = await rt.spawn(SelfAware, name="me")
        assert await ref.ask(Echo(text="")) == "me"


# --- envelopes from elsewhere -------------------------------------------------------------


async def test_deliver_routes_a_decoded_envelope_and_answers() -> None:
    """An envelope that crossed a process boundary is delivered by target and answered."""
    proto = corral.Protocol([Add])
    async with corral.Runtime() as rt:
        await rt.spawn(Calculator, name="calc")
        wire = proto.dumps(corral.Envelope(payload=Add(a=20, b=22), target="calc"))
        request = proto.loads(wire)
        fut = await rt.deliver(request)
        assert fut is not None
        reply = request.reply(await fut)
        assert reply.reply_to == request.id
        assert proto.loads(proto.dumps(corral.Envelope(payload=Add(a=await fut, b=0), target="x")))


async def test_deliver_applies_the_wire_deadline() -> None:
    """An envelope whose wall-clock deadline has passed is not run."""
    import time

    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        expired = corral.Envelope(payload=Echo(text="old"), target="gate", deadline=time.time() - 1)
        fut = await rt.deliver(expired)
        assert fut is not None
        with pytest.raises(corral.DeadlineExceeded):
            await fut
        await ref.ping()
        assert gate.started == []


async def test_system_envelopes_ping_status_and_stop() -> None:
    """Ping is answered with Pong, GetStatus with the status, Stop stops the actor."""
    system = corral.Kind.SYSTEM
    async with corral.Runtime() as rt:
        ref = await rt.spawn(Calculator, name="calc")
        pong = await rt.deliver(corral.Envelope(payload=corral.Ping(), target="calc", kind=system))
        assert pong is not None and await pong == corral.Pong(name="calc")
        status = await rt.deliver(
            corral.Envelope(payload=corral.GetStatus(), target="calc", kind=system)
        )
        assert status is not None and (await status).name == "calc"
        await ref.ask(Add(a=1, b=1))
        stop = await rt.deliver(corral.Envelope(payload=corral.Stop(), target="calc", kind=system))
        assert stop is not None
        await stop
        await ref.wait_stopped()
        assert ref.state is ActorState.STOPPED
        with pytest.raises(corral.ActorNotFound):
            await rt.deliver(corral.Envelope(payload=Add(a=1, b=1), target="calc"))


async def test_deliver_refuses_replies_and_unknown_system_messages() -> None:
    """A reply envelope or an unknown system payload is refused with a clear error."""
    async with corral.Runtime() as rt:
        await rt.spawn(Calculator, name="calc")
        with pytest.raises(ValueError, match="reply envelope"):
            await rt.deliver(
                corral.Envelope(payload=Add(a=1, b=1), target="calc", kind=corral.Kind.REPLY)
            )
        with pytest.raises(corral.UnhandledMessage, match="unknown system message"):
            await rt.deliver(
                corral.Envelope(payload=Add(a=1, b=1), target="calc", kind=corral.Kind.SYSTEM)
            )


async def test_one_way_envelope_returns_no_future() -> None:
    """A one-way envelope is queued and returns None."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        out = await rt.deliver(
            corral.Envelope(payload=Echo(text="x"), target="gate", kind=corral.Kind.ONE_WAY)
        )
        assert out is None
        await ref.ping()
        assert gate.started == ["x"]


async def test_the_tests_run_asyncio_in_debug_mode(
    anyio_backend_name: str, anyio_backend_options: dict[str, Any]
) -> None:
    """conftest runs asyncio with debug=True, so never-awaited coroutines and slow steps show."""
    if anyio_backend_name == "asyncio":
        import asyncio

        assert asyncio.get_running_loop().get_debug()
    else:
        assert anyio_backend_options == {}
