"""How an actor's calls run: the worker loop, the pool of workers, and one call's run.

An actor with ``max_concurrency`` 1 runs its calls in its own task
(:func:`work` with the stop deadline on its scope); others start workers
lazily up to their limit (:func:`serve_concurrently`). Each call's run
(:func:`run_call`) moves it through :mod:`._calls`: started, resolved with
its outcome, then out of the pile or back in line after a crash.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import TYPE_CHECKING, Final

import anyio
import anyio.lowlevel

from . import _calls as calls
from ._calls import Call, current_call_var
from ._exceptions import DeadlineExceeded
from ._pile import CallStatus

if TYPE_CHECKING:
    from ._cell import ActorCell

__all__ = ["run_call", "serve_concurrently", "work"]

logger = logging.getLogger("corral")

# A worker that never has to wait for work still yields after this many calls
# in a row, so a busy actor cannot starve the other tasks of the event loop.
_BURST: Final = 32

_SUCCEEDED = CallStatus.SUCCEEDED
_FAILED = CallStatus.FAILED
_EXPIRED = CallStatus.EXPIRED
_INF = math.inf
_CancelScope = anyio.CancelScope


async def work(cell: ActorCell, carry_stop: bool) -> None:
    """Take *cell*'s calls one at a time and run them, until it stops, halts or crashes."""
    # A worker runs its calls inside one cancel scope of its own instead of
    # one per call (which would cost more than the rest of the call):
    # cancelling a running call (its caller gave up) or its deadline (set
    # on the scope while the call runs) cancels this scope, and the worker
    # opens a fresh one before it takes the next call, so a cancellation
    # that arrives late never hits the wrong call. With
    # carry_stop (the single worker of an actor with max_concurrency 1)
    # the scope also carries the actor's stop deadline; otherwise the
    # workers' task group does.
    mailbox = cell.mailbox
    park, unpark = mailbox.park, mailbox.unpark
    clock = cell.clock
    while cell.crash is None and clock() < cell.stop_deadline:
        with _CancelScope(deadline=cell.stop_deadline if carry_stop else _INF) as scope:
            if carry_stop:
                cell.scope = scope
            streak = 0
            while True:
                while True:
                    if cell.halting:
                        return
                    call = mailbox.get_nowait()
                    if call is not None:
                        break
                    if mailbox.closed:
                        return
                    streak = 0
                    event = cell.new_event()
                    park(event)
                    try:
                        await event.wait()
                    finally:
                        unpark(event)
                await run_call(cell, call, scope, carry_stop)
                if scope.cancel_called or cell.crash is not None:
                    break
                streak += 1
                if streak >= _BURST:
                    streak = 0
                    await anyio.lowlevel.checkpoint()


async def _worker(cell: ActorCell) -> None:
    cell.starting -= 1
    try:
        await work(cell, False)
    finally:
        cell.workers -= 1


async def serve_concurrently(cell: ActorCell) -> None:
    """Serve *cell*'s calls with up to ``max_concurrency`` workers until it stops or crashes."""
    # Workers are started lazily, from this task (so they inherit the
    # actor's context, not a caller's), up to max_concurrency; an idle
    # worker parks on the mailbox and is reused. The task group's scope
    # carries the stop deadline and is cancelled by a crash.
    mailbox = cell.mailbox
    async with anyio.create_task_group() as tg:
        tg.cancel_scope.deadline = cell.stop_deadline
        cell.scope = tg.cancel_scope
        cell.tg = tg
        try:
            while cell.crash is None:
                want = min(
                    cell.max_concurrency - cell.workers,
                    len(mailbox.queue) - mailbox.idle_getters - cell.starting,
                )
                for _ in range(want):
                    cell.workers += 1
                    cell.starting += 1
                    tg.start_soon(_worker, cell)
                if mailbox.closed or cell.halting:
                    break
                event = cell.main_event = anyio.Event()
                await event.wait()
        finally:
            cell.main_event = None
    cell.tg = None


async def run_call(cell: ActorCell, call: Call, scope: anyio.CancelScope, carry_stop: bool) -> None:
    """Run *call*'s handler in the worker's *scope* and give the call its outcome.

    A call whose deadline passed in the queue is dropped unstarted. One
    whose handler was cancelled without an outcome expired (its deadline),
    goes back in line (its actor crashed and declared it safe to rerun), or
    fails with :class:`ActorStopped`.
    """
    fut = call.future
    now = cell.clock()
    deadline = call.deadline
    if deadline is not None and now >= deadline:
        calls.drop(call, _EXPIRED, calls.deadline_error(call, "queued"))
        return
    func = calls.start(call, now, scope)
    if deadline is not None and deadline < scope.deadline:
        scope.deadline = deadline
    token = current_call_var.set(call)
    try:
        try:
            policy = cell.policy
            payload = call.envelope.payload
            if policy is None:
                result = await func(cell.instance, payload)
            else:
                result = await policy.run(call, functools.partial(func, cell.instance, payload))
        except Exception as exc:
            if isinstance(exc, cell.fatal):
                cell.crashed(exc)
            # A deadline error from a call that has a deadline (a policy
            # that could not retry in time) is that call expiring.
            expired = deadline is not None and isinstance(exc, DeadlineExceeded)
            calls.resolve(call, _EXPIRED if expired else _FAILED, None, exc)
        else:
            calls.resolve(call, _SUCCEEDED, result)
    finally:
        current_call_var.reset(token)
        if deadline is not None:
            scope.deadline = cell.stop_deadline if carry_stop else _INF
        requeue = False
        if not fut.done():
            # The handler was cancelled without an outcome: by the call's
            # deadline, or because the actor is stopping or crashed.
            now = cell.clock()
            if (
                deadline is not None
                and now >= deadline
                and now < cell.stop_deadline
                and cell.crash is None
            ):
                calls.resolve(call, _EXPIRED, None, calls.deadline_error(call, "running"))
            elif cell.crash is not None and _retry_interrupted(cell, call):
                requeue = True
            else:
                calls.resolve(call, _FAILED, None, cell.stopped_error("while serving this call"))
        if requeue:
            assert cell.crash is not None
            calls.requeue(call, cell.crash)
        else:
            calls.leave(call)


def _retry_interrupted(cell: ActorCell, call: Call) -> bool:
    assert cell.crash is not None
    try:
        return bool(cell.instance.retry_interrupted(call.envelope.payload, cell.crash))
    except Exception:
        logger.exception("retry_interrupted of actor %r raised; the call fails", cell.name)
        return False
