"""One runtime's part in a cluster: its NATS connection, the actors it serves, its remote calls.

Calls travel through one JetStream stream per cluster (work-queue
retention: a call leaves the stream when a node acknowledges it), one
subject per actor, and one durable pull consumer per exported actor, shared
by every node that serves it. A node fetches only as many calls as the
actor has free worker slots, keeps each running call's delivery alive with
in-progress acks, answers the caller's inbox over core NATS (named in the
call's ``Corral-Reply-To`` header) and then acknowledges the call. A node
that dies stops sending in-progress acks: after ``ack_wait`` the servers
deliver its calls to another node, as their next attempt.

nats-py is an asyncio library: this module runs only on anyio's asyncio
backend (the runtime refuses a cluster on trio at entry).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.abc
import attrs
from opentelemetry import propagate, trace

from .._core._actor import message_types
from .._core._calls import current_call
from .._core._exceptions import (
    ActorStopped,
    DeadlineExceeded,
    InvalidStateError,
    MailboxFull,
    NotFound,
    ProtocolError,
    UnhandledMessage,
)
from .._core._future import Future, pending, set_cancelled, set_exception, set_result
from .._core._loop import LoopHooks
from .._core._messages import Envelope, Kind, new_id
from .._core._specs import ChildSpec, Supervisor
from .._protocol import Protocol
from .._services._redact import redact_unparsed_url
from ..telemetry import inject
from ..telemetry._instrument import tracer_for, tracer_of
from ._exceptions import ClusterUnavailable, NodeLost
from ._spec import Cluster
from ._wire import CANCEL, MSG_ID, REPLY_TO, decode_reply, encode_error, encode_reply, token

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from .._core._runtime import Runtime

__all__ = ["ClusterNode", "exported_children", "on_asyncio"]

logger = logging.getLogger("corral.cluster")

T = TypeVar("T")

#: JetStream's error code for a stream refusing a message past its per-subject limit.
_PER_SUBJECT_LIMIT: Final = 10077
#: Ids of calls their callers gave up on, kept to drop them if they arrive later.
_CANCELLED_KEPT: Final = 10_000
#: Longest wait for one fetch; a stop cancels it sooner.
_FETCH_WAIT: Final = 1.0
#: Publishing a call without a deadline gives up after this long (NATS down).
_PUBLISH_LIMIT: Final = 30.0
#: The first and the longest pause between publish attempts.
_RETRY_FIRST: Final = 0.05
_RETRY_MOST: Final = 1.0


def on_asyncio() -> bool:
    """Whether the running event loop is anyio's asyncio backend."""
    backend = anyio.lowlevel.current_token().backend_class
    return backend.__module__.rsplit(".", 1)[-1] == "_asyncio"


def exported_children(tree: Supervisor) -> Iterator[ChildSpec]:
    """Every actor child of *tree* (nested supervisors included) declared ``export=True``."""
    for spec in tree.children:
        if isinstance(spec, Supervisor):
            yield from exported_children(spec)
        elif spec.export:
            yield spec


def _servers_text(servers: tuple[str, ...]) -> str:
    return ", ".join(redact_unparsed_url(url) for url in servers)


@attrs.define(eq=False)
class _Running:
    """A call this node took from the stream and has not acknowledged yet."""

    msg: Msg
    reply_to: str | None
    #: The call's wall-clock deadline (``time.time()``), or ``None``.
    deadline: float | None = None
    future: Future[Any] | None = None


@attrs.define(eq=False)
class _Waiting:
    """A call this node sent and waits for an answer to."""

    future: Future[Any]
    seq: int | None = None
    #: When it was published (loop clock).
    sent_at: float = 0.0


@attrs.define(eq=False)
class _Served:
    """One exported actor this node serves: its consumer and free worker slots."""

    name: str
    max_concurrency: int
    #: Whether its answers are kept (not for actors declared idempotent).
    keep_records: bool = True
    slot: anyio.Event = attrs.Factory(anyio.Event)
    taken: int = 0


