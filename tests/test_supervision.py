"""Supervision: OTP's restart semantics, ported case by case, on both backends."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

import corral
from corral import ChildState, SupervisorEventKind
from corral.testing import ManualClock

from .helpers import CallLog

pytestmark = pytest.mark.anyio


@corral.message
class Do:
    what: str = "echo"
    text: str = ""


#: The latest Worker made for each tag: how a test reaches the instance it runs.
LATEST: dict[str, Worker] = {}


class Worker(corral.Actor[Do, str]):
    """Logs its lifecycle to a shared journal; crashes, fails or blocks on request."""

    def __init__(self, journal: list[str], tag: str, *, fail_start: bool = False) -> None:
        LATEST[tag] = self
        self.journal = journal
        self.tag = tag
        self.fail_start = fail_start
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.seen: list[str] = []

    async def on_start(self) -> None:
        self.journal.append(f"start {self.tag}")
        if self.fail_start:
            raise ConnectionError(f"{self.tag} cannot connect")

    async def on_stop(self) -> None:
        self.journal.append(f"stop {self.tag}")

    async def handle(self, msg: Do) -> str:
        self.seen.append(msg.text or msg.what)
        if msg.what == "crash":
            raise corral.Crash(f"{self.tag} crashed on purpose")
        if msg.what == "fail":
            raise ValueError("just this call")
        if msg.what == "block":
            self.entered.set()
            await self.release.wait()
        self.journal.append(f"{self.tag} did {msg.text or msg.what}")
        return f"{self.tag}:{msg.text}"


class Events(corral.Instrument):
    """Collects supervisor events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[corral.SupervisorEvent] = []
        self._waiters: list[tuple[SupervisorEventKind, str | None, int, anyio.Event]] = []

    def supervisor_event(self, event: corral.SupervisorEvent) -> None:
        self.events.append(event)
        for kind, child, count, waiter in self._waiters:
            if self._count(kind, child) >= count:
                waiter.set()

    def _count(self, kind: SupervisorEventKind, child: str | None) -> int:
        return sum(1 for e in self.events if e.kind is kind and child in (None, e.child))

    async def wait_for(
        self, kind: SupervisorEventKind, child: str | None = None, count: int = 1
    ) -> None:
        """Wait until *count* events of this kind (for this child) have been seen."""
        if self._count(kind, child) >= count:
            return
        waiter = anyio.Event()
        self._waiters.append((kind, child, count, waiter))
        with anyio.fail_after(10):
            await waiter.wait()

    def kinds(self, child: str | None = None) -> list[SupervisorEventKind]:
        return [e.kind for e in self.events if child is None or e.child == child]


def workers(journal: list[str], *tags: str, **options: Any) -> list[corral.ChildSpec]:
    return [corral.child(lambda tag=tag: Worker(journal, tag), name=tag, **options) for tag in tags]


async def crash(rt: corral.Runtime, name: str) -> None:
    with pytest.raises(corral.Crash):
        await rt.ref(name).ask(Do("crash"))


# --- restart types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        (corral.PERMANENT, "crash", True),
        (corral.PERMANENT, "stop", True),
        (corral.TRANSIENT, "crash", True),
        (corral.TRANSIENT, "stop", False),
        (corral.TEMPORARY, "crash", False),
        (corral.TEMPORARY, "stop", False),
    ],
)
async def test_restart_types_after_normal_and_abnormal_exit(
    restart: corral.Restart, how: str, restarted: bool
) -> None:
    """Permanent always restarts; transient only after a crash; temporary never."""
    journal: list[str] = []
    tree = corral.Supervisor(max_restarts=5, children=workers(journal, "a", restart=restart))
    async with corral.Runtime(tree) as rt:
        ref = rt.ref("a")
        if how == "crash":
            await crash(rt, "a")
        else:
            await ref.stop()
        if restarted:
            assert await ref.ask(Do(text="again")) == "a:again"  # the same ref works
            assert ref.status().restarts == 1
            assert rt.root.children()[0].restarts == 1
            assert rt.root.children()[0].state is ChildState.RUNNING
        else:
            await ref.wait_stopped()
            with pytest.raises(corral.ActorNotFound):
                rt.ref("a")
            with pytest.raises(corral.ActorStopped):
                await ref.ask(Do())
            assert rt.root.children() == []
    assert journal.count("start a") == (2 if restarted else 1)


