"""Calls: robust workers, ordering, concurrency, deadlines, cancellation and the pile."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import corral
from corral import CallStatus

from .helpers import Add, Block, Boom, Calculator, CallLog, Echo, Gate

pytestmark = pytest.mark.anyio


async def test_ask_returns_the_handlers_reply() -> None:
    """ask() sends a request and returns what handle() returned."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        assert await calc.ask(Add(a=2, b=3)) == 5


async def test_a_failing_call_never_harms_its_siblings() -> None:
    """A handler's exception goes to its own caller only; calls around it succeed."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=4)
        gate.gates["slow"] = anyio.Event()
        slow = await ref.submit(Block(key="slow"))
        await gate.entered_event("slow").wait()
        with pytest.raises(ValueError, match="boom"):
            await ref.ask(Boom())
        assert await ref.ask(Echo(text="after")) == "after"
        gate.gates["slow"].set()
        assert await slow == "slow"
        status = ref.status()
        assert status.counts[CallStatus.FAILED] == 1
        assert status.counts[CallStatus.SUCCEEDED] == 2
        assert status.state is corral.ActorState.RUNNING


async def test_max_concurrency_one_serves_in_arrival_order() -> None:
    """With the default max_concurrency=1 calls run strictly one after another, in order."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        first = await ref.submit(Block(key="first"))
        rest = [await ref.submit(Echo(text=str(i))) for i in range(5)]
        await gate.entered_event("first").wait()
        await anyio.lowlevel.checkpoint()
        assert gate.started == ["first"]
        assert ref.status().queue_depth == 5
        gate.gates["first"].set()
        assert [await f for f in rest] == ["0", "1", "2", "3", "4"]
        assert await first == "first"
        assert gate.started == ["first", "0", "1", "2", "3", "4"]


async def test_max_concurrency_bounds_calls_in_flight() -> None:
    """No more than max_concurrency handlers run at once; the rest wait queued."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=3)
        futures = [await ref.submit(Block(key=f"k{i}")) for i in range(5)]
        for i in range(3):
            await gate.entered_event(f"k{i}").wait()
        await anyio.lowlevel.checkpoint()
        status = ref.status()
        assert status.in_flight == 3
        assert status.queue_depth == 2
        assert sorted(gate.started) == ["k0", "k1", "k2"]
        for i in range(5):
            gate.gates.setdefault(f"k{i}", anyio.Event()).set()
        assert [await f for f in futures] == [f"k{i}" for i in range(5)]
        assert ref.status().in_flight == 0


async def test_submit_returns_a_future_before_the_call_runs() -> None:
    """submit() returns once accepted; the future resolves when the handler finishes."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        fut = await ref.submit(Block(key="x"))
        assert not fut.done()
        await gate.entered_event("x").wait()
        assert ref.status().counts[CallStatus.RUNNING] == 1
        gate.gates["x"].set()
        assert await fut == "x"
        assert fut.done()
        assert fut.result() == "x"
        assert fut.exception() is None


async def test_deadline_passed_while_queued_never_runs() -> None:
    """A call whose deadline passes in the queue fails DeadlineExceeded and is not run."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        blocker = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        late = await ref.submit(Echo(text="late"), timeout=0.05)
        with pytest.raises(corral.DeadlineExceeded, match="while queued"):
            await late
        assert ref.status().queue_depth == 0  # it left the queue at once
        gate.gates["b"].set()
        await blocker
        await ref.ping()
        assert "late" not in gate.started
        assert ref.status().counts[CallStatus.EXPIRED] == 1


async def test_expired_call_nobody_waits_for_is_skipped_by_the_worker() -> None:
    """Without a waiter, a queued call past its deadline is expired when dequeued."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        blocker = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        late = await ref.submit(Echo(text="late"), timeout=0)
        gate.gates["b"].set()
        await blocker
        await ref.ping()
        assert late.done()
        assert isinstance(late.exception(), corral.DeadlineExceeded)
        assert "late" not in gate.started


async def test_running_call_is_cancelled_at_its_deadline() -> None:
    """A handler still running at the deadline is cancelled; the caller gets DeadlineExceeded."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        with pytest.raises(corral.DeadlineExceeded):
            await ref.ask(Block(key="never"), timeout=0.05)
        # The actor is free again: the handler really was cancelled.
        assert await ref.ask(Echo(text="next"), timeout=5) == "next"
        await ref.ping()
        status = ref.status()
        assert status.counts[CallStatus.EXPIRED] == 1
        assert status.in_flight == 0


async def test_deadline_error_is_a_timeout_error() -> None:
    """DeadlineExceeded is a TimeoutError, so generic timeout handling catches it."""
    assert issubclass(corral.DeadlineExceeded, TimeoutError)


async def test_cancelling_an_ask_removes_the_queued_call() -> None:
    """A caller cancelled while its call is queued takes the call out of the queue."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        blocker = await ref.submit(Block(key="b"))
        await gate.entered_event("b").wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Echo(text="doomed"))
            await anyio.wait_all_tasks_blocked()
            assert ref.status().queue_depth == 1
            tg.cancel_scope.cancel()
        assert ref.status().queue_depth == 0
        gate.gates["b"].set()
        await blocker
        await ref.ping()
        assert "doomed" not in gate.started
        assert ref.status().counts[CallStatus.CANCELLED] == 1


