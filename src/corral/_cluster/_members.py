"""Who is in a cluster, and how each node's actors are doing.

Every node keeps one record in the cluster's bucket of members
(``CORRAL_<name>_nodes``, JetStream KV with a TTL): its name, host, pid,
corral version, start time and, per actor, its counts, rates, rate limiter
and circuit. It writes the record when it joins and then every period (its
heartbeat, at most 1 s, or a third of the bucket's TTL if that is shorter), and deletes
it when it leaves; a node that dies stops writing, and its record expires
with the bucket's TTL (three periods of the node that made the bucket).
A node also answers requests on ``corral.<name>.status`` with a record made
on the spot: that is how ``corral status`` reads the cluster.

A node name is one live node's: a second node with the same name is
refused at entry while the first still writes its record (on the same host,
while its process lives).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
import cattrs

from .._core._calls import Call
from .._core._instrument import Instrument
from .._core._specs import SupervisorEvent, SupervisorEventKind
from .._version import __version__
from ._exceptions import ClusterConflict
from ._records import bounded, retrying, wait_for_leader

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from .._core._pile import ActorStatus
    from .._core._ref import ActorRef
    from ._node import ClusterNode

__all__ = [
    "ActorReport",
    "LimiterReport",
    "Members",
    "NodeReport",
    "decode_report",
    "encode_report",
    "members_bucket",
    "status_subject",
]

logger = logging.getLogger("corral.cluster")

#: A record lives this many of its writer's periods after its last write.
TTL_PERIODS: Final = 3
#: The longest period (a shorter heartbeat makes it shorter): a dead node
#: leaves the view, and its part of a shared limit goes to the others,
#: within a few seconds.
MOST_PERIOD: Final = 1.0
#: Seconds of history the per-second rates are taken over (at least one period).
RATE_WINDOW: Final = 10.0


def members_bucket(cluster: str) -> str:
    """The KV bucket of cluster *cluster*'s node records."""
    return f"CORRAL_{cluster}_nodes"


def status_subject(cluster: str) -> str:
    """The subject on which every node of *cluster* answers with its record."""
    return f"corral.{cluster}.status"


@attrs.frozen(kw_only=True)
class LimiterReport:
    """A rate limiter's state, as a node reports it."""

    waiting: int
    in_use: int
    paused_for: float
    requests_available: float | None
    tokens_available: float | None
    #: The name it is shared under across the cluster, and this node's part of it.
    shared: str | None
    share: float


@attrs.frozen(kw_only=True)
class ActorReport:
    """One actor on one node: counts since it was spawned, rates, limiter and circuit."""

    name: str
    actor_class: str
    state: str
    #: Served to the cluster (``export=True``), and how (``durable``).
    exported: bool
    durable: bool
    #: The message types an exported actor takes: name -> field names.
    protocol: dict[str, list[str]]
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    expired: int
    retries: int
    restarts: int
    #: Calls finished per second, over the last :data:`RATE_WINDOW` seconds.
    succeeded_per_s: float
    failed_per_s: float
    limiter: LimiterReport | None
    #: The circuit breaker's state (``closed``, ``open``, ``half_open``), if it has one.
    circuit: str | None


@attrs.frozen(kw_only=True)
class NodeReport:
    """One node's record: who it is, and its actors."""

    node: str
    #: Unique to the runtime that writes it (two runtimes of one process differ).
    instance: str
    host: str
    pid: int
    version: str
    #: Wall-clock seconds (``time.time()``) of its start and of this report.
    started_at: float
    reported_at: float
    #: Seconds between the node's writes of its record.
    period: float
    actors: tuple[ActorReport, ...]
    #: The shared rate limits its actors use, and per name the nodes it counts.
    limits: tuple[str, ...] = ()
    sharing: dict[str, list[str]] = attrs.field(factory=dict)


_converter = cattrs.Converter()


def encode_report(report: NodeReport) -> bytes:
    """*report* as compact JSON."""
    return json.dumps(_converter.unstructure(report), separators=(",", ":")).encode()


