"""One runtime's part in a cluster: its NATS connection, and the two sides that use it.

The node connects, makes sure the cluster's stream and its bucket of result
records exist, and listens on its inbox (answers), on the cluster's cancel
subject (callers giving up) and for the servers' max-deliveries advisories.
What it serves lives in :mod:`._serving`; what it calls, in :mod:`._calling`.

nats-py is an asyncio library: this module runs only on anyio's asyncio
backend (the runtime refuses a cluster on trio at entry).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

from .._core._exceptions import InvalidStateError
from .._core._future import Future
from .._core._loop import LoopHooks
from .._core._messages import Kind
from .._core._specs import ChildSpec
from .._protocol import Protocol
from .._services._redact import redact_unparsed_url
from ._calling import PUBLISH_LIMIT, Calling, Chunks
from ._exceptions import ClusterUnavailable
from ._members import Members, status_subject
from ._records import Records, bounded, retrying, wait_for_leader
from ._serving import Serving
from ._sharing import Sharing, pause_subject
from ._spec import Cluster, default_node_name
from ._wire import CANCEL

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from .._core._runtime import Runtime

__all__ = ["ClusterNode", "connect", "on_asyncio"]

logger = logging.getLogger("corral.cluster")


def on_asyncio() -> bool:
    """Whether the running event loop is anyio's asyncio backend."""
    backend = anyio.lowlevel.current_token().backend_class
    return backend.__module__.rsplit(".", 1)[-1] == "_asyncio"


#: Longest one try of a set-up step may take before it is made again (s).
_SET_UP_TRY: Final = 2.0


def _no_loop() -> Any:
    raise InvalidStateError("the cluster node is not open")


class LoopEvent:
    """An event of the event loop's own futures: what :class:`anyio.Event` does, cheaper.

    asyncio's ``Event`` (under anyio's) checks its loop under a lock on
    every wait; a remote call's future is waited on once, by one task, in
    the loop this node runs in. Each waiter gets a future of its own, so
    one cancelled waiter cancels no other.
    """

    __slots__ = ("_is_set", "_new", "_waiters")

    def __init__(self, new_future: Callable[[], Any]) -> None:
        self._new = new_future
        self._waiters: list[Any] = []
        self._is_set = False

    async def wait(self) -> None:
        if self._is_set:
            await anyio.lowlevel.checkpoint()
            return
        fut = self._new()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if not self._is_set:
                self._waiters.remove(fut)

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def is_set(self) -> bool:
        return self._is_set


async def connect(servers: Sequence[str], timeout: float, name: str, **callbacks: Any) -> Client:
    """A nats-py connection to *servers* that reconnects for ever once made.

    Raises:
        ClusterUnavailable: None answered within *timeout* seconds (the
            servers named, passwords redacted).
    """
    import nats

    text = ", ".join(redact_unparsed_url(url) for url in servers)
    client = None
    with anyio.move_on_after(timeout):
        try:
            client = await nats.connect(
                servers=list(servers),
                connect_timeout=timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                name=name,
                **callbacks,
            )
        except Exception as exc:
            raise ClusterUnavailable(
                f"cannot connect to NATS at {text}: {type(exc).__name__}: {exc}"
            ) from None
    if client is None:
        raise ClusterUnavailable(f"NATS at {text} did not answer within {timeout} s")
    return client


