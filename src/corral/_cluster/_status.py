"""A cluster seen from outside: its live nodes, their actors, and the calls waiting in the stream.

What ``corral status`` reads. It needs no runtime: it connects to NATS,
lists the members bucket (who is alive), asks every node for a fresh record
on the status subject, and reads each exported actor's durable consumer for
the calls still waiting in the stream. A node that does not answer in time
is shown with its last written record, marked stale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._services._redact import redact_unparsed_url
from ._exceptions import ClusterUnavailable
from ._members import (
    ActorReport,
    NodeReport,
    decode_report,
    read_records,
    status_subject,
)
from ._wire import token

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["ClusterStatus", "StatusReader", "StreamDepth"]

#: What the totals add up, per actor and for the cluster.
SUMMED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
    "retries",
    "restarts",
    "succeeded_per_s",
    "failed_per_s",
)


@attrs.frozen(kw_only=True)
class StreamDepth:
    """An exported actor's calls in the stream: not yet delivered, and delivered but unacked."""

    waiting: int
    unacked: int


@attrs.frozen(kw_only=True)
class ClusterStatus:
    """One snapshot of a cluster."""

    cluster: str
    taken_at: float
    nodes: tuple[NodeReport, ...]
    #: Nodes that did not answer in time (their last written record is shown).
    stale: frozenset[str]
    #: Per durable exported actor.
    stream: dict[str, StreamDepth]

    def actors(self) -> list[str]:
        """Every actor name any node runs, exported ones first, each once."""
        names: dict[str, bool] = {}
        for node in self.nodes:
            for actor in node.actors:
                names[actor.name] = names.get(actor.name, False) or actor.exported
        return sorted(names, key=lambda n: (not names[n], n))

    def rows(self, actor: str) -> list[tuple[str, ActorReport]]:
        """(node, report) for each node that runs *actor*."""
        return [(n.node, a) for n in self.nodes for a in n.actors if a.name == actor]

    def to_json(self) -> dict[str, Any]:
        """The snapshot as plain data: nodes, actors with their per-node rows and totals."""
        actors = []
        for name in self.actors():
            rows = self.rows(name)
            depth = self.stream.get(name)
            actors.append(
                {
                    "actor": name,
                    "exported": any(a.exported for _, a in rows),
                    "stream": None if depth is None else attrs.asdict(depth),
                    "nodes": [{"node": node, **_row(a)} for node, a in rows],
                    "totals": _totals(a for _, a in rows),
                }
            )
        every = [a for n in self.nodes for a in n.actors]
        totals = _totals(every)
        totals["stream_waiting"] = sum(d.waiting for d in self.stream.values())
        return {
            "cluster": self.cluster,
            "taken_at": self.taken_at,
            "nodes": [
                {
                    "node": n.node,
                    "host": n.host,
                    "pid": n.pid,
                    "version": n.version,
                    "started_at": n.started_at,
                    "reported_at": n.reported_at,
                    "stale": n.node in self.stale,
                    "exported": [a.name for a in n.actors if a.exported],
                }
                for n in self.nodes
            ],
            "actors": actors,
            "totals": totals,
        }


def _row(actor: ActorReport) -> dict[str, Any]:
    data = attrs.asdict(actor)
    del data["name"], data["protocol"]
    return data


def _totals(actors: Any) -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(SUMMED, 0)
    for actor in actors:
        for key in SUMMED:
            totals[key] += getattr(actor, key)
    for key in ("succeeded_per_s", "failed_per_s"):
        totals[key] = round(totals[key], 3)
    return totals


class StatusReader:
    """A connection to a cluster's NATS servers that takes snapshots of it."""

    def __init__(self, servers: Sequence[str], cluster: str, *, timeout: float = 5.0) -> None:
        self.servers = list(servers)
        self.cluster = cluster
        self.timeout = timeout
        self._servers_text = ", ".join(redact_unparsed_url(url) for url in servers)
        self._nc: Client | None = None

    async def __aenter__(self) -> StatusReader:
        from ._node import connect

        self._nc = await connect(self.servers, self.timeout, f"corral status {self.cluster}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._nc is not None:
            with anyio.CancelScope(shield=True):
                await self._nc.close()

    async def snapshot(self, wait: float = 1.0) -> ClusterStatus:
        """The cluster now: every live node's fresh record, and the stream's depth.

        Waits at most *wait* seconds for the nodes' answers.

        Raises:
            ClusterUnavailable: NATS did not answer, or no cluster of that name exists.
        """
        from nats.js.errors import NotFoundError

        assert self._nc is not None
        try:
            with anyio.fail_after(self.timeout):
                js = self._nc.jetstream(timeout=self.timeout)
                try:
                    records = await read_records(js, self.cluster)
                except NotFoundError:
                    raise ClusterUnavailable(
                        f"no corral cluster named {self.cluster!r} at {self._servers_text} "
                        "(no node of it has started there)"
                    ) from None
                written = {r.node: r for r in records}
        except TimeoutError:
            raise ClusterUnavailable(
                f"JetStream at {self._servers_text} did not answer within {self.timeout} s"
            ) from None
        except ClusterUnavailable:
            raise
        except Exception as exc:  # nats-py's own: a connection lost, an election under way
            raise ClusterUnavailable(
                f"JetStream at {self._servers_text} could not be read: {type(exc).__name__}: {exc}"
            ) from None
        try:
            fresh = await self._ask(set(written), wait)
        except Exception as exc:
            raise ClusterUnavailable(
                f"NATS at {self._servers_text} took no status request: {type(exc).__name__}: {exc}"
            ) from None
        nodes = {**written, **fresh}
        status = ClusterStatus(
            cluster=self.cluster,
            taken_at=time.time(),
            nodes=tuple(nodes[name] for name in sorted(nodes)),
            stale=frozenset(set(written) - set(fresh)),
            stream={},
        )
        await self._depths(status)
        return status

    async def _ask(self, expected: set[str], wait: float) -> dict[str, NodeReport]:
        """Ask every node for its record; gather answers until all expected came, or *wait*."""
        assert self._nc is not None
        nc = self._nc
        answers: dict[str, NodeReport] = {}
        complete = anyio.Event()
        inbox = nc.new_inbox()

        async def on_answer(msg: Any) -> None:
            report = decode_report(msg.data)
            if report is not None:
                answers[report.node] = report
                if expected <= set(answers):
                    complete.set()

        sub = await nc.subscribe(inbox, cb=on_answer)
        try:
            await nc.publish(status_subject(self.cluster), b"", reply=inbox)
            with anyio.move_on_after(wait):
                await complete.wait()
        finally:
            await sub.unsubscribe()
        return answers

    async def _depths(self, status: ClusterStatus) -> None:
        from nats.js.errors import NotFoundError

        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.timeout)
        durable = {a.name for n in status.nodes for a in n.actors if a.exported and a.durable}
        for name in sorted(durable):
            try:
                info = await js.consumer_info(f"CORRAL_{self.cluster}", token(name))
            except NotFoundError:
                continue
            except Exception:
                continue  # an election: this snapshot goes without it
            status.stream[name] = StreamDepth(
                waiting=int(info.num_pending or 0), unacked=int(info.num_ack_pending or 0)
            )


def dumps(status: ClusterStatus) -> str:
    """*status* as indented JSON."""
    return json.dumps(status.to_json(), indent=2)