class ClusterNode:
    """A runtime's membership of a cluster (made by the runtime when it has one)."""

    def __init__(self, spec: Cluster, runtime: Runtime) -> None:
        self.spec = spec
        self._runtime = runtime
        self.protocol = Protocol(spec.types)
        #: The classes the protocol knows (its names() copies the registry: not per call).
        self._registered: set[type] = set(self.protocol.names().values())
        self._cancel_subject = f"corral.{spec.name}.{CANCEL}"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._results: KeyValue | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._inbox = ""
        self._max_payload = 0
        self._ttl = False
        # Calls this node sent and waits for, by id and by stream sequence; their deadlines.
        self._pending: dict[uuid.UUID, _Waiting] = {}
        self._seqs: dict[int, uuid.UUID] = {}
        self._deadlines: list[tuple[float, int, uuid.UUID]] = []
        self._order = itertools.count()
        self._deadline_changed = anyio.Event()
        # Calls this node serves: id -> record; and those their callers gave up.
        self._running: dict[uuid.UUID, _Running] = {}
        self._cancelled: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._served: dict[str, _Served] = {}
        self._fetching: list[anyio.CancelScope] = []
        self._fetchers = 0
        self._fetchers_done = anyio.Event()
        self._replying = 0
        self._replies_done = anyio.Event()
        self._closing = False
        self._now: Callable[[], float] = anyio.current_time

    # --- joining and leaving -------------------------------------------------------

    async def open(self, tg: anyio.abc.TaskGroup) -> None:
        """Connect, make sure the stream exists, and listen for replies and cancellations.

        Raises:
            ClusterUnavailable: No server answered within ``connect_timeout``.
        """
        import nats
        from nats.js import api

        spec = self.spec
        self._tg = tg
        # The loop's clock, looked up once (anyio.current_time() finds the
        # backend on every call, which costs more than a call's arithmetic).
        self._now = LoopHooks().clock
        with anyio.move_on_after(spec.connect_timeout):
            try:
                self._nc = await nats.connect(
                    servers=list(spec.servers),
                    connect_timeout=spec.connect_timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    name=f"corral {spec.name}",
                    error_cb=self._on_error,
                    reconnected_cb=self._on_reconnected,
                )
            except Exception as exc:
                raise ClusterUnavailable(
                    f"cannot connect to NATS at {_servers_text(spec.servers)}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        if self._nc is None:
            raise ClusterUnavailable(
                f"NATS at {_servers_text(spec.servers)} did not answer within "
                f"{spec.connect_timeout} s"
            )
        nc = self._nc
        self._js = js = nc.jetstream(timeout=spec.connect_timeout)
        self._max_payload = min(nc.max_payload, spec.max_payload or nc.max_payload)
        version = nc.connected_server_version
        self._ttl = (version.major, version.minor) >= (2, 11)
        replicas = spec.replicas
        if replicas is None:
            replicas = 3 if len(nc.servers) >= 3 else 1
        config = api.StreamConfig(
            name=spec.stream,
            subjects=[f"corral.{spec.name}.call.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=max(120.0, 4 * _PUBLISH_LIMIT),
            max_msgs_per_subject=spec.mailbox,
            discard=api.DiscardPolicy.NEW,
            discard_new_per_subject=True,
            allow_msg_ttl=True if self._ttl else None,
        )
        try:
            with anyio.fail_after(spec.connect_timeout):
                await self._ensure_stream(js, config)
                self._results = await self._ensure_results(js, replicas)
        except TimeoutError:
            raise ClusterUnavailable(
                f"JetStream at {_servers_text(spec.servers)} did not answer within "
                f"{spec.connect_timeout} s (is JetStream enabled, and has the cluster a leader?)"
            ) from None
        self._inbox = nc.new_inbox()
        await nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        await nc.subscribe(self._cancel_subject, cb=self._on_cancel)
        await nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{spec.stream}.*", cb=self._on_lost
        )
        tg.start_soon(self._expire_loop, name="corral cluster deadlines")
        tg.start_soon(self._keepalive_loop, name="corral cluster in-progress acks")
        tg.start_soon(self._recheck_loop, name="corral cluster answers lost on the way")

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

    async def _ensure_results(self, js: JetStreamContext, replicas: int) -> KeyValue:
        """The bucket of answers, kept until a call's last possible redelivery."""
        from nats.js import api
        from nats.js.errors import BadRequestError

        spec = self.spec
        config = api.KeyValueConfig(
            bucket=f"{spec.stream}_results",
            history=1,
            ttl=max(600.0, 4 * spec.ack_wait * spec.attempts),
            storage=api.StorageType.FILE,
            replicas=replicas,
        )
        try:
            return await js.create_key_value(config)
        except BadRequestError:
            return await js.key_value(config.bucket)  # made by another node, its way

    async def serve(self, spec: ChildSpec) -> None:
        """Serve the exported actor of *spec* to the cluster from this node."""
        from nats.js import api

        assert self._js is not None and self._tg is not None
        ref = self._runtime.ref(spec.name)
        for cls in message_types(ref.actor_class):
            if attrs.has(cls) and cls not in self._registered:
                self._register(cls)
        durable = token(spec.name)
        config = api.ConsumerConfig(
            durable_name=durable,
            filter_subject=self.spec.subject(spec.name),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.spec.ack_wait,
            max_deliver=self.spec.attempts,
            max_ack_pending=-1,
        )
        await self._js.add_consumer(self.spec.stream, config)
        served = self._served[spec.name] = _Served(
            spec.name, spec.max_concurrency, keep_records=not ref.actor_class.idempotent
        )
        self._tg.start_soon(self._fetch_loop, served, name=f"corral cluster fetch {spec.name}")

    def _register(self, cls: type) -> None:
        self.protocol.register(cls)
        self._registered.add(cls)

    def stop_fetching(self) -> None:
        """Take no more calls from the cluster (a graceful stop begins).

        A fetch under way is let finish (at most a second): calls the servers
        sent it are handed back at once rather than left to ``ack_wait``.
        """
        self._closing = True
        for served in self._served.values():
            served.slot.set()

    async def close(self) -> None:
        """Answer what still runs, hand back what never will, then leave."""
        self.stop_fetching()
        with anyio.move_on_after(_FETCH_WAIT + 1.0, shield=True):
            while self._fetchers:
                self._fetchers_done = anyio.Event()
                await self._fetchers_done.wait()
        for scope in self._fetching:
            scope.cancel()
        with anyio.move_on_after(self.spec.heartbeat, shield=True):
            # The answers of calls that ended as their actors stopped.
            while self._replying:
                self._replies_done = anyio.Event()
                await self._replies_done.wait()
        for record in list(self._running.values()):
            # Not answered by the time the actors stopped: another node takes it.
            await self._settle(record.msg, "nak")
        self._running.clear()
        for call_id in list(self._pending):
            waiting = self._forget(call_id)
            if waiting is not None:
                set_exception(
                    waiting.future, ActorStopped("the runtime that sent this call closed")
                )
        nc = self._nc
        if nc is not None and not nc.is_closed:
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

    def _leaving(self) -> bool:
        # A method, not the field: the flag changes while a fetch awaits.
        return self._closing

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS connection: %s: %s", type(exc).__name__, exc)

    async def _on_reconnected(self) -> None:
        tg = self._tg
        if tg is not None and not self._closing:
            tg.start_soon(self._recover, name="corral cluster answers lost in a reconnect")

    async def _recheck_loop(self) -> None:
        """Every ``ack_wait``, look for the kept answers of calls waiting longer than that.

        An answer can be lost on core NATS at other moments than a reconnect
        of this node's own connection (the serving node's, a route between
        servers); a call answered long ago has its answer in its record.
        """
        while True:
            await anyio.sleep(self.spec.ack_wait)
            await self._recover(older_than=self._now() - self.spec.ack_wait)

    async def _recover(self, older_than: float = math.inf) -> None:
        """Read the kept answers of the calls still waiting, after a reconnect.

        Answers travel over core NATS, which drops what is sent to a
        connection while it reconnects (a server of the cluster died). A
        call answered in that window has its answer in its result record
        (written before the answer was sent): read it from there. Calls to
        idempotent actors keep no record; theirs wait for their deadline.
        """
        for call_id, waiting in list(self._pending.items()):
            if waiting.seq is None or waiting.future.done() or waiting.sent_at > older_than:
                continue
            data = await self._read_record(call_id, None)
            if data is None or self._pending.get(call_id) is not waiting:
                continue
            self._resolve_from(data)

    # --- serving ---------------------------------------------------------------------

    async def _fetch_loop(self, served: _Served) -> None:
        from nats.errors import TimeoutError as FetchTimeout

        assert self._js is not None
        scope = anyio.CancelScope()
        self._fetching.append(scope)
        if self._closing:
            return
        self._fetchers += 1
        try:
            with scope:
                sub = await self._js.pull_subscribe_bind(
                    durable=token(served.name), stream=self.spec.stream
                )
                while not self._closing:
                    free = served.max_concurrency - served.taken
                    if free <= 0:
                        served.slot = anyio.Event()
                        await served.slot.wait()
                        continue
                    try:
                        msgs = await sub.fetch(batch=free, timeout=_FETCH_WAIT)
                    except FetchTimeout:
                        continue
                    except Exception as exc:  # a connection lost mid-fetch: try again soon
                        if self._leaving():
                            break  # the connection closes under the last fetch
                        logger.warning(
                            "fetching calls for %r failed: %s: %s",
                            served.name,
                            type(exc).__name__,
                            exc,
                        )
                        await anyio.sleep(_RETRY_MOST)
                        continue
                    for msg in msgs:
                        if self._leaving():
                            await self._settle(msg, "nak")  # leaving: another node takes it
                        else:
                            await self._take(served, msg)
        finally:
            self._fetchers -= 1
            self._fetchers_done.set()

    async def _take(self, served: _Served, msg: Msg) -> None:
        headers = msg.headers or {}
        reply_to = headers.get(REPLY_TO)
        try:
            envelope = self.protocol.loads(msg.data)
        except ProtocolError as exc:
            await self._refuse(served, msg, reply_to, exc)
            return
        if envelope.id in self._cancelled:
            await self._settle(msg, "term")
            return
        if envelope.deadline is not None and envelope.deadline <= time.time():
            # Its caller has given up already: never started.
            await self._settle(msg, "term")
            return
        running = self._running.get(envelope.id)
        if running is not None:
            # Delivered again while it runs here (the servers lost an in-progress
            # ack, say in an election): keep running it; answer for this delivery.
            running.msg = msg
            return
        attempt = msg.metadata.num_delivered
        if (
            attempt > 1
            and served.keep_records
            and await self._answered(envelope.id, reply_to, envelope.deadline)
        ):
            await self._settle(msg, "ack")  # it ran to its end on a node that died
            return
        if attempt > envelope.attempt:
            envelope = attrs.evolve(envelope, attempt=attempt)
        if envelope.target != served.name:
            envelope = attrs.evolve(envelope, target=served.name)
        record = self._running[envelope.id] = _Running(msg, reply_to, envelope.deadline)
        served.taken += 1
        try:
            fut = await self._runtime.deliver(envelope, track=True)
        except (UnhandledMessage, ProtocolError) as exc:
            self._release(served, envelope.id)
            await self._answer(reply_to, envelope.id, exc, ok=False)
            await self._settle(msg, "term")
            return
        except (ActorStopped, NotFound):
            # Not served here any more: another node takes it now.
            self._release(served, envelope.id)
            await self._settle(msg, "nak")
            return
        assert fut is not None
        record.future = fut
        call_id = envelope.id
        fut.add_done_callback(lambda f: self._finished(served, call_id, f))

    async def _refuse(
        self, served: _Served, msg: Msg, reply_to: str | None, exc: ProtocolError
    ) -> None:
        """Answer a call this node cannot read, if it names a caller; drop it either way."""
        try:
            data = json.loads(msg.data)
            call_id = uuid.UUID(data["id"])
            type_name = data["type"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            logger.warning("dropped a message on %s that is not a call: %s", msg.subject, exc)
            await self._settle(msg, "term")
            return
        error: Exception = exc
        if isinstance(type_name, str) and type_name not in self.protocol.names():
            error = UnhandledMessage(
                f"actor {served.name!r} does not handle {type_name} (no node serving it "
                "registers that message type)"
            )
        logger.warning("refused a call on %s: %s", msg.subject, error)
        await self._answer(reply_to, call_id, error, ok=False)
        await self._settle(msg, "term")

    def _finished(self, served: _Served, call_id: uuid.UUID, fut: Future[Any]) -> None:
        record = self._running.get(call_id)
        if record is None:
            return
        tg = self._tg
        assert tg is not None
        self._replying += 1
        tg.start_soon(self._reply, served, call_id, record, fut)

    async def _reply(
        self, served: _Served, call_id: uuid.UUID, record: _Running, fut: Future[Any]
    ) -> None:
        try:
            stopped_here = self._closing and isinstance(fut.exception(), ActorStopped)
            if stopped_here or (fut.cancelled() and call_id not in self._cancelled):
                # Cut short by this node's stop, not by its caller: another node runs it.
                await self._settle(record.msg, "nak")
                return
            if not fut.cancelled():
                exc = fut.exception()
                data = (
                    encode_reply(self.protocol, call_id, fut.result())
                    if exc is None
                    else encode_error(call_id, exc)
                )
                if served.keep_records:
                    await self._keep(call_id, data, record.deadline)
                await self._send(record.reply_to, call_id, data)
            await self._settle(record.msg, "ack")
        finally:
            self._release(served, call_id)
            self._replying -= 1
            self._replies_done.set()

    def _release(self, served: _Served, call_id: uuid.UUID) -> None:
        if self._running.pop(call_id, None) is not None:
            served.taken -= 1
            served.slot.set()

    async def _answer(
        self, reply_to: str | None, call_id: uuid.UUID, value: Any, *, ok: bool
    ) -> None:
        data = encode_reply(self.protocol, call_id, value) if ok else encode_error(call_id, value)
        await self._send(reply_to, call_id, data)

    async def _send(self, reply_to: str | None, call_id: uuid.UUID, data: bytes) -> None:
        if reply_to is None or self._nc is None:
            return
        try:
            await self._nc.publish(reply_to, data)
        except Exception as exc:
            logger.warning("could not answer call %s: %s", call_id, exc)

    async def _keep(self, call_id: uuid.UUID, data: bytes, deadline: float | None) -> None:
        """Write the call's answer down before it is acknowledged, retrying until its deadline.

        A node that dies between this and the acknowledgement leaves the
        answer here: the node the servers give the call to next answers
        from it instead of running the call again.
        """
        results = self._results
        assert results is not None
        until = time.time() + self.spec.ack_wait if deadline is None else deadline
        try:
            await _retrying(lambda: results.put(call_id.hex, data), until)
        except Exception as exc:
            logger.warning("could not keep the answer of call %s: %s", call_id, exc)

    async def _answered(
        self, call_id: uuid.UUID, reply_to: str | None, deadline: float | None
    ) -> bool:
        """Answer a redelivered call from its result record, if it has one."""
        data = await self._read_record(call_id, deadline)
        if data is None:
            return False
        await self._send(reply_to, call_id, data)
        return True

    async def _read_record(self, call_id: uuid.UUID, deadline: float | None) -> bytes | None:
        """The kept answer of *call_id*, or ``None`` without one.

        A read that fails (the bucket's servers electing a leader) is tried
        again until *deadline* (at most ``ack_wait``): running a call again,
        or losing its answer, because the record could not be read is what
        the record is there to prevent.
        """
        from nats.js.errors import KeyNotFoundError

        results = self._results
        assert results is not None
        until = min(time.time() + self.spec.ack_wait, deadline or math.inf)
        try:
            entry = await _retrying(lambda: results.get(call_id.hex), until, KeyNotFoundError)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            logger.warning("could not read the answer of call %s: %s", call_id, exc)
            return None
        return entry.value or None

    async def _settle(self, msg: Msg, how: str) -> None:
        try:
            if how == "ack":
                await msg.ack()
            elif how == "nak":
                await msg.nak()
            else:
                await msg.term()
        except Exception as exc:  # the servers redeliver it after ack_wait
            logger.warning("could not %s a call: %s", how, exc)

    async def _keepalive_loop(self) -> None:
        while True:
            await anyio.sleep(self.spec.heartbeat)
            for record in list(self._running.values()):
                try:
                    await record.msg.in_progress()
                except Exception as exc:
                    logger.warning("in-progress ack failed: %s", exc)

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            call_id = uuid.UUID(msg.data.decode())
        except (ValueError, UnicodeDecodeError):
            return
        self._cancelled[call_id] = None
        while len(self._cancelled) > _CANCELLED_KEPT:
            self._cancelled.popitem(last=False)
        record = self._running.get(call_id)
        if record is not None and record.future is not None:
            record.future.cancel()  # queued here: dropped; running: its handler is cancelled

    # --- calling ----------------------------------------------------------------------

    async def send(
        self, name: str, msg: object, kind: Kind, timeout: float | None, *, wait: bool
    ) -> Future[Any] | None:
        """Publish a call to actor *name*; return its future (``None`` for a one-way message).

        With *wait*, a full mailbox is waited out (until the deadline);
        without, it raises :class:`MailboxFull`.
        """
        if self._nc is None or self._closing:
            raise InvalidStateError("the runtime's cluster connection is closed")
        cls = type(msg)
        if cls not in self._registered:
            if not attrs.has(cls):
                raise ProtocolError(
                    f"a message sent to another process must be an attrs class "
                    f"(corral.message), got {cls.__qualname__}"
                )
            self._register(cls)
        created = time.time()
        envelope = Envelope(
            payload=msg,
            target=name,
            kind=kind,
            id=new_id(),
            deadline=None if timeout is None else created + timeout,
            created_at=created,
        )
        span = self._send_span(name, envelope)
        if span is None:
            data = self.protocol.dumps(inject(envelope))
        else:
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            data = self.protocol.dumps(envelope, trace_context=carrier)
        if len(data) > self._max_payload:
            if span is not None:
                span.end()
            raise ProtocolError(
                f"a {cls.__qualname__} call to {name!r} takes {len(data)} bytes; the cluster "
                f"takes at most {self._max_payload} (the NATS server's max_payload)"
            )
        headers = {MSG_ID: str(envelope.id)}
        fut: Future[Any] | None = None
        now = self._now()
        deadline = None if timeout is None else now + timeout
        if kind is not Kind.ONE_WAY:
            headers[REPLY_TO] = f"{self._inbox}.{envelope.id.hex}"
            fut = pending()
            waiting = self._pending[envelope.id] = _Waiting(fut)
            call_id = envelope.id
            fut.add_done_callback(lambda f: self._gave_up(call_id, f))
            if span is not None:
                fut.add_done_callback(lambda f: _end_span(span, f.exception()))
        try:
            seq = await self._publish(name, data, headers, deadline, timeout, wait)
        except BaseException as exc:
            if fut is not None:
                self._forget(envelope.id)
                set_cancelled(fut)
            elif span is not None:
                _end_span(span, exc)
            raise
        if fut is None and span is not None:
            span.end()  # a one-way message: sent
        if fut is not None and not fut.done():
            waiting.seq = seq
            waiting.sent_at = self._now()
            self._seqs[seq] = envelope.id
            if deadline is not None:
                heapq.heappush(self._deadlines, (deadline, next(self._order), envelope.id))
                self._deadline_changed.set()
        return fut

    async def _publish(
        self,
        name: str,
        data: bytes,
        headers: dict[str, str],
        deadline: float | None,
        timeout: float | None,
        wait: bool,
    ) -> int:
        from nats.js.errors import APIError

        assert self._js is not None
        subject = self.spec.subject(name)
        limit = self._now() + _PUBLISH_LIMIT if deadline is None else deadline
        pause = _RETRY_FIRST
        while True:
            left = limit - self._now()
            if left <= 0:
                if deadline is not None:
                    raise DeadlineExceeded(
                        f"call to {name!r} passed its deadline before the cluster took it"
                    )
                raise ClusterUnavailable(
                    f"the cluster at {_servers_text(self.spec.servers)} did not take a call "
                    f"to {name!r} within {_PUBLISH_LIMIT} s"
                )
            try:
                ack = await self._js.publish(
                    subject,
                    data,
                    timeout=min(left, 2.0),
                    headers=headers,
                    msg_ttl=max(1.0, timeout) if self._ttl and timeout is not None else None,
                )
                return int(ack.seq)
            except APIError as exc:
                if exc.err_code == _PER_SUBJECT_LIMIT:
                    if not wait:
                        raise MailboxFull(
                            f"mailbox of remote actor {name!r} is full "
                            f"({self.spec.mailbox} calls in the cluster)"
                        ) from None
                else:
                    logger.debug("publish to %s refused: %s", subject, exc)
            except Exception as exc:  # no leader yet, timeouts, reconnecting: the same id again
                logger.debug("publish to %s failed: %s", subject, exc)
            await anyio.sleep(min(pause, max(0.0, limit - self._now())))
            pause = min(pause * 2, _RETRY_MOST)

    def _send_span(self, name: str, envelope: Envelope) -> trace.Span | None:
        """The PRODUCER span of a remote call, if this runtime (or the calling handler) traces."""
        tracer = tracer_for(current_call()) or tracer_of(self._runtime.instruments)
        if tracer is None:
            return None
        return tracer.start_span(
            f"send {name}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.spec.subject(name),
                "messaging.message.id": str(envelope.id),
                "corral.actor": name,
                "corral.cluster": self.spec.name,
                "corral.message.type": type(envelope.payload).__qualname__,
            },
        )

    def _forget(self, call_id: uuid.UUID) -> _Waiting | None:
        waiting = self._pending.pop(call_id, None)
        if waiting is not None and waiting.seq is not None:
            self._seqs.pop(waiting.seq, None)
        return waiting

    def _gave_up(self, call_id: uuid.UUID, fut: Future[Any]) -> None:
        if not fut.cancelled() or self._forget(call_id) is None:
            return
        self._broadcast_cancel(call_id)

    def _broadcast_cancel(self, call_id: uuid.UUID) -> None:
        """Tell every node that the caller of *call_id* gave up (it cancelled, or timed out)."""
        tg, nc = self._tg, self._nc
        if tg is not None and nc is not None and not nc.is_closed:
            tg.start_soon(nc.publish, self._cancel_subject, str(call_id).encode())

    async def _on_reply(self, msg: Msg) -> None:
        self._resolve_from(msg.data)

    def _resolve_from(self, data: bytes) -> None:
        try:
            call_id, ok, value = decode_reply(self.protocol, data)
        except ProtocolError as exc:
            logger.warning("dropped a reply that is not one: %s", exc)
            return
        waiting = self._forget(call_id)
        if waiting is None:
            return  # answered already, or given up
        if ok:
            set_result(waiting.future, value)
        else:
            set_exception(waiting.future, value)

    async def _on_lost(self, msg: Msg) -> None:
        try:
            seq = int(json.loads(msg.data)["stream_seq"])
        except (ValueError, KeyError, TypeError):
            return
        call_id = self._seqs.get(seq)
        waiting = None if call_id is None else self._forget(call_id)
        if waiting is not None:
            set_exception(
                waiting.future,
                NodeLost(
                    f"the call was delivered {self.spec.attempts} times and no node answered "
                    "(the nodes serving it stopped or died)"
                ),
            )
        assert self._js is not None
        try:
            await self._js.delete_msg(self.spec.stream, seq)
        except Exception:
            pass  # the last delivery's node may still acknowledge it

    async def _expire_loop(self) -> None:
        heap = self._deadlines
        while True:
            while heap and heap[0][2] not in self._pending:
                heapq.heappop(heap)
            if not heap:
                self._deadline_changed = anyio.Event()
                await self._deadline_changed.wait()
                continue
            when = heap[0][0]
            if self._now() < when:
                self._deadline_changed = anyio.Event()
                with anyio.move_on_after(when - self._now()):
                    await self._deadline_changed.wait()
                continue
            _, _, call_id = heapq.heappop(heap)
            waiting = self._forget(call_id)
            if waiting is not None:
                set_exception(
                    waiting.future, DeadlineExceeded("the remote call passed its deadline")
                )
                self._broadcast_cancel(call_id)


async def _retrying(
    attempt: Callable[[], Awaitable[T]],
    until: float,
    final: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """``await attempt()``, again with backoff while it fails, until wall-clock *until*.

    An exception of a *final* type is an answer, not a failure: it is
    raised at once. The last failure is raised when time is up.
    """
    pause = _RETRY_FIRST
    while True:
        try:
            return await attempt()
        except final:
            raise
        except Exception:
            if time.time() + pause > until:
                raise
        await anyio.sleep(pause)
        pause = min(pause * 2, _RETRY_MOST)


def _end_span(span: trace.Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()
