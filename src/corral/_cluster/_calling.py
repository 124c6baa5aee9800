"""Calling actors served elsewhere: publishing calls and resolving their futures.

A call is published to its actor's subject in the cluster's stream, with
its id as JetStream's duplicate-detection key (so a publish retried after
a lost PubAck is stored once) and the caller's inbox in a header. Its
future resolves with the answer that arrives there, with
:class:`DeadlineExceeded` at its deadline whatever the remote side does,
with :class:`NodeLost` when the servers gave up redelivering it, or from
the call's result record when the answer was lost on the way.
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
from .._core._exceptions import ActorStopped, DeadlineExceeded, MailboxFull, ProtocolError
from .._core._future import Future, pending, set_cancelled, set_exception, set_result
from .._core._messages import Envelope, Kind, new_id
from ..telemetry import inject
from ..telemetry._instrument import tracer_for, tracer_of
from ._exceptions import ClusterUnavailable, NodeLost
from ._records import retrying
from ._wire import MSG_ID, REPLY_TO, decode_reply

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._node import ClusterNode

__all__ = ["Calling"]

logger = logging.getLogger("corral.cluster")

#: JetStream's error code for a stream refusing a message past its per-subject limit.
_PER_SUBJECT_LIMIT: Final = 10077
#: Publishing a call without a deadline gives up after this long (NATS down).
PUBLISH_LIMIT: Final = 30.0


@attrs.define(eq=False)
class _Waiting:
    """A call this node sent and waits for an answer to."""

    future: Future[Any]
    seq: int | None = None
    #: When it was published (loop clock).
    sent_at: float = 0.0


class _Full(Exception):
    """The actor's mailbox in the stream is full (a publish to retry, or to refuse)."""


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

    async def send(
        self, name: str, msg: object, kind: Kind, timeout: float | None, *, wait: bool
    ) -> Future[Any] | None:
        """Publish a call to actor *name*; return its future (``None`` for a one-way message).

        With *wait*, a full mailbox is waited out (until the deadline);
        without, it raises :class:`MailboxFull`.
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
        headers = {MSG_ID: str(envelope.id)}
        fut: Future[Any] | None = None
        now = node.now()
        deadline = None if timeout is None else now + timeout
        if kind is not Kind.ONE_WAY:
            headers[REPLY_TO] = f"{node.inbox}.{envelope.id.hex}"
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
            waiting.sent_at = node.now()
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
        """Publish until the stream takes it (the same id each time), or time is up."""
        from nats.js.errors import APIError

        node = self._node
        subject = node.spec.subject(name)
        limit = node.now() + PUBLISH_LIMIT if deadline is None else deadline
        ttl = max(1.0, timeout) if node.msg_ttl and timeout is not None else None

        async def attempt() -> int:
            left = max(0.001, limit - node.now())
            try:
                ack = await node.js.publish(
                    subject, data, timeout=min(left, 2.0), headers=headers, msg_ttl=ttl
                )
            except APIError as exc:
                if exc.err_code != _PER_SUBJECT_LIMIT:
                    raise
                if not wait:
                    raise MailboxFull(
                        f"mailbox of remote actor {name!r} is full "
                        f"({node.spec.mailbox} calls in the cluster)"
                    ) from None
                raise _Full from None
            return int(ack.seq)

        try:
            # No leader yet, timeouts, reconnecting, a full mailbox: the same id again.
            return await retrying(attempt, limit, MailboxFull, clock=node.now)
        except MailboxFull:
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
        for call_id in list(self._pending):
            waiting = self._forget(call_id)
            if waiting is not None:
                set_exception(
                    waiting.future, ActorStopped("the runtime that sent this call closed")
                )

    def _forget(self, call_id: uuid.UUID) -> _Waiting | None:
        waiting = self._pending.pop(call_id, None)
        if waiting is not None and waiting.seq is not None:
            self._seqs.pop(waiting.seq, None)
        return waiting

    def _gave_up(self, call_id: uuid.UUID, fut: Future[Any]) -> None:
        if not fut.cancelled() or self._forget(call_id) is None:
            return
        self._node.broadcast_cancel(call_id)

    async def on_reply(self, msg: Msg) -> None:
        """An answer arrived at this node's inbox."""
        self._resolve_from(msg.data)

    def _resolve_from(self, data: bytes) -> None:
        try:
            call_id, ok, value = decode_reply(self._node.protocol, data)
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
        """Read the kept answers of the calls still waiting (all of them after a reconnect).

        Answers travel over core NATS, which drops what is sent to a
        connection while it reconnects (a server of the cluster died). A
        call answered in that window has its answer in its result record
        (written before the answer was sent): read it from there. Calls to
        idempotent actors keep no record; theirs wait for their deadline.
        """
        for call_id, waiting in list(self._pending.items()):
            if waiting.seq is None or waiting.future.done() or waiting.sent_at > older_than:
                continue
            data = await self._node.records.read(call_id, None)
            if data is None or self._pending.get(call_id) is not waiting:
                continue
            self._resolve_from(data)

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