async def test_cancelling_an_ask_cancels_the_running_handler() -> None:
    """A caller cancelled while its handler runs cancels that handler, not the actor."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.ask, Block(key="stuck"))
            await gate.entered_event("stuck").wait()
            tg.cancel_scope.cancel()  # the caller gives up while its handler runs
        assert gate.started == ["stuck"]
        assert await ref.ask(Echo(text="alive")) == "alive"
        status = ref.status()
        assert status.counts[CallStatus.CANCELLED] == 1
        assert status.in_flight == 0


async def test_future_cancel_resolves_at_once_and_stops_the_handler() -> None:
    """Future.cancel() resolves the future with CallCancelled and cancels the running handler."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", max_concurrency=2)
        fut = await ref.submit(Block(key="stuck"))
        other = await ref.submit(Block(key="other"))
        await gate.entered_event("stuck").wait()
        await gate.entered_event("other").wait()
        assert fut.cancel() is True
        assert fut.cancelled()
        assert fut.cancel() is False
        with pytest.raises(corral.CallCancelled):
            await fut
        await ref.ping()
        assert not other.done()  # the sibling keeps running
        gate.gates["other"].set()
        assert await other == "other"


async def test_late_cancellation_never_hits_the_next_call() -> None:
    """Cancelling a call that just finished does not cancel the call the worker takes next."""
    async with corral.Runtime() as rt:
        ref = await rt.spawn(Calculator, name="calc")
        for i in range(50):
            fut = await ref.submit(Add(a=i, b=0))
            nxt = await ref.submit(Add(a=i, b=1))
            assert await fut == i
            fut.cancel()  # already done: a no-op
            assert await nxt == i + 1


async def test_handler_that_swallows_cancellation_still_ends_cancelled() -> None:
    """The future stays CallCancelled even if the handler returns a value after cancellation."""

    class Stubborn(corral.Actor[Echo, str]):
        def __init__(self) -> None:
            self.entered = anyio.Event()
            self.release = anyio.Event()

        async def handle(self, msg: Echo) -> str:
            self.entered.set()
            with anyio.CancelScope(shield=True):
                await self.release.wait()
            return msg.text

    actor = Stubborn()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: actor, name="stubborn")
        fut = await ref.submit(Echo(text="x"))
        await actor.entered.wait()
        fut.cancel()
        actor.release.set()
        await ref.ping()
        assert fut.cancelled()
        assert ref.status().counts[CallStatus.CANCELLED] == 1


async def test_tell_is_one_way_and_its_errors_are_logged(
    caplog_corral: pytest.LogCaptureFixture,
) -> None:
    """tell() returns no future; a failing one-way call is logged and counted."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        assert await ref.tell(Echo(text="hello")) is None
        await ref.tell(Boom())
        await ref.ping()
        assert gate.started == ["hello", "boom:value"]
        assert ref.status().counts[CallStatus.FAILED] == 1
    assert any("one-way Boom to actor 'gate' failed" in r.message for r in caplog_corral.records)


async def test_status_snapshot_reports_the_pile() -> None:
    """status() gives counts by status, queue depth, in-flight, oldest wait and recent calls."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate", mailbox=10)
        first = await ref.submit(Block(key="a"))
        await gate.entered_event("a").wait()
        queued = [await ref.submit(Echo(text=str(i))) for i in range(3)]
        status = ref.status()
        assert status.name == "gate"
        assert status.actor_class == "Gate"
        assert status.queue_depth == 3
        assert status.in_flight == 1
        assert status.counts[CallStatus.QUEUED] == 3
        assert status.counts[CallStatus.RUNNING] == 1
        assert status.oldest_wait is not None and status.oldest_wait >= 0
        assert status.mailbox_capacity == 10
        assert [c.status for c in status.active] == [
            CallStatus.RUNNING,
            CallStatus.QUEUED,
            CallStatus.QUEUED,
            CallStatus.QUEUED,
        ]
        assert status.active[0].message_type == "Block"
        gate.gates["a"].set()
        await first
        for f in queued:
            await f
        status = ref.status()
        assert status.oldest_wait is None
        assert status.active == ()
        assert [c.status for c in status.recent] == [CallStatus.SUCCEEDED] * 4
        assert all(
            c.finished_at is not None and c.started_at is not None and c.enqueued_at <= c.started_at
            for c in status.recent
        )


