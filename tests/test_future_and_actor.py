"""The backend-neutral future, and how an actor class declares what it handles."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import corral

from .helpers import Add, Block, Boom, Calculator, Echo, Gate

pytestmark = pytest.mark.anyio


async def test_future_reads_and_callbacks() -> None:
    """done/result/exception behave as documented; callbacks run once, in order."""
    gate = Gate()
    seen: list[str] = []
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        fut = await ref.submit(Block(key="k"))
        await gate.entered_event("k").wait()
        assert not fut.done()
        assert not fut.cancelled()
        with pytest.raises(corral.InvalidStateError, match="pending"):
            fut.result()
        with pytest.raises(corral.InvalidStateError, match="pending"):
            fut.exception()
        fut.add_done_callback(lambda f: seen.append(f"first {f.result()}"))
        fut.add_done_callback(lambda f: seen.append("second"))
        removed = fut.add_done_callback
        dropped = lambda f: seen.append("dropped")  # noqa: E731
        removed(dropped)
        assert fut.remove_done_callback(dropped) == 1
        assert "pending" in repr(fut)
        gate.gates["k"].set()
        assert await fut == "k"
        assert seen == ["first k", "second"]
        fut.add_done_callback(lambda f: seen.append("late"))
        assert seen[-1] == "late"
        assert repr(fut) == "<corral.Future done>"


async def test_failing_callback_is_logged_not_raised(
    caplog_corral: pytest.LogCaptureFixture,
) -> None:
    """A done-callback that raises is logged; the call and other callbacks are unaffected."""
    seen: list[int] = []
    async with corral.Runtime() as rt:
        calc = await rt.spawn(Calculator, name="calc")
        fut = await calc.submit(Add(a=1, b=1))
        fut.add_done_callback(lambda f: 1 / 0)
        fut.add_done_callback(lambda f: seen.append(f.result()))
        assert await fut == 2
    assert seen == [2]
    assert any("done-callback" in r.message for r in caplog_corral.records)


async def test_future_wait_with_timeout_does_not_cancel() -> None:
    """wait(timeout) reports whether the future is done and leaves the call running."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        fut = await ref.submit(Block(key="k"))
        await gate.entered_event("k").wait()
        assert await fut.wait(0.01) is False
        assert not fut.done()
        gate.gates["k"].set()
        assert await fut.wait() is True
        assert await fut.wait(0) is True
        assert fut.result() == "k"


async def test_many_waiters_on_one_future() -> None:
    """Several tasks awaiting one future all get the result; one giving up harms no one."""
    gate = Gate()
    results: list[str] = []
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        fut = await ref.submit(Block(key="k"))
        await gate.entered_event("k").wait()

        async def reader() -> None:
            results.append(await fut)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(reader)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await fut  # a waiter that gives up does not cancel the call
            assert not fut.done()
            gate.gates["k"].set()
    assert results == ["k", "k", "k"]


async def test_future_awaited_past_its_deadline_expires_the_call() -> None:
    """Whoever awaits enforces the call's deadline, even if the actor never gets to it."""
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        await ref.submit(Block(key="stuck"))
        fut = await ref.submit(Echo(text="x"), timeout=0.02)
        with pytest.raises(corral.DeadlineExceeded):
            await fut
        assert ref.status().queue_depth == 0
        await gate.entered_event("stuck").wait()
        gate.gates["stuck"].set()


# --- declaring actors -------------------------------------------------------------------


@corral.message
class Ping2:
    n: int


@corral.message
class Special(Ping2):
    pass


async def test_handles_decorator_dispatches_by_type_and_subclass() -> None:
    """@handles routes its types to its method; subclasses go to their nearest base's handler."""

    class Multi(corral.Actor[Add, int]):
        async def handle(self, msg: Add) -> int:
            return msg.a + msg.b

        @corral.handles(Echo)
        async def echo(self, msg: Echo) -> str:
            return msg.text.upper()

        @corral.handles(Ping2)
        async def ping(self, msg: Ping2) -> str:
            return f"{type(msg).__name__} {msg.n}"

    async with corral.Runtime() as rt:
        ref: corral.ActorRef[Any, Any] = await rt.spawn(Multi, name="multi")
        assert await ref.ask(Add(a=1, b=2)) == 3
        assert await ref.ask(Echo(text="hi")) == "HI"
        assert await ref.ask(Ping2(n=1)) == "Ping2 1"
        assert await ref.ask(Special(n=2)) == "Special 2"


async def test_handlers_are_inherited_and_can_be_overridden() -> None:
    """A subclass inherits its base's message table and may override a handler."""

    class Base(corral.Actor[Add, int]):
        async def handle(self, msg: Add) -> int:
            return msg.a + msg.b

    class Doubling(Base):
        async def handle(self, msg: Add) -> int:
            return 2 * (msg.a + msg.b)

    async with corral.Runtime() as rt:
        ref = await rt.spawn(Doubling, name="d")
        assert await ref.ask(Add(a=1, b=2)) == 6


def test_bad_actor_declarations_fail_at_class_creation() -> None:
    """Non-attrs request types, sync handlers and bad fatal lists are refused early."""
    with pytest.raises(TypeError, match="must be an attrs message class"):

        class A(corral.Actor[int, int]):
            async def handle(self, msg: int) -> int:
                return msg

    with pytest.raises(TypeError, match="must be an async def"):

        class B(corral.Actor[Add, int]):
            def handle(self, msg: Add) -> int:  # type: ignore[override]
                return 1

    with pytest.raises(TypeError, match="fatal must be a tuple of exception classes"):

        class C(corral.Actor[Add, int]):
            fatal = ValueError  # type: ignore[assignment]

    with pytest.raises(TypeError, match="attrs message classes"):
        corral.handles(int)
    with pytest.raises(TypeError, match="at least one"):
        corral.handles()
    with pytest.raises(TypeError, match="async def"):

        @corral.handles(Add)
        def sync(self: Any, msg: Add) -> None: ...


def test_message_decorator_keeps_existing_attrs_classes() -> None:
    """corral.message on an attrs class only adds the wire name."""

    @corral.message(name="x.Y")
    @attrs.define
    class Y:
        v: int

    assert Y.__corral_message_name__ == "x.Y"  # type: ignore[attr-defined]
    assert corral.Protocol([Y]).names()["x.Y"] is Y


async def test_each_reader_of_a_failed_future_gets_the_handlers_traceback_once() -> None:
    """Regression: every await of a failed future appended its frames to one shared traceback."""
    import traceback

    async with corral.Runtime() as rt:
        gate = await rt.spawn(Gate, name="gate")
        fut = await gate.submit(Boom())
        await fut.wait()
        depths = []
        for _ in range(3):
            with pytest.raises(ValueError, match="boom") as info:
                await fut
            depths.append(len(traceback.extract_tb(info.value.__traceback__)))
        with pytest.raises(ValueError, match="boom") as info:
            fut.result()
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert depths[0] == depths[1] == depths[2]
    assert frames.count("handle") == 1, frames  # the handler's own frame, once
    assert "_wait_result" not in frames, frames  # none of the earlier readers' frames