# --- strategies ---------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_failed_child() -> None:
    """A crash under one-for-one leaves the siblings, and their running calls, alone."""
    journal: list[str] = []
    tree = corral.Supervisor(children=workers(journal, "a", "b", "c"))
    async with corral.Runtime(tree) as rt:
        b_instance = LATEST["b"]
        assert isinstance(b_instance, Worker)
        blocked = await rt.ref("b").submit(Do("block"))
        await b_instance.entered.wait()
        await crash(rt, "a")
        await rt.ref("a").ping()
        assert not blocked.done()  # the sibling's running call was not cancelled
        b_instance.release.set()
        assert await blocked == "b:"
    assert journal[:5] == ["start a", "start b", "start c", "stop a", "start a"]


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() -> None:
    """One-for-all: the others stop in reverse start order, then all start in order."""
    journal: list[str] = []
    tree = corral.Supervisor(strategy=corral.ONE_FOR_ALL, children=workers(journal, "a", "b", "c"))
    async with corral.Runtime(tree) as rt:
        journal.clear()
        await crash(rt, "b")
        for name in ("a", "b", "c"):
            await rt.ref(name).ping()
        assert journal == [
            "stop b",  # the crashed child's own clean-up
            "stop c",
            "stop a",
            "start a",
            "start b",
            "start c",
        ]
        assert [c.restarts for c in rt.root.children()] == [1, 1, 1]


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it() -> None:
    """Rest-for-one: children started after the failed one restart with it; earlier ones don't."""
    journal: list[str] = []
    tree = corral.Supervisor(
        strategy=corral.REST_FOR_ONE, children=workers(journal, "a", "b", "c", "d")
    )
    async with corral.Runtime(tree) as rt:
        journal.clear()
        await crash(rt, "b")
        for name in ("a", "b", "c", "d"):
            await rt.ref(name).ping()
        assert journal == ["stop b", "stop d", "stop c", "start b", "start c", "start d"]
        assert [c.restarts for c in rt.root.children()] == [0, 1, 1, 1]


async def test_temporary_sibling_is_not_restarted_by_one_for_all() -> None:
    """A temporary child stopped because a sibling crashed is removed, not restarted (OTP)."""
    journal: list[str] = []
    tree = corral.Supervisor(
        strategy=corral.ONE_FOR_ALL,
        children=[
            *workers(journal, "a"),
            *workers(journal, "t", restart=corral.TEMPORARY),
        ],
    )
    async with corral.Runtime(tree) as rt:
        await crash(rt, "a")
        await rt.ref("a").ping()
        assert [c.name for c in rt.root.children()] == ["a"]
        with pytest.raises(corral.ActorNotFound):
            rt.ref("t")


# --- intensity and escalation -----------------------------------------------------------


async def test_restarts_within_intensity_are_allowed_and_the_window_slides() -> None:
    """max_restarts in `within` seconds is fine; older restarts fall out of the window."""
    clock = ManualClock()
    journal: list[str] = []
    tree = corral.Supervisor(max_restarts=2, within=10, children=workers(journal, "a"))
    async with corral.Runtime(tree, clock=clock) as rt:
        for _ in range(2):
            await crash(rt, "a")
            await rt.ref("a").ping()
        await clock.advance(10.5)  # both restarts leave the window
        for _ in range(2):
            await crash(rt, "a")
            await rt.ref("a").ping()
        assert rt.root.children()[0].restarts == 4


async def test_exceeding_intensity_gives_up_and_the_runtime_raises() -> None:
    """One restart too many: the root stops everything and the runtime raises SupervisorGaveUp."""
    clock = ManualClock()
    journal: list[str] = []
    events = Events()
    tree = corral.Supervisor(
        max_restarts=1, within=5, children=workers(journal, "a", "b", shutdown=0.05)
    )
    with pytest.raises(corral.SupervisorGaveUp, match="gave up: more than 1 restart") as info:
        async with corral.Runtime(tree, clock=clock, instruments=[events]) as rt:
            b = rt.ref("b")
            queued_elsewhere = await b.submit(Do("block"))
            await crash(rt, "a")
            await rt.ref("a").ping()
            await crash(rt, "a")
            await anyio.sleep_forever()  # the runtime cancels the block
    assert type(info.value) is corral.SupervisorGaveUp
    assert isinstance(info.value.__cause__, corral.Crash)
    assert info.value.supervisor == "root"
    assert queued_elsewhere.done()
    assert isinstance(queued_elsewhere.exception(), corral.ActorStopped)
    # a's own clean-up after its crash, then b stopped by the supervisor giving up
    assert journal[-2:] == ["stop a", "stop b"]
    assert events.kinds()[-2:] == [SupervisorEventKind.GAVE_UP, SupervisorEventKind.ESCALATED]


