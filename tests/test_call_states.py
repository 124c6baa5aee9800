"""A call's life follows the moves written down in _calls.LEGAL, in every path through it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import corral
from corral import CallStatus
from corral._core import _calls

from .helpers import Block, Echo, Gate
from .test_supervision import Do, Idempotent, idempotent_tree

pytestmark = pytest.mark.anyio

Q, R, RT = CallStatus.QUEUED, CallStatus.RUNNING, CallStatus.RETRYING
OK, FAILED, CANCELLED, EXPIRED = (
    CallStatus.SUCCEEDED,
    CallStatus.FAILED,
    CallStatus.CANCELLED,
    CallStatus.EXPIRED,
)


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every move any call makes, by the text of its message: [None, QUEUED, RUNNING, ...]."""
    seen: dict[str, list[Any]] = {}
    move = _calls._move

    def recording(call: corral.Call, to: CallStatus) -> None:
        payload = call.envelope.payload
        key = getattr(payload, "key", None) or getattr(payload, "text", None) or repr(payload)
        path = seen.setdefault(key, [call.status])
        move(call, to)
        path.append(to)

    monkeypatch.setattr(_calls, "_move", recording)
    return seen


async def test_served_failed_cancelled_and_expired_calls(moves: dict[str, list[Any]]) -> None:
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        assert await ref.ask(Echo(text="ok")) == "ok"
        running = await ref.submit(Block(key="held"))
        await gate.entered_event("held").wait()
        queued = await ref.submit(Echo(text="waits"))
        expiring = await ref.submit(Echo(text="late"), timeout=0)
        queued.cancel()
        await expiring.wait()
        running.cancel()
        await ref.ping()
    assert moves["ok"] == [None, Q, R, OK]
    assert moves["waits"] == [None, Q, CANCELLED]
    assert moves["late"] == [None, Q, EXPIRED]
    assert moves["held"] == [None, Q, R, CANCELLED]


async def test_a_retried_call_goes_between_attempts_and_back(
    moves: dict[str, list[Any]],
) -> None:
    tries: list[int] = []

    class Flaky(corral.Actor[Echo, str]):
        policy = corral.ServicePolicy(
            retry=corral.RetryPolicy(max_attempts=3, min_delay=0.001, max_delay=0.001)
        )

        async def handle(self, msg: Echo) -> str:
            tries.append(corral.current_call().attempt)  # type: ignore[union-attr]
            if len(tries) < 3:
                raise corral.TransportError("down")
            return msg.text

    async with corral.Runtime() as rt:
        ref = await rt.spawn(Flaky, name="flaky")
        assert await ref.ask(Echo(text="again"), timeout=10) == "again"
    assert tries == [1, 2, 3]
    assert moves["again"] == [None, Q, R, RT, R, RT, R, OK]


async def test_a_call_cut_short_by_a_crash_goes_back_in_line(
    moves: dict[str, list[Any]],
) -> None:
    made: list[Idempotent] = []
    async with corral.Runtime(idempotent_tree(made)) as rt:
        ref = rt.ref("a")
        first = await ref.submit(Do("block", text="1"))
        await made[0].entered.wait()
        crashing = await ref.submit(Do("crash"))
        with pytest.raises(corral.Crash):
            await crashing
        made[-1].release.set()
        await ref.ping()
        made[1].release.set()
        assert await first == "a:1"
    assert moves["1"] == [None, Q, R, Q, R, OK]


async def test_calls_left_when_their_actor_stops_fail_from_the_queue(
    moves: dict[str, list[Any]],
) -> None:
    gate = Gate()
    async with corral.Runtime() as rt:
        ref = await rt.spawn(lambda: gate, name="gate")
        held = await ref.submit(Block(key="held"))
        await gate.entered_event("held").wait()
        left = await ref.submit(Echo(text="left"))
        with anyio.fail_after(10):
            await ref.stop(timeout=0)
        assert isinstance(left.exception(), corral.ActorStopped)
        assert isinstance(held.exception(), corral.ActorStopped)
    assert moves["left"] == [None, Q, FAILED]
    assert moves["held"] == [None, Q, R, FAILED]


def test_the_legal_moves_are_written_down_and_enforced() -> None:
    """Finished is final; nothing skips the queue; an illegal move is refused."""
    finished = {OK, FAILED, CANCELLED, EXPIRED}
    assert _calls.LEGAL[None] == {Q}
    assert all(_calls.LEGAL[s] == frozenset() for s in finished)
    assert set(_calls.LEGAL) == {None, *CallStatus}
    assert _calls.LEGAL[Q] == {R, CANCELLED, EXPIRED, FAILED}

    class Fake:
        _status = OK

    with pytest.raises(AssertionError, match="cannot go from succeeded to running"):
        _calls._move(Fake(), R)  # type: ignore[arg-type]