def decode_report(data: bytes) -> NodeReport | None:
    """The report in *data*, or ``None`` when it is not one (logged)."""
    try:
        return _converter.structure(json.loads(data), NodeReport)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
        logger.warning("a node record that is not one was skipped: %s", exc)
        return None


def protocol_of(ref: ActorRef[Any, Any]) -> dict[str, list[str]]:
    """What crosses the wire to *ref*'s actor: each message type's name and field names."""
    # Once per class: a node's record is made every period and on every status request.
    known = _protocols.get(ref.actor_class)
    if known is None:
        known = _protocols[ref.actor_class] = _shapes_of(ref.actor_class)
    return known


_protocols: weakref.WeakKeyDictionary[type, dict[str, list[str]]] = weakref.WeakKeyDictionary()


def _shapes_of(actor_class: type[Any]) -> dict[str, list[str]]:
    from .._core._actor import message_types

    shapes: dict[str, list[str]] = {}
    for cls in message_types(actor_class):
        if attrs.has(cls):
            # Its wire name, as the protocol registers it: the module path may
            # differ between processes (``__main__`` in one, the module in another).
            name = getattr(cls, "__corral_message_name__", None) or (
                f"{cls.__module__}.{cls.__qualname__}"
            )
            shapes[name] = sorted(field.name for field in attrs.fields(cls))
    return dict(sorted(shapes.items()))


class _Counters(Instrument):
    """Counts the retries a call policy schedules, per actor; sees children started later."""

    def __init__(self, started: Callable[[], None]) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._started = started

    def retry_scheduled(self, call: Call, delay: float, error: BaseException) -> None:
        self.counts[call.actor_name] += 1

    def supervisor_event(self, event: SupervisorEvent) -> None:
        if event.kind is SupervisorEventKind.CHILD_STARTED:
            self._started()


#: Seconds one try of an entry-time bucket operation may take before it is tried again.
TRY_FOR: Final = 1.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it lives
    return True