async def test_escalation_through_two_levels() -> None:
    """A nested supervisor giving up is its parent's child crashing; the parent may give up too."""
    clock = ManualClock()
    journal: list[str] = []
    events = Events()
    mid = corral.Supervisor(name="mid", max_restarts=0, children=workers(journal, "leaf"))
    tree = corral.Supervisor(max_restarts=1, within=60, children=[*workers(journal, "top"), mid])
    with pytest.raises(corral.SupervisorGaveUp) as info:
        async with corral.Runtime(tree, clock=clock, instruments=[events]) as rt:
            await crash(rt, "leaf")  # mid gives up; root restarts mid
            await events.wait_for(SupervisorEventKind.CHILD_RESTARTED, "mid")
            await rt.ref("leaf").ping()
            assert rt.root.children()[1].restarts == 1
            await crash(rt, "leaf")  # mid gives up again: root's second restart is one too many
            await anyio.sleep_forever()
    root_failure = info.value
    assert root_failure.supervisor == "root"
    mid_failure = root_failure.__cause__
    assert isinstance(mid_failure, corral.SupervisorGaveUp)
    assert mid_failure.supervisor == "mid"
    assert isinstance(mid_failure.__cause__, corral.Crash)
    assert [e.supervisor for e in events.events if e.kind is SupervisorEventKind.GAVE_UP] == [
        "mid",
        "mid",
        "root",
    ]
    assert journal.count("start leaf") == 2
    assert journal[-1] == "stop top"  # everything stopped, in reverse order


# --- start failures -----------------------------------------------------------------------


async def test_child_failing_at_tree_start_fails_the_runtime_start() -> None:
    """As in OTP, a child that fails to start fails the supervisor's start; started ones stop."""
    journal: list[str] = []
    tree = corral.Supervisor(
        children=[
            *workers(journal, "a"),
            corral.child(lambda: Worker(journal, "bad", fail_start=True), name="bad"),
            *workers(journal, "c"),
        ]
    )
    with pytest.raises(corral.ActorCrashed, match="actor 'bad' failed to start") as info:
        async with corral.Runtime(tree):
            pytest.fail("the block must not run")
    assert isinstance(info.value.__cause__, ConnectionError)
    assert journal == ["start a", "start bad", "stop a"]


class HandlesNothing(corral.Actor):  # type: ignore[type-arg]
    """An actor that declares no message types."""


def test_a_child_spec_of_an_actor_that_handles_nothing_is_refused_at_once() -> None:
    """child(Class) checks the class at once, with the error spawn gives."""
    with pytest.raises(TypeError, match="HandlesNothing handles no message types"):
        corral.child(HandlesNothing, name="h")


async def test_a_factory_making_an_actor_that_handles_nothing_fails_the_start_cleanly() -> None:
    """Regression: the TypeError escaped the tree's start inside nested exception groups."""
    journal: list[str] = []
    tree = corral.Supervisor(
        children=[*workers(journal, "a"), corral.child(lambda: HandlesNothing(), name="h")]
    )
    with pytest.raises(TypeError, match="HandlesNothing handles no message types") as info:
        async with corral.Runtime(tree):
            pytest.fail("the block must not run")
    assert type(info.value) is TypeError  # not an exception group
    assert journal == ["start a", "stop a"]


async def test_failing_restart_counts_as_a_crash() -> None:
    """A restart whose on_start fails is one more crash; the intensity still bounds it."""
    journal: list[str] = []
    attempts = {"n": 0}

    def factory() -> Worker:
        attempts["n"] += 1
        return Worker(journal, "a", fail_start=attempts["n"] > 1)

    tree = corral.Supervisor(max_restarts=3, within=60, children=[corral.child(factory, name="a")])
    with pytest.raises(corral.SupervisorGaveUp) as info:
        async with corral.Runtime(tree, clock=ManualClock()) as rt:
            await crash(rt, "a")
            await anyio.sleep_forever()
    assert isinstance(info.value.__cause__, ConnectionError)
    assert attempts["n"] == 4  # the first start, then 3 failed restarts; the 4th is refused


# --- backoff and what happens to calls ----------------------------------------------------