async def test_history_is_bounded_and_oldest_first() -> None:
    """The pile keeps only the last DEFAULT_HISTORY finished calls, oldest first."""
    log = CallLog()
    async with corral.Runtime(instruments=[log]) as rt:
        ref = await rt.spawn(Calculator, name="calc")
        total = corral.DEFAULT_HISTORY + 7
        futures = [await ref.submit(Add(a=i, b=0)) for i in range(total)]
        for f in futures:
            await f
        ids = [str(call.envelope.id) for call in log.accepted]
        assert len(ids) == total
        recent = ref.status().recent
        assert len(recent) == corral.DEFAULT_HISTORY
        assert [c.id for c in recent] == ids[-corral.DEFAULT_HISTORY :]
        assert ref.status().counts[CallStatus.SUCCEEDED] == total


async def test_failed_call_error_is_in_the_history() -> None:
    """A failed call's error type and message show in the status view."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        with pytest.raises(ValueError, match="boom"):
            await ref.ask(Boom())
        (info,) = ref.status().recent
        assert info.status is CallStatus.FAILED
        assert info.error == "ValueError: boom"


async def test_calls_of_many_concurrent_callers_all_resolve() -> None:
    """Many callers against one actor with back-pressure: every call gets its own reply."""
    async with corral.Runtime() as rt:
        ref = await rt.spawn(Calculator, name="calc", mailbox=4, max_concurrency=3)
        results: dict[int, int] = {}

        async def caller(i: int) -> None:
            results[i] = await ref.ask(Add(a=i, b=i))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(caller, i)
        assert results == {i: 2 * i for i in range(200)}
        assert ref.status().counts[CallStatus.SUCCEEDED] == 200


async def test_each_call_keeps_its_own_context() -> None:
    """Handlers see the actor's context, not the submitting caller's context variables."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    class Reader(corral.Actor[Echo, str]):
        async def handle(self, msg: Echo) -> str:
            return var.get()

    async with corral.Runtime() as rt:
        ref = await rt.spawn(Reader, name="reader", max_concurrency=2)
        var.set("caller")
        assert await ref.ask(Echo(text="")) == "unset"


async def test_call_deadline_still_holds_while_the_actor_drains() -> None:
    """A stop with a long drain time does not stretch a running call's own deadline."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        fut = await ref.submit(Block(key="slow"), timeout=0.05)
        await gate.entered_event("slow").wait()
        # Nobody awaits the future: the actor itself must end the call at its deadline.
        with anyio.fail_after(10):
            await ref.stop(timeout=30)
        assert isinstance(fut.exception(), corral.DeadlineExceeded)
        assert ref.status().counts[CallStatus.EXPIRED] == 1


async def test_stop_cuts_a_call_with_a_later_deadline() -> None:
    """stop(timeout=0) ends a running call at once even if its own deadline is far away."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        fut = await ref.submit(Block(key="slow"), timeout=60)
        await gate.entered_event("slow").wait()
        await ref.stop(timeout=0)
        assert isinstance(fut.exception(), corral.ActorStopped)


async def test_an_actor_asking_itself_is_refused_instead_of_deadlocking() -> None:
    """With max_concurrency=1 a handler asking its own actor would wait forever: refused."""

    class Selfish(corral.Actor[Echo, str]):
        async def handle(self, msg: Echo) -> str:
            if msg.text == "again":
                return "inner"
            return await self.ref.ask(Echo(text="again"))

    async with corral.Runtime() as rt:
        ref = await rt.spawn(Selfish, name="selfish")
        with pytest.raises(corral.InvalidStateError, match="asked itself"):
            await ref.ask(Echo(text="first"), timeout=5)
        wide = await rt.spawn(Selfish, name="wide", max_concurrency=2)
        assert await wide.ask(Echo(text="first"), timeout=5) == "inner"


async def test_status_counts_are_keyed_by_status_names_and_print_readably() -> None:
    """Regression: status views printed enum reprs; counts are keyed by names, str() is readable."""
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        for i in range(3):
            await calc.ask(Add(a=i, b=1))
        status = calc.status()
        assert dict(status.counts) == {
            "succeeded": 3,
            "failed": 0,
            "cancelled": 0,
            "expired": 0,
            "queued": 0,
            "running": 0,
        }
        assert all(type(key) is str for key in status.counts)
        assert status.counts[CallStatus.SUCCEEDED] == status.counts["succeeded"] == 3
        assert "CallStatus" not in repr(status.counts)
        text = str(status)
        lines = text.splitlines()
        assert lines[0] == "actor 'calc' (Calculator): running, restarts 0"
        assert "3 succeeded, 0 failed, 0 cancelled, 0 expired" in lines[1]
        assert "0 queued of 1000" in lines[2]
        assert "recent:" in text
        assert sum("Add  succeeded  attempt 1" in line for line in lines) == 3
        assert "<" not in text  # no reprs of enums or objects