class Members:
    """This node's record in the members bucket, written every period, removed on leaving."""

    def __init__(self, node: ClusterNode, name: str) -> None:
        self._node = node
        self.name = name
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.instance = uuid.uuid4().hex
        self.started_at = time.time()
        self.period = min(node.spec.heartbeat, MOST_PERIOD)
        #: Feeds the retry counts, and finds the shared limiters of children
        #: started later (the runtime adds it to its instruments).
        self.instrument = _Counters(node.sharing_discover)
        self._bucket: KeyValue | None = None
        # Per actor: (monotonic time, succeeded, failed) samples for the rates.
        self._samples: dict[str, collections.deque[tuple[float, int, int]]] = {}
        self._failing = False

    async def open(self, js: JetStreamContext, replicas: int) -> None:
        """Make sure the bucket exists, claim this node's name, and write its first record.

        Raises:
            ClusterConflict: A live node has this node's name.
        """
        from nats.js import api
        from nats.js.errors import BadRequestError

        spec = self._node.spec
        config = api.KeyValueConfig(
            bucket=members_bucket(spec.name),
            history=1,
            ttl=TTL_PERIODS * self.period,
            storage=api.StorageType.FILE,
            replicas=replicas,
        )
        try:
            self._bucket = await js.create_key_value(config)
        except BadRequestError:
            self._bucket = await js.key_value(config.bucket)  # made by another node
        await wait_for_leader(js, f"KV_{config.bucket}")
        status = await self._bucket.status()
        ttl = status.stream_info.config.max_age or 0.0
        if ttl > 0:
            # The bucket's maker chose the TTL: write often enough for it.
            self.period = min(self.period, ttl / TTL_PERIODS)
        # A bucket just made on a cluster may not answer until its leader is elected
        # (a request may then go unanswered): each try is bounded, and tried again.
        until = time.time() + spec.connect_timeout
        await retrying(bounded(self._claim_name, TRY_FOR), until, final=ClusterConflict)
        self._sample()
        await self.write_soon()

    async def _claim_name(self) -> None:
        from nats.js.errors import KeyNotFoundError

        assert self._bucket is not None
        try:
            entry = await self._bucket.get(self.name)
        except KeyNotFoundError:
            return
        other = decode_report(entry.value or b"")
        if other is None or other.instance == self.instance:
            return
        if other.host == self.host and not _process_alive(other.pid):
            return  # its process died: the name is free
        if time.time() - other.reported_at > 2 * max(other.period, self.period):
            return  # it stopped writing: gone
        raise ClusterConflict(
            f"the node name {self.name!r} is taken by a live node (pid {other.pid} on "
            f"{other.host}, up since {time.ctime(other.started_at)}): give this one another "
            "name (Cluster(node=...), corral serve --name)"
        )

    async def check_protocol(self, ref: ActorRef[Any, Any]) -> None:
        """Refuse to serve *ref*'s actor if another live node serves it with other messages.

        Raises:
            ClusterConflict: Naming the other node and both protocols.
        """
        mine = protocol_of(ref)
        until = time.time() + self._node.spec.connect_timeout
        for other in await retrying(bounded(self.read_all, TRY_FOR), until):
            if other.node == self.name:
                continue
            for actor in other.actors:
                if actor.name == ref.name and actor.exported and actor.protocol != mine:
                    raise ClusterConflict(
                        f"actor {ref.name!r} is served by node {other.node!r} with other "
                        f"messages ({_shapes(actor.protocol)}) than this node's "
                        f"({_shapes(mine)}): serve it under another name, or stop the "
                        "nodes that run the old code first"
                    )

    async def read_all(self) -> list[NodeReport]:
        """Every live node's last written record."""
        return await read_records(self._node.js, self._node.spec.name)

    def report(self) -> NodeReport:
        """This node's record, now."""
        runtime = self._node.runtime
        exported = self._node.serving.exported()
        now = time.monotonic()
        actors = []
        statuses = runtime.status()
        for name, status in statuses.items():
            ref = runtime.ref(name)
            durable = exported.get(name)
            actors.append(self._actor_report(ref, status, durable, now))
        for gone in set(self._samples) - set(statuses):
            del self._samples[gone]
        return NodeReport(
            node=self.name,
            instance=self.instance,
            host=self.host,
            pid=self.pid,
            version=__version__,
            started_at=self.started_at,
            reported_at=time.time(),
            period=self.period,
            actors=tuple(actors),
            limits=tuple(self._node.sharing.names),
            sharing=dict(self._node.sharing.counted),
        )

    def _actor_report(
        self, ref: ActorRef[Any, Any], status: ActorStatus, durable: bool | None, now: float
    ) -> ActorReport:
        counts = status.counts
        succeeded, failed = counts.get("succeeded", 0), counts.get("failed", 0)
        failed_all = failed + counts.get("expired", 0)
        samples = self._samples.get(ref.name)
        if samples is None:
            # Its first report is the baseline its rates are counted from.
            samples = self._samples[ref.name] = collections.deque([(now, succeeded, failed_all)])
        if now - samples[0][0] > 0:
            then, was_ok, was_failed = samples[0]
            ok_rate = (succeeded - was_ok) / (now - then)
            fail_rate = (failed_all - was_failed) / (now - then)
        else:
            ok_rate = fail_rate = 0.0
        limiter, circuit = _policy_state(ref)
        return ActorReport(
            name=ref.name,
            actor_class=status.actor_class,
            state=status.state.value,
            exported=durable is not None,
            durable=bool(durable),
            protocol=protocol_of(ref) if durable is not None else {},
            queued=status.queue_depth,
            running=status.in_flight,
            succeeded=succeeded,
            failed=failed,
            cancelled=counts.get("cancelled", 0),
            expired=counts.get("expired", 0),
            retries=self.instrument.counts[ref.name],
            restarts=status.restarts,
            succeeded_per_s=round(max(ok_rate, 0.0), 3),
            failed_per_s=round(max(fail_rate, 0.0), 3),
            limiter=limiter,
            circuit=circuit,
        )

    def _sample(self) -> None:
        now = time.monotonic()
        for name, status in self._node.runtime.status().items():
            counts = status.counts
            ok = counts.get("succeeded", 0)
            failed = counts.get("failed", 0) + counts.get("expired", 0)
            samples = self._samples.setdefault(name, collections.deque())
            samples.append((now, ok, failed))
            while len(samples) > 1 and now - samples[1][0] >= RATE_WINDOW:
                samples.popleft()

    async def write(self) -> None:
        """Write this node's record (it lives for the bucket's TTL)."""
        assert self._bucket is not None
        await self._bucket.put(self.name, encode_report(self.report()))

    async def write_soon(self) -> None:
        """Write this node's record, again while it fails, for up to ``connect_timeout``.

        At entry: a bucket just made on a cluster may not have elected
        its leader yet (the servers answer "no responders").
        """
        await retrying(bounded(self.write, TRY_FOR), time.time() + self._node.spec.connect_timeout)

    async def loop(self) -> None:
        """Every period: recompute the shared limits, take a sample for the rates, write the record.

        A node that has not written its record for two periods takes no
        part of the shared limits: the others may soon count it out.
        """
        sharing = self._node.sharing
        written = time.monotonic()
        while True:
            await anyio.sleep(self.period)
            try:
                if sharing.names:
                    sharing.update(await self.read_all())
                self._sample()
                await self.write()
            except Exception as exc:
                if not self._failing:
                    logger.warning("could not write node %r's record: %s", self.name, exc)
                self._failing = True
                if time.monotonic() - written >= 2 * self.period:
                    sharing.suspend()
            else:
                self._failing = False
                written = time.monotonic()

    async def on_status(self, msg: Msg) -> None:
        """Answer a status request with this node's record, made now."""
        if not msg.reply:
            return
        try:
            await self._node.nc.publish(msg.reply, encode_report(self.report()))
        except Exception as exc:
            logger.warning("could not answer a status request: %s", exc)

    async def leave(self) -> None:
        """Remove this node's record (bounded; a failure only leaves it to its TTL)."""
        if self._bucket is None:
            return
        with anyio.move_on_after(self._node.spec.connect_timeout, shield=True):
            try:
                await self._bucket.delete(self.name)
            except Exception as exc:
                logger.warning("could not remove node %r's record: %s", self.name, exc)


