"""The supervision rules as a table: ``decide`` on the facts of one exit, no tree running.

Cases follow OTP's supervisor (restart types, strategies, intensity) and
Akka's backoff; children are named by their index among the live ones.
"""

from __future__ import annotations

from typing import Any

import pytest

import corral
from corral._core._restart import Action, Decision, decide

P, TR, TE = corral.PERMANENT, corral.TRANSIENT, corral.TEMPORARY
ONE, ALL, REST = corral.ONE_FOR_ONE, corral.ONE_FOR_ALL, corral.REST_FOR_ONE


def _decide(**facts: Any) -> Decision:
    base: dict[str, Any] = {
        "strategy": ONE,
        "restarts": (P,),
        "index": 0,
        "crashed": True,
        "history": (),
        "now": 10.0,
        "max_restarts": 3,
        "within": 5.0,
    }
    return decide(**(base | facts))


RESTART = Action.RESTART
CASES = [
    # (why, facts, action, stop, finish, restart)
    ("permanent crash: restarted", {}, RESTART, (), (), (0,)),
    ("permanent normal exit: restarted too", {"crashed": False}, RESTART, (), (), (0,)),
    ("transient crash: restarted", {"restarts": (TR,)}, RESTART, (), (), (0,)),
    (
        "transient normal exit: finished",
        {"restarts": (TR,), "crashed": False},
        Action.FINISH,
        (),
        (),
        (),
    ),
    ("temporary crash: never restarted", {"restarts": (TE,)}, Action.FINISH, (), (), ()),
    (
        "one-for-one: the siblings are left alone",
        {"restarts": (P, P, P), "index": 1},
        RESTART,
        (),
        (),
        (1,),
    ),
    (
        "one-for-all: the others stop in reverse start order, all restart in start order",
        {"strategy": ALL, "restarts": (P, P, P), "index": 1},
        RESTART,
        (2, 0),
        (),
        (0, 1, 2),
    ),
    (
        "one-for-all: a temporary sibling is stopped and finishes, not restarted",
        {"strategy": ALL, "restarts": (TE, P, TR), "index": 1},
        RESTART,
        (2, 0),
        (0,),
        (1, 2),
    ),
    (
        "rest-for-one: the child and those started after it",
        {"strategy": REST, "restarts": (P, P, P, P), "index": 1},
        RESTART,
        (3, 2),
        (),
        (1, 2, 3),
    ),
    (
        "rest-for-one: the last child restarts alone",
        {"strategy": REST, "restarts": (P, P), "index": 1},
        RESTART,
        (),
        (),
        (1,),
    ),
    (
        "rest-for-one: a temporary child after it finishes",
        {"strategy": REST, "restarts": (P, P, TE), "index": 0},
        RESTART,
        (2, 1),
        (2,),
        (0, 1),
    ),
    (
        "one-for-all alone: a restart of the child alone",
        {"strategy": ALL},
        RESTART,
        (),
        (),
        (0,),
    ),
    (
        "intensity: the third restart within the window of max 3 is allowed",
        {"history": (6.0, 8.0)},
        RESTART,
        (),
        (),
        (0,),
    ),
    ("intensity: the fourth gives up", {"history": (6.0, 7.0, 8.0)}, Action.GIVE_UP, (), (), ()),
    (
        "intensity: one exactly `within` old still counts (OTP: R >= Now - Period)",
        {"history": (5.0, 7.0, 8.0)},
        Action.GIVE_UP,
        (),
        (),
        (),
    ),
    (
        "intensity: older restarts are forgotten",
        {"history": (1.0, 2.0, 4.99)},
        RESTART,
        (),
        (),
        (0,),
    ),
    ("max_restarts 0: the first crash gives up", {"max_restarts": 0}, Action.GIVE_UP, (), (), ()),
    (
        "a normal exit of a transient child uses no intensity even when it is spent",
        {"restarts": (TR,), "crashed": False, "max_restarts": 0},
        Action.FINISH,
        (),
        (),
        (),
    ),
    (
        "giving up under one-for-all stops nobody here (the supervisor halts them all)",
        {"strategy": ALL, "restarts": (P, P), "max_restarts": 0},
        Action.GIVE_UP,
        (),
        (),
        (),
    ),
]


@pytest.mark.parametrize(
    ("facts", "action", "stop", "finish", "restart"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_the_rules(
    facts: dict[str, Any],
    action: Action,
    stop: tuple[int, ...],
    finish: tuple[int, ...],
    restart: tuple[int, ...],
) -> None:
    decision = _decide(**facts)
    assert (decision.action, decision.stop, decision.finish, decision.restart) == (
        action,
        stop,
        finish,
        restart,
    )
    assert decision.delay == 0.0  # no backoff in these


def test_the_history_kept_has_this_restart_whether_or_not_it_was_allowed() -> None:
    """The window slides: what is kept is the restarts still in it, this one last."""
    assert _decide(history=(1.0, 6.0)).history == (6.0, 10.0)
    assert _decide(history=(6.0, 7.0, 8.0)).history == (6.0, 7.0, 8.0, 10.0)
    # A child that finishes leaves the history as it was.
    assert _decide(restarts=(TE,), history=(1.0,)).history == (1.0,)


def test_alone_is_a_restart_of_the_child_alone_at_once() -> None:
    """The restart that can be done in place, in the exiting actor's task."""
    assert _decide().alone
    assert _decide(strategy=REST, restarts=(P, P), index=1).alone
    assert not _decide(strategy=ALL, restarts=(P, P)).alone
    assert not _decide(restarts=(TE,)).alone
    assert not _decide(max_restarts=0).alone
    assert not _decide(backoff=corral.Backoff(min=0.1, max=1.0)).alone


BACKOFF = corral.Backoff(min=0.1, max=1.0, jitter=0.5, reset_after=3.0)


@pytest.mark.parametrize(
    ("count", "started_at", "rand", "delay", "after"),
    [
        pytest.param(0, 9.0, 0.0, 0.1, 1, id="first restart: min"),
        pytest.param(2, 9.0, 0.0, 0.4, 3, id="doubles per consecutive restart"),
        pytest.param(6, 9.0, 0.0, 1.0, 7, id="capped at max"),
        pytest.param(2, 9.0, 1.0, 0.6, 3, id="jitter scales by 1 + jitter * rand"),
        pytest.param(5, 7.0, 0.0, 0.1, 1, id="quiet period passed: the count starts again"),
        pytest.param(5, 7.01, 0.0, 1.0, 6, id="just inside the quiet period: it does not"),
    ],
)
def test_backoff_delays_the_restart(
    count: int, started_at: float, rand: float, delay: float, after: int
) -> None:
    decision = _decide(
        backoff=BACKOFF, backoff_count=count, started_at=started_at, rand=lambda: rand
    )
    assert decision.action is RESTART
    assert decision.delay == pytest.approx(delay)
    assert decision.backoff_count == after


def test_the_random_draw_is_made_only_for_a_restart_that_waits_on_a_backoff() -> None:
    draws: list[float] = []

    def rand() -> float:
        draws.append(0.5)
        return 0.5

    _decide(rand=rand)  # no backoff
    _decide(backoff=BACKOFF, restarts=(TE,), rand=rand)  # finishes
    _decide(backoff=BACKOFF, max_restarts=0, rand=rand)  # gives up
    assert draws == []
    _decide(backoff=BACKOFF, rand=rand)
    assert draws == [0.5]


def test_an_index_outside_the_live_children_is_refused() -> None:
    with pytest.raises(IndexError, match="child 2 of 2 live children"):
        _decide(restarts=(P, P), index=2)