class ClusterNode:
    """A runtime's membership of a cluster (made by the runtime when it has one).

    Its public members are what the serving and calling sides share: the
    connection, the stream's settings, the protocol, the result records.
    """

    def __init__(self, spec: Cluster, runtime: Runtime) -> None:
        self.spec = spec
        self.runtime = runtime
        self.protocol = Protocol(spec.types)
        #: The classes the protocol knows (its names() copies the registry: not per call).
        self.registered: set[type] = set(self.protocol.names().values())
        self.servers_text = ", ".join(redact_unparsed_url(url) for url in spec.servers)
        #: The loop's clock (set at open: anyio.current_time() finds the backend each call).
        self.now: Callable[[], float] = anyio.current_time
        #: Makes a bare future of the event loop (asyncio's; set at open): the
        #: cheapest thing to await, for waits of one task on one event.
        self.new_waiter: Callable[[], Any] = _no_loop
        #: The subject this node's answers arrive on (``<inbox>.<call id>``).
        self.inbox = ""
        self.max_payload = 0
        #: Whether the servers drop a message past its own TTL (2.11 and newer).
        self.msg_ttl = False
        self._cancel_subject = f"corral.{spec.name}.{CANCEL}"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._records: Records | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self.serving = Serving(self)
        self.calling = Calling(self)
        #: This node's record among the cluster's members.
        self.members = Members(self, spec.node or default_node_name())
        #: Its parts of the rate limits shared across the cluster.
        self.sharing = Sharing(self)

    def new_event(self) -> LoopEvent:
        """An event for a remote call's future (its waiters wait in this node's loop)."""
        return LoopEvent(self.new_waiter)

    @property
    def nc(self) -> Client:
        assert self._nc is not None
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None
        return self._js

    @property
    def records(self) -> Records:
        assert self._records is not None
        return self._records

    @property
    def tg(self) -> anyio.abc.TaskGroup:
        assert self._tg is not None
        return self._tg

    def register(self, cls: type) -> None:
        """Let the protocol carry *cls* (a message or reply class), once."""
        if cls not in self.registered:
            self.protocol.register(cls)
            self.registered.add(cls)

    # --- joining and leaving -------------------------------------------------------

    async def open(self, tg: anyio.abc.TaskGroup) -> None:
        """Connect, make sure the stream exists, and listen for replies and cancellations.

        Raises:
            ClusterUnavailable: No server answered within ``connect_timeout``.
            ClusterConflict: A live node has this node's name.
        """
        spec = self.spec
        self._tg = tg
        self.now = LoopHooks().clock
        loop: Any = anyio.lowlevel.current_token().native_token  # asyncio's: checked at entry
        self.new_waiter = loop.create_future
        self._nc = await connect(
            spec.servers,
            spec.connect_timeout,
            f"corral {spec.name} {self.members.name}",
            error_cb=self._on_error,
            reconnected_cb=self._on_reconnected,
        )
        try:
            await self._set_up(self._nc)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._nc.close()
            raise

    async def _set_up(self, nc: Client) -> None:
        """Make the stream and the buckets (or find them), and subscribe."""
        from nats.js import api

        spec = self.spec
        tg = self.tg
        self._js = js = nc.jetstream(timeout=spec.connect_timeout)
        self.max_payload = min(nc.max_payload, spec.max_payload or nc.max_payload)
        version = nc.connected_server_version
        self.msg_ttl = (version.major, version.minor) >= (2, 11)
        replicas = spec.replicas
        if replicas is None:
            replicas = 3 if len(nc.servers) >= 3 else 1
        config = api.StreamConfig(
            name=spec.stream,
            subjects=[f"corral.{spec.name}.call.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=max(120.0, 4 * PUBLISH_LIMIT),
            max_msgs_per_subject=spec.mailbox,
            discard=api.DiscardPolicy.NEW,
            discard_new_per_subject=True,
            allow_msg_ttl=True if self.msg_ttl else None,
        )
        try:
            with anyio.fail_after(spec.connect_timeout):
                # Each step bounded and tried again: a request the servers drop
                # (a new cluster's first leader change) would else wait it all.
                until = self.now() + spec.connect_timeout
                ensure = bounded(lambda: self._ensure_stream(js, config), _SET_UP_TRY)
                await retrying(ensure, until, clock=self.now)
                leader = bounded(lambda: wait_for_leader(js, spec.stream), _SET_UP_TRY)
                await retrying(leader, until, clock=self.now)
                records = bounded(lambda: Records.open(js, spec, replicas), _SET_UP_TRY)
                self._records = await retrying(records, until, clock=self.now)
                await self.members.open(js, replicas)
        except TimeoutError:
            raise ClusterUnavailable(
                f"JetStream at {self.servers_text} did not answer within "
                f"{spec.connect_timeout} s (is JetStream enabled, and has the cluster a leader?)"
            ) from None
        calling = self.calling
        self.inbox = nc.new_inbox()
        await nc.subscribe(f"{self.inbox}.*", cb=calling.on_reply)
        await nc.subscribe(self._cancel_subject, cb=self.serving.on_cancel)
        await nc.subscribe(status_subject(spec.name), cb=self.members.on_status)
        await nc.subscribe(pause_subject(spec.name), cb=self.sharing.on_pause)
        await nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{spec.stream}.*", cb=calling.on_lost
        )
        tg.start_soon(calling.expire_loop, name="corral cluster deadlines")
        tg.start_soon(self.serving.keepalive_loop, name="corral cluster in-progress acks")
        tg.start_soon(self.serving.outbox_loop, name="corral cluster core NATS answers")
        tg.start_soon(calling.recheck_loop, name="corral cluster answers lost on the way")
        tg.start_soon(calling.liveness_loop, name="corral cluster core NATS calls alive")
        tg.start_soon(calling.ack_timeout_loop, name="corral cluster publishes unacknowledged")
        tg.start_soon(self.members.loop, name="corral cluster node record")

    async def _ensure_stream(self, js: JetStreamContext, config: Any) -> None:
        from nats.js.errors import BadRequestError, NotFoundError

        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:
                info = await js.stream_info(config.name)  # another node made it meanwhile
            else:
                return
        if info.config.max_msgs_per_subject != config.max_msgs_per_subject:
            # Another node made it with another mailbox bound: the last one set wins.
            bound = config.max_msgs_per_subject
            await js.update_stream(dataclasses.replace(info.config, max_msgs_per_subject=bound))

    async def serve(self, spec: ChildSpec) -> None:
        """Serve the exported actor of *spec* to the cluster from this node."""
        await self.serving.serve(spec)

    async def unserve(self, name: str) -> None:
        """Serve actor *name* to the cluster no more (it stopped for good)."""
        await self.serving.unserve(name)

    async def send(
        self,
        name: str,
        msg: object,
        kind: Kind,
        timeout: float | None,
        *,
        wait: bool,
        chunks: Chunks | None = None,
    ) -> Future[Any] | None:
        """Publish a call to actor *name* (see :meth:`Calling.send`)."""
        if self._nc is None or self._closing:
            raise InvalidStateError("the runtime's cluster connection is closed")
        return await self.calling.send(name, msg, kind, timeout, wait=wait, chunks=chunks)

    def stop_fetching(self) -> None:
        """Take no more calls from the cluster (a graceful stop begins)."""
        self.serving.stop_fetching()

    async def close(self) -> None:
        """Answer what still runs, hand back what never will, then leave."""
        await self.serving.close()
        self._closing = True
        self.calling.close()
        self.sharing.close()
        nc = self._nc
        if nc is not None and not nc.is_closed:
            await self.members.leave()
            # Flush what is written (answers, acks), then close. Not drain():
            # it waits for every subscription's queue to empty, and a pull
            # subscription's queue may hold what no fetch will read again.
            with anyio.move_on_after(self.spec.connect_timeout, shield=True):
                try:
                    await nc.flush(timeout=max(1, round(self.spec.connect_timeout)))
                except Exception as exc:
                    logger.warning("NATS did not take the last answers: %s", exc)
            with anyio.CancelScope(shield=True):
                await nc.close()

    def broadcast_cancel(self, call_id: uuid.UUID) -> None:
        """Tell every node that the caller of *call_id* gave up (it cancelled, or timed out)."""
        self.publish_soon(self._cancel_subject, str(call_id).encode())

    def publish_soon(self, subject: str, data: bytes) -> None:
        """Publish *data* on core NATS from a task of its own (nothing when not connected)."""
        tg, nc = self._tg, self._nc
        if tg is not None and nc is not None and not nc.is_closed:
            tg.start_soon(nc.publish, subject, data)

    def sharing_discover(self) -> None:
        """Look for shared limiters again (a child was started later)."""
        self.sharing.discover()

    async def started(self) -> None:
        """The runtime's tree is up: take this node's parts of the shared limits, then say so."""
        self.sharing.discover()
        if self.sharing.names:
            self.sharing.update(await self.members.read_all())
        await self.members.write_soon()

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS connection: %s: %s", type(exc).__name__, exc)

    async def _on_reconnected(self) -> None:
        tg = self._tg
        if tg is not None and not self._closing:
            tg.start_soon(self.calling.recover, name="corral cluster answers lost in a reconnect")
