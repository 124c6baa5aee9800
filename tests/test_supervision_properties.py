"""Random supervision trees under random crashes keep the runtime's promises."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import corral
from corral import SupervisorEventKind as EV
from corral.testing import ManualClock

from .test_supervision import Do, Worker


@attrs.frozen
class Leaf:
    restart: corral.Restart


@attrs.frozen
class Node:
    strategy: corral.Strategy
    max_restarts: int
    children: tuple[Leaf | Node, ...]


leaves = st.builds(Leaf, restart=st.sampled_from(list(corral.Restart)))
trees = st.recursive(
    leaves,
    lambda inner: st.builds(
        Node,
        strategy=st.sampled_from(list(corral.Strategy)),
        max_restarts=st.integers(0, 3),
        children=st.lists(inner, min_size=1, max_size=3).map(tuple),
    ),
    max_leaves=7,
).map(lambda t: t if isinstance(t, Node) else Node(corral.ONE_FOR_ONE, 1, (t,)))


def build(
    node: Node, journal: list[str], names: itertools.count[int], root: bool = False
) -> tuple[corral.Supervisor, list[str]]:
    """Make the Supervisor for *node*; return it and its actor names, depth first."""
    specs: list[Any] = []
    order: list[str] = []
    for item in node.children:
        if isinstance(item, Leaf):
            name = f"a{next(names)}"
            specs.append(
                corral.child(
                    lambda name=name: Worker(journal, name),
                    name=name,
                    restart=item.restart,
                    shutdown=1.0,
                )
            )
            order.append(name)
        else:
            sub, sub_order = build(item, journal, names)
            specs.append(sub)
            order.extend(sub_order)
    sup = corral.Supervisor(
        name=None if root else f"s{next(names)}",
        strategy=node.strategy,
        max_restarts=node.max_restarts,
        within=60.0,
        children=specs,
    )
    return sup, order


class Recorder(corral.Instrument):
    def __init__(self) -> None:
        self.events: list[corral.SupervisorEvent] = []

    def supervisor_event(self, event: corral.SupervisorEvent) -> None:
        self.events.append(event)


def check_intensity(
    events: list[corral.SupervisorEvent],
    limits: dict[str, int],
    below: dict[str, list[str]],
) -> None:
    """Between two (re)starts of a supervisor it schedules at most max_restarts restarts,
    and it gives up only when one more was needed. *below* names the supervisors
    inside each one: restarting a supervisor starts them afresh too."""
    counts: dict[str, int] = dict.fromkeys(limits, 0)
    for e in events:
        if e.kind is EV.CHILD_RESTARTED and e.child in counts:
            # A restarted supervisor, and every one inside it, starts with a fresh window.
            for name in (e.child, *below[e.child]):
                counts[name] = 0
        elif e.kind is EV.RESTART_SCHEDULED:
            counts[e.supervisor] += 1
            assert counts[e.supervisor] <= limits[e.supervisor], e
        elif e.kind is EV.GAVE_UP:
            assert counts[e.supervisor] == limits[e.supervisor], e


async def scenario(node: Node, crashes: list[int]) -> None:
    journal: list[str] = []
    tree, order = build(node, journal, itertools.count(), root=True)
    limits = {"root": node.max_restarts}
    below: dict[str, list[str]] = {"root": []}

    def collect(n: Node, sup: corral.Supervisor, outer: list[str]) -> None:
        for item, spec in zip(n.children, sup.children, strict=True):
            if isinstance(item, Node):
                assert isinstance(spec, corral.Supervisor) and spec.name is not None
                name = spec.name
                limits[name] = item.max_restarts
                below[name] = []
                for enclosing in outer:
                    below[enclosing].append(name)
                collect(item, spec, [*outer, name])

    collect(node, tree, ["root"])
    recorder = Recorder()
    futures: list[corral.Future[Any]] = []
    before = {t.id for t in anyio.get_running_tasks()}
    gave_up = False
    failure: corral.SupervisorGaveUp | None = None
    body_done = 0
    try:
        async with corral.Runtime(tree, instruments=[recorder], clock=ManualClock()) as rt:
            for i in crashes:
                name = order[i % len(order)]
                try:
                    ref = rt.ref(name)
                except corral.ActorNotFound:
                    continue
                futures.append(await ref.submit(Do(text="before")))
                futures.append(await ref.submit(Do("crash")))
                futures.append(await ref.submit(Do(text="after")))
                await anyio.wait_all_tasks_blocked()
            body_done = len(journal)
    except corral.SupervisorGaveUp as exc:
        failure = exc
        gave_up = True
    if gave_up:
        assert failure is not None
        assert failure.supervisor == "root"
    # No future is left pending, however the runtime ended.
    assert [f for f in futures if not f.done()] == []
    # No task outlives the runtime.
    assert {t.id for t in anyio.get_running_tasks()} == before
    check_intensity(recorder.events, limits, below)
    assert gave_up == any(e.kind is EV.GAVE_UP and e.supervisor == "root" for e in recorder.events)
    if not gave_up:
        # The final stop goes in reverse start (list) order over the live actors.
        stops = [line.split()[1] for line in journal[body_done:] if line.startswith("stop ")]
        assert stops == [name for name in reversed(order) if name in stops]
        assert len(stops) == len(set(stops))
    # Every actor that started was stopped as often as it was started.
    for name in order:
        assert journal.count(f"start {name}") == journal.count(f"stop {name}"), name


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(node=trees, crashes=st.lists(st.integers(0, 50), max_size=6))
# A supervisor restarted by its parent gives the ones inside it fresh windows too.
@example(
    node=Node(
        corral.ONE_FOR_ONE,
        1,
        (Node(corral.ONE_FOR_ONE, 0, (Node(corral.ONE_FOR_ONE, 1, (Leaf(corral.PERMANENT),)),)),),
    ),
    crashes=[0, 0, 0],
)
def test_random_trees_keep_their_promises(backend: str, node: Node, crashes: list[int]) -> None:
    """No pending future, no leaked task, intensity respected, reverse stop order."""
    anyio.run(scenario, node, crashes, backend=backend)