async def test_backoff_delays_restarts_and_queued_calls_wait_in_order() -> None:
    """While a child waits out its backoff, calls queue; the new instance serves them in order."""
    clock = ManualClock()
    journal: list[str] = []
    events = Events()
    tree = corral.Supervisor(
        max_restarts=10,
        within=100,
        backoff=corral.Backoff(min=1.0, max=4.0, jitter=0),
        children=workers(journal, "a"),
    )
    async with corral.Runtime(tree, clock=clock, instruments=[events]) as rt:
        ref = rt.ref("a")
        await crash(rt, "a")
        await events.wait_for(SupervisorEventKind.RESTART_SCHEDULED, "a")
        assert rt.root.children()[0].state is ChildState.RESTARTING
        assert ref.state is corral.ActorState.RESTARTING
        futures = [await ref.submit(Do(text=str(i))) for i in range(3)]
        assert ref.status().queue_depth == 3
        await clock.advance(0.9)
        assert not any(f.done() for f in futures)
        await clock.advance(0.1)
        assert [await f for f in futures] == ["a:0", "a:1", "a:2"]
        delays = [e.delay for e in events.events if e.kind is SupervisorEventKind.RESTART_SCHEDULED]
        assert delays == [1.0]
        # A second crash soon after: the delay doubles.
        await crash(rt, "a")
        await events.wait_for(SupervisorEventKind.RESTART_SCHEDULED, "a", count=2)
        await clock.advance(2.0)
        await ref.ping()
        # After a quiet period of (min + max) / 2 the count resets.
        await clock.advance(2.5)
        await crash(rt, "a")
        await events.wait_for(SupervisorEventKind.RESTART_SCHEDULED, "a", count=3)
        await clock.advance(1.0)
        await ref.ping()
        delays = [e.delay for e in events.events if e.kind is SupervisorEventKind.RESTART_SCHEDULED]
        assert delays == [1.0, 2.0, 1.0]


async def test_running_calls_fail_with_the_crash_and_are_not_rerun() -> None:
    """Calls in flight at a crash fail with ActorCrashed (cause chained); queued ones survive."""
    journal: list[str] = []
    tree = corral.Supervisor(
        children=[corral.child(lambda: Worker(journal, "a"), name="a", max_concurrency=2)]
    )
    async with corral.Runtime(tree) as rt:
        ref = rt.ref("a")
        instance = LATEST["a"]
        assert isinstance(instance, Worker)
        in_flight = await ref.submit(Do("block"))
        await instance.entered.wait()
        crashing = await ref.submit(Do("crash"))
        with pytest.raises(corral.Crash):
            await crashing
        await ref.ping()
        error = in_flight.exception()
        assert isinstance(error, corral.ActorCrashed)
        assert isinstance(error.__cause__, corral.Crash)
        assert journal.count("a did block") == 0


class Idempotent(Worker):
    """A worker whose calls may run again after a crash."""

    def retry_interrupted(self, msg: Do, error: BaseException) -> bool:
        return True


def idempotent_tree(made: list[Idempotent]) -> corral.Supervisor:
    """A tree of one Idempotent worker "a" (3 calls at once); each instance made goes to *made*."""
    journal: list[str] = []

    def factory() -> Idempotent:
        made.append(Idempotent(journal, "a"))
        return made[-1]

    return corral.Supervisor(children=[corral.child(factory, name="a", max_concurrency=3)])


async def test_retry_interrupted_puts_calls_back_in_order() -> None:
    """An actor may declare interrupted calls idempotent: they rerun, in order, as attempt 2."""
    made: list[Idempotent] = []
    log = CallLog()
    async with corral.Runtime(idempotent_tree(made), instruments=[log]) as rt:
        ref = rt.ref("a")
        first = await ref.submit(Do("block", text="1"))
        first_id = str(log.accepted[-1].envelope.id)
        await made[0].entered.wait()
        crashing = await ref.submit(Do("crash"))
        queued = await ref.submit(Do(text="3"))
        with pytest.raises(corral.Crash):
            await crashing
        made[-1].release.set()
        await ref.ping()
        assert len(made) == 2
        made[1].release.set()
        assert await first == "a:1"
        assert await queued == "a:3"
        assert made[1].seen[:2] == ["1", "3"]  # back in its place in line
        attempts = {c.id: c.attempt for c in ref.status().recent}
        assert attempts[first_id] == 2


# --- shutdown --------------------------------------------------------------------------------