async def read_records(js: JetStreamContext, cluster: str) -> list[NodeReport]:
    """Every live node's record in cluster *cluster*'s members bucket, by node name.

    The keys come from the bucket's stream (its subjects holding a
    message), not from a KV watch: a watch waits for a marker that a
    bucket written to every heartbeat may keep it waiting for.
    """
    from nats.js.errors import KeyNotFoundError

    bucket = members_bucket(cluster)
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    subjects = info.state.subjects or {}
    kv = await js.key_value(bucket)
    reports = []
    for subject in sorted(subjects):
        try:
            entry = await kv.get(subject.removeprefix(prefix))
        except KeyNotFoundError:
            continue  # it left (a delete marker), or its record expired meanwhile
        report = decode_report(entry.value or b"")
        if report is not None:
            reports.append(report)
    return reports


def _shapes(protocol: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{name}({', '.join(fields)})" for name, fields in protocol.items()) or "none"


def _policy_state(ref: ActorRef[Any, Any]) -> tuple[LimiterReport | None, str | None]:
    from .._services._policy import ServicePolicy

    policy = ref.policy
    if not isinstance(policy, ServicePolicy):
        return None, None
    limiter = circuit = None
    if policy.rate_limiter is not None:
        s = policy.rate_limiter.status()
        limiter = LimiterReport(
            waiting=s.waiting + s.waiting_for_slot,
            in_use=s.in_use,
            paused_for=round(s.paused_for, 3),
            requests_available=s.requests_available,
            tokens_available=s.tokens_available,
            shared=s.shared,
            share=round(s.share, 6),
        )
    if policy.breaker is not None:
        circuit = policy.breaker.state.value
    return limiter, circuit
