"""Rate limits shared by a cluster's nodes: each node's part, and pauses told to all.

A :class:`corral.RateLimiter` declared ``shared="<name>"`` is one limit for
every node whose actors use a limiter of that name. Each node lists the
shared names it uses in its record (:mod:`._members`), and the nodes it
counts for each: the live records that list the name. Its part is one
over that count.

The order of the moves keeps the sum of the parts at most the whole:

* A node that starts using a name takes no part (its limiters admit
  nothing) until every other node using it lists it among the nodes it
  counts. A node lists another only after it has cut its own part to
  count it, so by then the others have made room. Its buckets start empty:
  it brings no burst of its own.
* A node whose record disappears (it died; its record expires after three
  periods) stops being counted, and the others' parts grow. A node that has
  not written its record for two periods (it lost NATS) drops its parts to
  nothing and starts over as a newcomer when it writes again, so it has
  stopped before the others can count it out.

A 429 with ``Retry-After`` seen by one node pauses the limiters of that name
on every node: the pause is published on ``corral.<cluster>.limit.pause``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._services._policy import ServicePolicy
from .._services._ratelimit import RateLimiter

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._members import NodeReport
    from ._node import ClusterNode

__all__ = ["Sharing", "pause_subject", "shared_limiters"]

logger = logging.getLogger("corral.cluster")


def pause_subject(cluster: str) -> str:
    """The subject on which the nodes of *cluster* tell each other of 429 pauses."""
    return f"corral.{cluster}.limit.pause"


def shared_limiters(policies: Iterable[Any]) -> dict[str, list[RateLimiter]]:
    """The shared limiters of *policies* by name, each object once."""
    found: dict[str, list[RateLimiter]] = {}
    for policy in policies:
        if not isinstance(policy, ServicePolicy):
            continue
        limiter = policy.rate_limiter
        if limiter is None or limiter.shared is None:
            continue
        same = found.setdefault(limiter.shared, [])
        if all(limiter is not other for other in same):
            same.append(limiter)
    return found


class Sharing:
    """This node's parts of the cluster's shared limits."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self._limiters: dict[str, list[RateLimiter]] = {}
        self._unlisten: dict[int, Callable[[], None]] = {}
        #: Per name: the nodes this node counts (written in its record).
        self.counted: dict[str, list[str]] = {}
        #: Names for which every other node counts this one.
        self._active: set[str] = set()

    @property
    def names(self) -> list[str]:
        """The shared names this node's actors use."""
        return sorted(self._limiters)

    def discover(self) -> None:
        """Find the shared limiters of the runtime's actors; a new one starts with no part."""
        runtime = self._node.runtime
        found = shared_limiters(ref.policy for ref in runtime.refs())
        for name, limiters in found.items():
            for limiter in limiters:
                if id(limiter) in self._unlisten:
                    continue
                limiter.set_share(0.0)
                limiter.empty()
                self._unlisten[id(limiter)] = limiter.on_pause(
                    functools.partial(self._tell_pause, name)
                )
            known = self._limiters.setdefault(name, [])
            known.extend(x for x in limiters if all(x is not y for y in known))
        for name, limiters in self._limiters.items():
            if len(limiters) > 1:
                logger.warning(
                    "%d rate limiters on node %r are shared as %r: each takes an equal part of "
                    "this node's share (share one RateLimiter object instead)",
                    len(limiters),
                    self._node.members.name,
                    name,
                )

    def update(self, records: Iterable[NodeReport]) -> None:
        """Recompute this node's parts from the live records (its own included or not)."""
        me = self._node.members.name
        others = [r for r in records if r.node != me]
        for name, limiters in self._limiters.items():
            users = sorted({me, *(r.node for r in others if name in r.limits)})
            listed_by_all = all(me in r.sharing.get(name, ()) for r in others if name in r.limits)
            if listed_by_all:
                if name not in self._active:
                    logger.info("node %r takes its part of the shared limit %r", me, name)
                self._active.add(name)
            share = 1.0 / len(users) / len(limiters) if name in self._active else 0.0
            for limiter in limiters:
                if limiter.share != share:
                    limiter.set_share(share)
            self.counted[name] = users

    def suspend(self) -> None:
        """Take no part of any shared limit (this node's record may have expired)."""
        if self._active:
            logger.warning(
                "node %r could not write its record for two periods: its shared limits "
                "admit nothing until it can",
                self._node.members.name,
            )
        self._active.clear()
        for limiters in self._limiters.values():
            for limiter in limiters:
                limiter.set_share(0.0)
                limiter.empty()

    def _tell_pause(self, name: str, seconds: float) -> None:
        node = self._node
        data = json.dumps({"name": name, "seconds": seconds, "node": node.members.name})
        node.publish_soon(pause_subject(node.spec.name), data.encode())

    async def on_pause(self, msg: Msg) -> None:
        """Another node was told to pause by the provider: pause this node's limiters too."""
        try:
            data = json.loads(msg.data)
            name, seconds, sender = str(data["name"]), float(data["seconds"]), data["node"]
        except (ValueError, KeyError, TypeError):
            logger.warning("a limit pause message that is not one was dropped")
            return
        if sender == self._node.members.name:
            return
        for limiter in self._limiters.get(name, ()):
            limiter.pause(seconds, tell=False)

    def close(self) -> None:
        """Stop telling the cluster of pauses; the limiters take the whole limit again."""
        for unlisten in self._unlisten.values():
            unlisten()
        self._unlisten.clear()
        for limiters in self._limiters.values():
            for limiter in limiters:
                limiter.set_share(1.0)
        self._limiters.clear()
        self._active.clear()