async def test_tree_stops_in_reverse_start_order_on_every_exit() -> None:
    """Nested trees stop depth-first in reverse start order, also on an error exit."""
    for fail in (False, True):
        journal: list[str] = []
        inner = corral.Supervisor(name="inner", children=workers(journal, "i1", "i2"))
        tree = corral.Supervisor(children=[*workers(journal, "a"), inner, *workers(journal, "z")])
        try:
            async with corral.Runtime(tree):
                if fail:
                    raise KeyError("boom")
        except KeyError:
            assert fail
        assert journal == [
            "start a",
            "start i1",
            "start i2",
            "start z",
            "stop z",
            "stop i2",
            "stop i1",
            "stop a",
        ]


async def test_shutdown_zero_cancels_running_calls_at_once() -> None:
    """A child with shutdown=0 is cancelled at once when stopped; its calls fail ActorStopped."""
    journal: list[str] = []
    tree = corral.Supervisor(
        children=[corral.child(lambda: Worker(journal, "a"), name="a", shutdown=0)]
    )
    async with corral.Runtime(tree, shutdown_timeout=60) as rt:
        instance = LATEST["a"]
        assert isinstance(instance, Worker)
        fut = await rt.ref("a").submit(Do("block"))
        await instance.entered.wait()
    assert isinstance(fut.exception(), corral.ActorStopped)
    assert journal[-1] == "stop a"


# --- dynamic children --------------------------------------------------------------------------


async def test_dynamic_children_start_stop_and_list() -> None:
    """start_child appends and starts; stop_child drains and removes; children() reports them."""
    journal: list[str] = []
    tree = corral.Supervisor(children=workers(journal, "a"))
    async with corral.Runtime(tree) as rt:
        ref = await rt.root.start_child(corral.child(lambda: Worker(journal, "b"), name="b"))
        assert isinstance(ref, corral.ActorRef)
        assert await ref.ask(Do(text="x")) == "b:x"
        nested = corral.Supervisor(name="sub", children=workers(journal, "s1"))
        sub = await rt.root.start_child(nested)
        assert sub is rt.supervisor("sub")
        assert [(c.name, c.kind, c.state) for c in rt.root.children()] == [
            ("a", "actor", ChildState.RUNNING),
            ("b", "actor", ChildState.RUNNING),
            ("sub", "supervisor", ChildState.RUNNING),
        ]
        await rt.root.stop_child("b")
        assert [c.name for c in rt.root.children()] == ["a", "sub"]
        with pytest.raises(corral.ActorNotFound):
            rt.ref("b")
        with pytest.raises(LookupError, match="no child named 'zz'"):
            await rt.root.stop_child("zz")
        with pytest.raises(corral.NameTaken):
            await rt.root.start_child(corral.child(lambda: Worker(journal, "a"), name="a"))
        await crash(rt, "a")
        await rt.ref("a").ping()
        info = rt.root.children()[0]
        assert info.restarts == 1
        assert info.last_error == "Crash: a crashed on purpose"


async def test_a_supervisor_spec_is_plain_data_that_runs_in_any_number_of_runtimes() -> None:
    """The same spec runs in two runtimes one after another and two at once; it never changes."""
    journal: list[str] = []
    nested = corral.Supervisor(name="sub", children=workers(journal, "s1"))
    tree = corral.Supervisor(max_restarts=3, children=[*workers(journal, "a"), nested])
    before = repr(tree)
    assert "max_restarts=3" in before and "name='sub'" in before
    assert tree == corral.Supervisor(max_restarts=3, children=[*tree.children])
    assert tree != corral.Supervisor(max_restarts=2, children=tree.children)
    assert isinstance(tree.children, tuple)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        tree.max_restarts = 9  # type: ignore[misc]
    for _ in range(2):  # one after another
        async with corral.Runtime(tree) as rt:
            root = rt.supervisor("root")
            assert root is rt.root and isinstance(root, corral.SupervisorRef)
            assert root.spec is tree and rt.supervisor("sub").spec is nested
            await crash(rt, "a")
            await rt.ref("a").ping()
            assert root.children()[0].restarts == 1
    async with corral.Runtime(tree) as one, corral.Runtime(tree) as two:  # at once
        assert one.supervisor("sub") is not two.supervisor("sub")
        await crash(one, "s1")
        await one.ref("s1").ping()
        assert one.supervisor("sub").children()[0].restarts == 1
        assert two.supervisor("sub").children()[0].restarts == 0
    assert repr(tree) == before
    assert journal.count("start a") == 2 + 2 + 2


