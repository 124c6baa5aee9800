"""Calling actors served elsewhere: publishing calls and resolving their futures.

A call is published to its actor's subject in the cluster's stream, with
its id as JetStream's duplicate-detection key (so a publish retried after
a lost PubAck is stored once) and the caller's inbox in a header. Its
future resolves with the answer that arrives there, with
:class:`DeadlineExceeded` at its deadline whatever the remote side does,
with :class:`NodeLost` when the servers gave up redelivering it, or from
the call's result record when the answer was lost on the way.

An actor exported ``durable=False`` (its serving nodes announce so in the
bucket, read here once a heartbeat per actor) is called over core NATS
instead: the call goes to its direct subject with this node's inbox as the
reply subject; no node serving it means :class:`ActorNotFound` at once
(the servers' no-responders status), and a call its node stopped holding
(no still-alive message for ``ack_wait``) fails with :class:`NodeLost`.

A streamed call (:meth:`RemoteRef.stream`) travels like a request; its
chunks arrive at the caller's inbox before its final answer (the number of
chunks), each numbered with its delivery and its index. The caller tells
the serving node how many it has read, so that node sends at most
:data:`STREAM_WINDOW` ahead. A chunk missing from the sequence fails the
call; so do chunks of a later delivery once some of an earlier one were
read (its node died mid-stream: a stream is not begun again under a reader).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
from opentelemetry import propagate, trace

from .._core._calls import current_call
from .._core._exceptions import (
    ActorNotFound,
    ActorStopped,
    DeadlineExceeded,
    MailboxFull,
    ProtocolError,
)
from .._core._future import Future, pending, set_cancelled, set_exception, set_result
from .._core._messages import Envelope, Kind, new_id
from ..telemetry import inject
from ..telemetry._instrument import tracer_for, tracer_of
from ._exceptions import ClusterUnavailable, NodeLost
from ._records import retrying
from ._wire import (
    ALIVE,
    CHUNK,
    CREDIT,
    MSG_ID,
    NO_WAIT,
    REPLY_TO,
    STREAM,
    STREAM_WINDOW,
    decode_reply,
    token,
)

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream
    from nats.aio.msg import Msg

    from ._node import ClusterNode

__all__ = ["Calling", "Chunks"]

logger = logging.getLogger("corral.cluster")

#: JetStream's error code for a stream refusing a message past its per-subject limit.
_PER_SUBJECT_LIMIT: Final = 10077
#: Publishing a call without a deadline gives up after this long (NATS down).
PUBLISH_LIMIT: Final = 30.0
#: The header value with which the servers say that no one subscribes (no responders).
_NO_RESPONDERS: Final = "503"
#: JetStream's per-message TTL header (servers 2.11 and newer), in seconds.
_MSG_TTL: Final = "Nats-TTL"
#: Inbox tails of the stream's acknowledgements of publishes (``p<n>``; call ids are hex).
_ACK: Final = "p"
#: How often publishes waiting for their acknowledgement are checked for time up (s).
_ACK_TICK: Final = 0.1


@attrs.define(eq=False)
class Chunks:
    """The caller's end of a streamed remote call: its chunks in order, and how many were read."""

    #: Where arriving chunks go (its reader holds the receiving end; room for a window).
    send: MemoryObjectSendStream[Any]
    #: The call's id, once sent.
    call_id: uuid.UUID | None = None
    #: The delivery whose chunks arrived (0 until the first one).
    attempt: int = 0
    received: int = 0
    read: int = 0
    #: The read count last told to the serving node, and where it takes them.
    credited: int = 0
    credit_to: str = ""


@attrs.define(eq=False)
class _Waiting:
    """A call this node sent and waits for an answer to."""

    future: Future[Any]
    name: str
    seq: int | None = None
    #: When it was published (loop clock).
    sent_at: float = 0.0
    #: Sent over core NATS (``durable=False``): when its node last said it holds it.
    direct: bool = False
    seen: float = 0.0
    #: A streamed call's chunks (``None`` for a plain request).
    chunks: Chunks | None = None
    #: Found gone from the stream, unanswered, at the last look (see Calling.recover).
    gone: bool = False


class _Full(Exception):
    """The actor's mailbox in the stream is full (a publish to retry, or to refuse)."""


class _Refused(Exception):
    """The stream did not take a call (no leader yet, no stream): a publish to retry."""


@attrs.define(eq=False, slots=True)
class _Acked:
    """A publish waiting for the stream's acknowledgement, until *until* (loop clock)."""

    until: float
    #: The event loop's future its publisher awaits (an Event costs more, per call).
    done: Any
    data: bytes = b""
    no_stream: bool = False
    timed_out: bool = False

    def wake(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Calling:
    """The calls one node sent to actors served in the cluster, until each is answered."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        # Calls this node sent and waits for, by id and by stream sequence; their deadlines.
        self._pending: dict[uuid.UUID, _Waiting] = {}
        self._seqs: dict[int, uuid.UUID] = {}
        self._deadlines: list[tuple[float, int, uuid.UUID]] = []
        self._order = itertools.count()
        self._deadline_changed = anyio.Event()
        # How each actor called is delivered (durable?, when read), and lookups under way.
        self._modes: dict[str, tuple[bool, float]] = {}
        self._lookups: dict[str, anyio.Event] = {}
        self._refreshing: set[str] = set()
        self._direct = 0
        self._streams = 0
        # Publishes waiting for the stream's acknowledgement, by inbox tail.
        self._acks: dict[str, _Acked] = {}
        self._ack_ids = itertools.count()
        self._acks_waiting = anyio.Event()
        self._closed = False

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
        """Publish a call to actor *name*; return its future (``None`` for a one-way message).

        With *wait*, a full mailbox is waited out (until the deadline);
        without, it raises :class:`MailboxFull`. With *chunks*, the call is
        a streamed request whose chunks go there (closed when it resolves).
        """
        node = self._node
        cls = type(msg)
        if cls not in node.registered:
            if not attrs.has(cls):
                raise ProtocolError(
                    f"a message sent to another process must be an attrs class "
                    f"(corral.message), got {cls.__qualname__}"
                )
            node.register(cls)
        durable = await self._durable(name, timeout)
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
            data = node.protocol.dumps(inject(envelope))
        else:
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            data = node.protocol.dumps(envelope, trace_context=carrier)
        if len(data) > node.max_payload:
            if span is not None:
                span.end()
            raise ProtocolError(
                f"a {cls.__qualname__} call to {name!r} takes {len(data)} bytes; the cluster "
                f"takes at most {node.max_payload} (the NATS server's max_payload)"
            )
        now = node.now()
        deadline = None if timeout is None else now + timeout
        if not durable:
            return await self._send_direct(
                name, envelope.id, data, kind, deadline, wait, span, chunks
            )
        headers = {MSG_ID: str(envelope.id)}
        waiting = None
        if kind is not Kind.ONE_WAY:
            headers[REPLY_TO] = f"{node.inbox}.{envelope.id.hex}"
            if chunks is not None:
                headers[STREAM] = "1"
            waiting = self._wait(
                envelope.id, _Waiting(pending(node.new_event), name, chunks=chunks), span
            )
        fut = None if waiting is None else waiting.future
        try:
            seq = await self._publish(name, data, headers, deadline, timeout, wait)
        except BaseException as exc:
            self._unsent(envelope.id, fut, span, exc)
            raise
        if fut is None and span is not None:
            span.end()  # a one-way message: sent
        if waiting is not None and fut is not None and not fut.done():
            waiting.seq = seq
            waiting.sent_at = node.now()
            self._seqs[seq] = envelope.id
            if deadline is not None:
                self._expire_at(deadline, envelope.id)
        return fut

    def _wait(self, call_id: uuid.UUID, waiting: _Waiting, span: trace.Span | None) -> _Waiting:
        """Keep *waiting* until its answer, and end *span* with it."""
        self._pending[call_id] = waiting
        if waiting.direct:
            self._direct += 1
        fut = waiting.future
        chunks = waiting.chunks
        if chunks is not None:
            chunks.call_id = call_id
            self._streams += 1
            fut.add_done_callback(lambda f: chunks.send.close())  # the reader ends with it
        fut.add_done_callback(lambda f: self._gave_up(call_id, f))
        if span is not None:
            fut.add_done_callback(lambda f: _end_span(span, f.exception()))
        return waiting

    def _unsent(
        self,
        call_id: uuid.UUID,
        fut: Future[Any] | None,
        span: trace.Span | None,
        exc: BaseException,
    ) -> None:
        """A call that could not be sent: nothing waits for it any more."""
        if fut is not None:
            self._forget(call_id)
            set_cancelled(fut)
        elif span is not None:
            _end_span(span, exc)

    def _expire_at(self, deadline: float, call_id: uuid.UUID) -> None:
        heapq.heappush(self._deadlines, (deadline, next(self._order), call_id))
        self._deadline_changed.set()

    async def _send_direct(
        self,
        name: str,
        call_id: uuid.UUID,
        data: bytes,
        kind: Kind,
        deadline: float | None,
        wait: bool,
        span: trace.Span | None,
        chunks: Chunks | None,
    ) -> Future[Any] | None:
        """Send a call over core NATS to the nodes serving *name* ``durable=False``."""
        node = self._node
        fut: Future[Any] | None = None
        reply = ""
        if kind is not Kind.ONE_WAY:
            reply = f"{node.inbox}.{call_id.hex}"
            now = node.now()
            waiting = _Waiting(
                pending(node.new_event), name, sent_at=now, direct=True, seen=now, chunks=chunks
            )
            fut = self._wait(call_id, waiting, span).future
        headers = {} if wait else {NO_WAIT: "1"}
        if chunks is not None:
            headers[STREAM] = "1"
        try:
            await node.nc.publish(
                node.spec.direct_subject(name), data, reply=reply, headers=headers or None
            )
        except BaseException as exc:
            self._unsent(call_id, fut, span, exc)
            if isinstance(exc, Exception):
                raise ClusterUnavailable(
                    f"could not send a call to {name!r} over NATS at {node.servers_text}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            raise
        if fut is None:
            if span is not None:
                span.end()  # a one-way message: sent
        elif deadline is not None:
            self._expire_at(deadline, call_id)
        return fut

    async def _durable(self, name: str, timeout: float | None) -> bool:
        """Whether calls to *name* go through the stream (as its serving nodes announced).

        Read once, then again in the background at most once a heartbeat;
        the first call to an actor waits for the first read (at most
        ``connect_timeout``, or *timeout*). An actor no node announced is
        durable: its calls wait in the stream for a node to serve it.
        """
        node = self._node
        known = self._modes.get(name)
        if known is not None:
            if node.now() - known[1] >= node.spec.heartbeat and name not in self._refreshing:
                self._refreshing.add(name)
                node.tg.start_soon(self._refresh, name, node.spec.connect_timeout)
            return known[0]
        lookup = self._lookups.get(name)
        if lookup is None:
            lookup = self._lookups[name] = anyio.Event()
            limit = min(node.spec.connect_timeout, math.inf if timeout is None else timeout)
            try:
                await self._refresh(name, limit)
            finally:
                lookup.set()
                del self._lookups[name]
        else:
            await lookup.wait()
        known = self._modes.get(name)
        return True if known is None else known[0]

    async def _refresh(self, name: str, limit: float) -> None:
        node = self._node
        previous = self._modes.get(name)
        try:
            durable = await node.records.durable(token(name), time.time() + limit)
        except Exception as exc:
            logger.debug("could not read how %r is served: %s", name, exc)
            durable = None if previous is None else previous[0]
        finally:
            self._refreshing.discard(name)
        self._modes[name] = (True if durable is None else durable, node.now())

    async def _stored(
        self, subject: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> dict[str, Any]:
        """Publish to the stream and wait for its acknowledgement (the PubAck, as JSON).

        JetStream's publish, on this node's own inbox: a request of
        nats-py's own costs a random token, a future and a timer task per
        call, a fair part of a remote call's time.

        Raises:
            TimeoutError: No acknowledgement within *timeout*.
            _Refused: No stream takes the subject (the servers' no-responders).
        """
        node = self._node
        token = f"{_ACK}{next(self._ack_ids)}"
        waiter = self._acks[token] = _Acked(node.now() + timeout, node.new_waiter())
        if len(self._acks) == 1:
            self._acks_waiting.set()
        try:
            await node.nc.publish(subject, data, reply=f"{node.inbox}.{token}", headers=headers)
            # Not a cancel scope each (their timers cost more than the rest):
            # ack_timeout_loop wakes the publishes whose time is up.
            await waiter.done
        finally:
            del self._acks[token]
        if waiter.timed_out:
            raise TimeoutError(f"the stream did not acknowledge a call within {timeout:.3g} s")
        if waiter.no_stream:
            raise _Refused(f"no stream takes {subject!r} (no responders)")
        try:
            answer = json.loads(waiter.data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise _Refused(f"the stream's acknowledgement is not JSON: {waiter.data[:80]!r}")
        return answer

    async def ack_timeout_loop(self) -> None:
        """Wake the publishes the stream did not acknowledge in time (checked every 0.1 s)."""
        node = self._node
        while True:
            if not self._acks:
                self._acks_waiting = anyio.Event()
                await self._acks_waiting.wait()
            await anyio.sleep(_ACK_TICK)
            now = node.now()
            for waiter in list(self._acks.values()):
                if waiter.until <= now and not waiter.done.done():
                    waiter.timed_out = True
                    waiter.wake()

    async def _publish(
        self,
        name: str,
        data: bytes,
        headers: dict[str, str],
        deadline: float | None,
        timeout: float | None,
        wait: bool,
    ) -> int:
        """Publish until the stream takes it (the same id each time), or time is up."""
        node = self._node
        subject = node.spec.subject(name)
        limit = node.now() + PUBLISH_LIMIT if deadline is None else deadline
        if node.msg_ttl and timeout is not None:
            # Dropped by the servers too once its caller gave up (2.11 and newer).
            headers[_MSG_TTL] = str(int(max(1.0, timeout)))

        async def attempt() -> int:
            if self._closed:
                raise ActorStopped(f"the runtime closed before the cluster took a call to {name!r}")
            left = max(0.001, limit - node.now())
            answer = await self._stored(subject, data, headers, min(left, 2.0))
            error = answer.get("error")
            if error is None:
                return int(answer["seq"])
            if not isinstance(error, dict) or error.get("err_code") != _PER_SUBJECT_LIMIT:
                raise _Refused(f"the stream refused the call: {error}")
            if not wait:
                raise MailboxFull(
                    f"mailbox of remote actor {name!r} is full "
                    f"({node.spec.mailbox} calls in the cluster)"
                )
            raise _Full

        try:
            # No leader yet, timeouts, reconnecting, a full mailbox: the same id again.
            return await retrying(attempt, limit, (MailboxFull, ActorStopped), clock=node.now)
        except (MailboxFull, ActorStopped):
            raise
        except Exception as exc:
            logger.debug("publish to %s failed: %s", subject, exc)
            if deadline is not None:
                raise DeadlineExceeded(
                    f"call to {name!r} passed its deadline before the cluster took it"
                ) from None
            raise ClusterUnavailable(
                f"the cluster at {node.servers_text} did not take a call "
                f"to {name!r} within {PUBLISH_LIMIT} s"
            ) from None

    def _send_span(self, name: str, envelope: Envelope) -> trace.Span | None:
        """The PRODUCER span of a remote call, if this runtime (or the calling handler) traces."""
        node = self._node
        tracer = tracer_for(current_call()) or tracer_of(node.runtime.instruments)
        if tracer is None:
            return None
        return tracer.start_span(
            f"send {name}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.destination.name": node.spec.subject(name),
                "messaging.message.id": str(envelope.id),
                "corral.actor": name,
                "corral.cluster": node.spec.name,
                "corral.message.type": type(envelope.payload).__qualname__,
            },
        )

    def close(self) -> None:
        """Fail every call still waiting: this runtime is leaving."""
        self._closed = True
        for waiter in self._acks.values():  # publishes: no acknowledgement will come now
            waiter.timed_out = True
            waiter.wake()
        for call_id in list(self._pending):
            waiting = self._forget(call_id)
            if waiting is not None:
                set_exception(
                    waiting.future, ActorStopped("the runtime that sent this call closed")
                )

    def _forget(self, call_id: uuid.UUID) -> _Waiting | None:
        waiting = self._pending.pop(call_id, None)
        if waiting is not None:
            if waiting.seq is not None:
                self._seqs.pop(waiting.seq, None)
            if waiting.direct:
                self._direct -= 1
            if waiting.chunks is not None:
                self._streams -= 1
        return waiting

    def _gave_up(self, call_id: uuid.UUID, fut: Future[Any]) -> None:
        if not fut.cancelled() or self._forget(call_id) is None:
            return
        self._node.broadcast_cancel(call_id)

    async def on_reply(self, msg: Msg) -> None:
        """An answer arrived at this node's inbox (or a still-alive list, or no-responders)."""
        subject = msg.subject
        tail = subject[subject.rfind(".") + 1 :]
        if tail[:1] == _ACK:
            waiter = self._acks.get(tail)
            if waiter is not None:
                headers = msg.headers
                waiter.no_stream = bool(headers and headers.get("Status") == _NO_RESPONDERS)
                waiter.data = msg.data
                waiter.wake()
            return
        if tail == ALIVE:
            self._alive(msg.data)
            return
        if tail == CREDIT:
            self._node.serving.on_credit(msg.data)  # a caller read chunks this node streams
            return
        headers = msg.headers
        if headers:
            if headers.get("Status") == _NO_RESPONDERS:
                self._unserved(tail)
                return
            position = headers.get(CHUNK)
            if position is not None:
                self._chunk(position, msg.data, msg.reply)
                return
        self._resolve_from(msg.data)

    def _chunk(self, position: str, data: bytes, credit_to: str) -> None:
        """One chunk of a streamed call arrived: pass it to its reader, in order."""
        try:
            call_id, ok, value = decode_reply(self._node.protocol, data)
            attempt_text, _, index_text = position.partition(" ")
            attempt, index = int(attempt_text), int(index_text)
        except (ProtocolError, ValueError) as exc:
            logger.warning("dropped a chunk that is not one: %s", exc)
            return
        waiting = self._pending.get(call_id)
        chunks = None if waiting is None else waiting.chunks
        if waiting is None or chunks is None or attempt < chunks.attempt:
            return  # given up; or from a delivery that ended (its node died)
        if attempt > chunks.attempt:
            if chunks.received:
                self._fail(
                    call_id,
                    NodeLost(
                        f"the node streaming this call from {waiting.name!r} died after "
                        f"{chunks.received} chunks, and another node began it again "
                        f"(attempt {attempt}): a stream is not begun again once chunks arrived"
                    ),
                )
                return
            chunks.attempt = attempt
        if index != chunks.received:
            self._fail(
                call_id,
                ClusterUnavailable(
                    f"chunk {chunks.received} of a stream from {waiting.name!r} was lost on "
                    "the way (a NATS connection dropped it)"
                ),
            )
            return
        if not ok:
            self._fail(call_id, value)  # the chunk could not be sent or read
            return
        try:
            chunks.send.send_nowait(value)
        except anyio.WouldBlock:
            self._fail(
                call_id,
                ProtocolError(
                    f"the node streaming from {waiting.name!r} sent more than "
                    f"{STREAM_WINDOW} chunks ahead of their reader"
                ),
            )
            return
        chunks.received += 1
        chunks.credit_to = credit_to

    def credit(self, chunks: Chunks) -> None:
        """Tell the node streaming a call how many chunks were read, if half a window more."""
        call_id = chunks.call_id
        if (
            call_id is not None
            and chunks.credit_to
            and chunks.read - chunks.credited >= STREAM_WINDOW // 2
        ):
            chunks.credited = chunks.read
            self._node.publish_soon(chunks.credit_to, f"{call_id.hex} {chunks.read}".encode())

    async def _credit_all(self) -> None:
        """Tell each node streaming to this one how many chunks were read (it hears the reader)."""
        lines: dict[str, list[str]] = {}
        for call_id, waiting in list(self._pending.items()):
            chunks = waiting.chunks
            if chunks is not None and chunks.credit_to:
                chunks.credited = chunks.read
                lines.setdefault(chunks.credit_to, []).append(f"{call_id.hex} {chunks.read}")
        for subject, entries in lines.items():
            try:
                await self._node.nc.publish(subject, "\n".join(entries).encode())
            except Exception as exc:
                logger.warning("could not tell a node how much of its streams was read: %s", exc)

    def _fail(self, call_id: uuid.UUID, exc: BaseException) -> None:
        """Fail a waiting call here, and tell the node serving it to stop."""
        waiting = self._forget(call_id)
        if waiting is not None:
            set_exception(waiting.future, exc)
            self._node.broadcast_cancel(call_id)

    def _alive(self, data: bytes) -> None:
        now = self._node.now()
        for text in data.split(b","):
            try:
                waiting = self._pending.get(uuid.UUID(text.decode()))
            except (ValueError, UnicodeDecodeError):
                continue
            if waiting is not None:
                waiting.seen = now

    def _unserved(self, tail: str) -> None:
        try:
            call_id = uuid.UUID(tail)
        except ValueError:
            return
        waiting = self._forget(call_id)
        if waiting is not None:
            set_exception(
                waiting.future,
                ActorNotFound(
                    f"no node serves actor {waiting.name!r} now (it is exported durable=False: "
                    "its calls are not kept for a node to come)"
                ),
            )

    async def liveness_loop(self) -> None:
        """Every heartbeat, fail the core NATS calls no node said it held for ``ack_wait``.

        And tell the nodes streaming to this one how much was read, so that
        they hear the reader is still there.
        """
        node = self._node
        ack_wait = node.spec.ack_wait
        while True:
            await anyio.sleep(node.spec.heartbeat)
            if self._streams:
                await self._credit_all()
            if not self._direct:
                continue
            silent_since = node.now() - ack_wait
            for call_id, waiting in list(self._pending.items()):
                if not waiting.direct or waiting.seen > silent_since:
                    continue
                if self._forget(call_id) is None:
                    continue
                set_exception(
                    waiting.future,
                    NodeLost(
                        f"no node said it held this call to {waiting.name!r} for {ack_wait} s "
                        "(its node died or lost NATS; the actor is exported durable=False, so "
                        "no other node runs it)"
                    ),
                )
                node.broadcast_cancel(call_id)

    def _resolve_from(self, data: bytes) -> None:
        try:
            call_id, ok, value = decode_reply(self._node.protocol, data)
        except ProtocolError as exc:
            logger.warning("dropped a reply that is not one: %s", exc)
            return
        waiting = self._pending.get(call_id)
        if waiting is None:
            return  # answered already, or given up
        chunks = waiting.chunks
        if ok and chunks is not None and value != chunks.received:
            self._fail(
                call_id,
                ClusterUnavailable(
                    f"a stream from {waiting.name!r} ended after {value} chunks, of which "
                    f"{chunks.received} arrived (a NATS connection dropped the rest)"
                ),
            )
            return
        self._forget(call_id)
        if ok:
            set_result(waiting.future, value)
        else:
            set_exception(waiting.future, value)

    async def recheck_loop(self) -> None:
        """Every ``ack_wait``, look for the kept answers of calls waiting longer than that.

        An answer can be lost on core NATS at other moments than a reconnect
        of this node's own connection (the serving node's, a route between
        servers); a call answered long ago has its answer in its record.
        """
        ack_wait = self._node.spec.ack_wait
        while True:
            await anyio.sleep(ack_wait)
            await self.recover(older_than=self._node.now() - ack_wait)

    async def recover(self, older_than: float = math.inf) -> None:
        """Resolve waiting calls whose answers were lost on the way (all, after a reconnect).

        Answers travel over core NATS, which drops what is sent to a
        connection while it reconnects (a server of the cluster died). A
        call that left the stream (its node acknowledged it) was answered:
        its answer is in its result record (written before the
        acknowledgement), read from there. A call to an actor that keeps no
        records (``idempotent``) that left the stream without its answer
        reaching here fails with :class:`ClusterUnavailable` (after one
        more look, an answer may be on its way), rather than wait for a
        deadline it may not have.
        """
        for call_id, waiting in list(self._pending.items()):
            seq = waiting.seq
            if seq is None or waiting.future.done() or waiting.sent_at > older_than:
                continue
            if await self._in_stream(seq):
                waiting.gone = False
                continue  # queued, or running: its node holds it
            data = await self._node.records.read(call_id, None)
            if self._pending.get(call_id) is not waiting:
                continue  # answered meanwhile
            if data is not None:
                self._resolve_from(data)
            elif not waiting.gone:
                waiting.gone = True
            else:
                self._fail(
                    call_id,
                    ClusterUnavailable(
                        f"the call to {waiting.name!r} was answered, but its answer was lost on "
                        f"the way (a NATS connection dropped it), and {waiting.name!r} keeps no "
                        "answers (it is idempotent): send it again"
                    ),
                )

    async def _in_stream(self, seq: int) -> bool:
        """Whether the call stored at *seq* is still in the stream (unacknowledged)."""
        from nats.js.errors import NotFoundError

        node = self._node
        try:
            await node.js.get_msg(node.spec.stream, seq)
        except NotFoundError:
            return False
        except Exception as exc:  # cannot tell now: look again next time
            logger.debug("could not look up call %s in the stream: %s", seq, exc)
            return True
        return True

    async def on_lost(self, msg: Msg) -> None:
        """The servers gave up redelivering a call (its MaxDeliver advisory)."""
        node = self._node
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
                    f"the call was delivered {node.spec.attempts} times and no node answered "
                    "(the nodes serving it stopped or died)"
                ),
            )
        try:
            await node.js.delete_msg(node.spec.stream, seq)
        except Exception:
            pass  # the last delivery's node may still acknowledge it

    async def expire_loop(self) -> None:
        """Fail each call at its deadline, and tell the serving nodes to drop it."""
        heap = self._deadlines
        now = self._node.now
        while True:
            while heap and heap[0][2] not in self._pending:
                heapq.heappop(heap)
            if not heap:
                self._deadline_changed = anyio.Event()
                await self._deadline_changed.wait()
                continue
            when = heap[0][0]
            if now() < when:
                self._deadline_changed = anyio.Event()
                with anyio.move_on_after(when - now()):
                    await self._deadline_changed.wait()
                continue
            _, _, call_id = heapq.heappop(heap)
            waiting = self._forget(call_id)
            if waiting is not None:
                set_exception(
                    waiting.future, DeadlineExceeded("the remote call passed its deadline")
                )
                self._node.broadcast_cancel(call_id)


def _end_span(span: trace.Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()