def test_a_running_supervisor_has_no_public_constructor() -> None:
    with pytest.raises(TypeError, match=r"SupervisorRef has no public constructor.*\.supervisor"):
        corral.SupervisorRef()


async def test_spawned_actors_are_temporary_unless_asked() -> None:
    """rt.spawn adds a temporary child to the root; restart=PERMANENT makes it supervised."""
    journal: list[str] = []
    async with corral.Runtime() as rt:
        await rt.spawn(lambda: Worker(journal, "p"), name="p", restart=corral.PERMANENT)
        t = await rt.spawn(lambda: Worker(journal, "t"), name="t")
        await crash(rt, "p")
        await crash(rt, "t")
        await rt.ref("p").ping()
        await t.wait_stopped()
        assert [c.name for c in rt.root.children()] == ["p"]


def test_bad_supervisor_settings_are_refused() -> None:
    """Bad strategies, intensities, backoffs and child lists raise errors that name the value."""
    with pytest.raises(ValueError, match="max_restarts must be >= 0, got -1"):
        corral.Supervisor(max_restarts=-1)
    with pytest.raises(ValueError, match="within must be a finite number of seconds > 0"):
        corral.Supervisor(within=0)
    with pytest.raises(TypeError, match="strategy must be"):
        corral.Supervisor(strategy="one_for_one")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Backoff min must be <= max"):
        corral.Backoff(min=5, max=1)
    with pytest.raises(ValueError, match="Backoff jitter must be finite and >= 0"):
        corral.Backoff(min=1, max=2, jitter=-0.1)
    with pytest.raises(ValueError, match="two children are named 'a'"):
        corral.Supervisor(children=[corral.child(Worker, name="a"), corral.child(Worker, name="a")])
    with pytest.raises(ValueError, match="nested Supervisor needs a name"):
        corral.Supervisor(children=[corral.Supervisor()])
    with pytest.raises(TypeError, match="children must be"):
        corral.Supervisor(children=[Worker])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="shutdown must be >= 0"):
        corral.child(Worker, name="a", shutdown=-1)
    with pytest.raises(ValueError, match="mailbox capacity must be >= 1"):
        corral.child(Worker, name="a", mailbox=0)


def test_backoff_schedule_is_a_pure_function() -> None:
    """The delay doubles from min up to max, scaled by 1 + jitter * rand."""
    b = corral.Backoff(min=0.1, max=1.0, jitter=0.5)
    assert [round(b.delay(n, 0.0), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.delay(0, 1.0) == pytest.approx(0.15)
    assert b.delay(10_000, 0.5) == pytest.approx(1.25)
    assert b.quiet_period == pytest.approx(0.55)
    assert corral.Backoff(min=1, max=2, reset_after=7).quiet_period == 7


def test_intensity_window_is_plain_arithmetic() -> None:
    """At most N restarts in the window; older ones are forgotten."""
    from corral._core._restart import add_restart

    history: tuple[float, ...] = ()
    history, ok = add_restart(history, 0.0, 2, 5.0)
    assert ok
    history, ok = add_restart(history, 1.0, 2, 5.0)
    assert ok
    _, ok = add_restart(history, 2.0, 2, 5.0)
    assert not ok
    history, ok = add_restart(history, 5.5, 2, 5.0)
    assert ok
    assert history == (1.0, 5.5)
    _, ok = add_restart((), 0.0, 0, 5.0)
    assert not ok


def test_a_restart_exactly_within_seconds_old_still_counts() -> None:
    """OTP keeps a restart R while R >= Now - Period: the boundary is inside the window."""
    from corral._core._restart import add_restart

    history, ok = add_restart((), 0.0, 1, 5.0)
    assert ok
    history_at_boundary, ok = add_restart(history, 5.0, 1, 5.0)
    assert not ok
    assert history_at_boundary == (0.0, 5.0)
    history, ok = add_restart(history, 5.25, 1, 5.0)
    assert ok
    assert history == (5.25,)


async def test_a_second_crash_exactly_within_seconds_later_gives_up() -> None:
    """With max_restarts=1 and within=5, a crash at t=5 after a restart at t=0 is one too many."""
    clock = ManualClock()
    journal: list[str] = []
    tree = corral.Supervisor(max_restarts=1, within=5, children=workers(journal, "a"))
    with pytest.raises(corral.SupervisorGaveUp):
        async with corral.Runtime(tree, clock=clock) as rt:
            await crash(rt, "a")
            await rt.ref("a").ping()
            await clock.advance(5.0)
            await crash(rt, "a")
            await anyio.sleep_forever()
