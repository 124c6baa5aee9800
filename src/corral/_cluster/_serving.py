"""Serving exported actors: taking their calls from the cluster and answering them.

One durable pull consumer per exported actor, shared by every node that
serves it. A node fetches only as many calls as the actor has free worker
slots, keeps each running call's delivery alive with in-progress acks,
writes the answer down (the result record), answers the caller's inbox
over core NATS (named in the call's ``Corral-Reply-To`` header) and then
acknowledges the call. A node that dies stops sending in-progress acks:
after ``ack_wait`` the servers deliver its calls to another node, as their
next attempt, and that node answers from the record if there is one.

An actor exported ``durable=False`` takes its calls over core NATS
instead: a queue subscription shared by the nodes serving it, each call
answered to the reply subject it came with, nothing acknowledged or
written down. Every heartbeat the node tells each caller which of its
calls it still holds, so a caller learns that a node died (its calls fail
with :class:`NodeLost`) instead of waiting for their deadlines.

A streamed call (either way) runs the actor's streaming handler; one task
per such call sends its chunks to the caller's inbox, numbered, at most
:data:`STREAM_WINDOW` ahead of what the caller said it read, and the final
answer (the number of chunks) after the last. A caller that says nothing
for ``ack_wait`` while the window is full is gone: its call is cancelled.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs

from .._core._actor import message_types
from .._core._exceptions import (
    ActorStopped,
    MailboxFull,
    NotFound,
    ProtocolError,
    UnhandledMessage,
)
from .._core._future import Future
from .._core._ref import STREAM_BUFFER
from ._records import ANNOUNCE_EVERY, retrying
from ._wire import (
    ALIVE,
    CHUNK,
    CREDIT,
    NO_WAIT,
    REPLY_TO,
    STREAM,
    STREAM_WINDOW,
    encode_error,
    encode_reply,
    token,
)

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from .._core._specs import ChildSpec
    from ._node import ClusterNode

__all__ = ["Serving"]

logger = logging.getLogger("corral.cluster")

#: Ids of calls their callers gave up on, kept to drop them if they arrive later.
_CANCELLED_KEPT: Final = 10_000
#: Longest wait for one fetch; a stop waits for it (and for what it brings, to hand back).
_FETCH_WAIT: Final = 1.0
#: The pause after a fetch failed (a connection lost mid-fetch).
_FETCH_RETRY: Final = 1.0
#: How long the servers' side of a fetch may outlive the client's (a round trip, with room).
_LINGER: Final = 0.05
#: Under the node's inbox, where a served actor's pull requests bring its calls.
_PULL: Final = "pull"
#: Call ids per still-alive message (33 bytes each).
_ALIVE_BATCH: Final = 1000


@attrs.define(eq=False)
class _Forward:
    """The serving end of a streamed call: its chunks on their way, and what its caller read."""

    attempt: int
    chunks: MemoryObjectReceiveStream[Any]
    #: How many chunks the caller said it read, and when it last said so (loop clock).
    read: int = 0
    heard: float = 0.0
    room: anyio.Event = attrs.Factory(anyio.Event)
    done: anyio.Event = attrs.Factory(anyio.Event)
    scope: anyio.CancelScope = attrs.Factory(anyio.CancelScope)


@attrs.define(eq=False)
class _Running:
    """A call this node took and has not answered yet (from the stream: not acknowledged)."""

    #: Its delivery from the stream; ``None`` for a core NATS (``durable=False``) call.
    msg: Msg | None
    reply_to: str | None
    #: The call's wall-clock deadline (``time.time()``), or ``None``.
    deadline: float | None = None
    future: Future[Any] | None = None
    #: A streamed call's chunks on their way to the caller.
    forward: _Forward | None = None


class _Pulls:
    """A served actor's open pull requests, oldest first: calls asked for and not come yet."""

    __slots__ = ("_open", "asked")

    def __init__(self) -> None:
        self._open: deque[list[float]] = deque()  # [calls not come yet, expiry]
        self.asked = 0

    def add(self, batch: int, expires_at: float) -> None:
        self._open.append([batch, expires_at])
        self.asked += batch

    def came(self) -> None:
        """One call came: it fills the oldest request (the servers fill them in order)."""
        if not self._open:
            return
        oldest = self._open[0]
        oldest[0] -= 1
        self.asked -= 1
        if oldest[0] <= 0:
            self._open.popleft()

    def end_oldest(self) -> None:
        if self._open:
            self.asked -= int(self._open.popleft()[0])

    def clear(self) -> None:
        self._open.clear()
        self.asked = 0

    def expire(self, now: float) -> None:
        """Forget the requests past their expiry by a margin (their end status was lost)."""
        while self._open and self._open[0][1] + _LINGER * 10 < now:
            self.end_oldest()


@attrs.define(eq=False, slots=True)
class _Answer:
    """An answer for the outbox: what to send where, then the delivery to settle."""

    reply_to: str | None
    call_id: uuid.UUID
    data: bytes | None
    #: A call from the stream: its delivery, acknowledged (or handed back) after.
    msg: Msg | None = None
    how: str = "ack"
    served: _Served | None = None


@attrs.define(eq=False)
class _Served:
    """One exported actor this node serves: its consumer and free worker slots."""

    name: str
    max_concurrency: int
    #: Whether its calls come through the stream (``durable=True`` on the export).
    durable: bool = True
    #: Whether its answers are kept (durable, and not declared idempotent).
    keep_records: bool = True
    slot: anyio.Event = attrs.Factory(anyio.Event)
    taken: int = 0
    #: No longer served (the child stopped for good); its fetch loop ends.
    stopped: bool = False
    fetch_done: anyio.Event = attrs.Factory(anyio.Event)
    #: Its queue subscription (``durable=False``).
    sub: Subscription | None = None


class Serving:
    """The exported actors of one node, and the calls it runs for the cluster."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self._fetch_wait = min(_FETCH_WAIT, node.spec.heartbeat)
        self._running: dict[uuid.UUID, _Running] = {}
        self._cancelled: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._served: dict[str, _Served] = {}
        # Answers sent in order by one task (not a task each): core NATS calls,
        # and stream calls with no answer to write down first.
        self._outbox: deque[_Answer] = deque()
        self._outbox_ready = anyio.Event()
        self._fetching: list[anyio.CancelScope] = []
        self._fetchers = 0
        self._fetchers_done = anyio.Event()
        self._replying = 0
        self._replies_done = anyio.Event()
        self._closing = False

    def exported(self) -> dict[str, bool]:
        """The actors this node serves to the cluster, each with whether it is durable."""
        return {name: served.durable for name, served in self._served.items()}

    async def serve(self, spec: ChildSpec) -> None:
        """Serve the exported actor of *spec* to the cluster from this node.

        Raises:
            ClusterConflict: Another live node serves an actor of that name
                with other message types.
        """
        node = self._node
        ref = node.runtime.ref(spec.name)
        await node.members.check_protocol(ref)
        for cls in message_types(ref.actor_class):
            if attrs.has(cls):
                node.register(cls)
        keep = spec.durable and not ref.actor_class.idempotent
        served = _Served(spec.name, spec.max_concurrency, durable=spec.durable, keep_records=keep)
        if spec.durable:
            await self._consume(served)
        else:
            served.sub = await node.nc.subscribe(
                node.spec.direct_subject(spec.name),
                queue=token(spec.name),
                cb=functools.partial(self._take_direct, served),
            )
            served.fetch_done.set()  # nothing fetched
        self._served[spec.name] = served
        until = time.time() + node.spec.connect_timeout
        await retrying(lambda: node.records.announce(token(spec.name), durable=spec.durable), until)
        await node.members.write_soon()

    async def _consume(self, served: _Served) -> None:
        """Make the actor's durable consumer (or find it) and start fetching from it."""
        from nats.js import api

        node = self._node
        config = api.ConsumerConfig(
            durable_name=token(served.name),
            filter_subject=node.spec.subject(served.name),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=node.spec.ack_wait,
            max_deliver=node.spec.attempts,
            max_ack_pending=-1,
        )
        await node.js.add_consumer(node.spec.stream, config)
        node.tg.start_soon(self._fetch_loop, served, name=f"corral cluster fetch {served.name}")

    async def unserve(self, name: str) -> None:
        """Take no more calls for *name* (its child stops for good while the node runs).

        The fetch under way ends (what it brings is handed back at once);
        calls taken already drain with the actor, and those it does not
        run go back to the stream for other nodes.
        """
        served = self._served.pop(name, None)
        if served is None or self._closing:
            return
        served.stopped = True
        served.slot.set()
        if served.sub is not None:
            try:
                await served.sub.unsubscribe()
            except Exception as exc:
                logger.warning("could not stop taking core NATS calls for %r: %s", name, exc)
        with anyio.move_on_after(self._fetch_wait + 1.0, shield=True):
            await served.fetch_done.wait()
        await self._node.members.write_soon()

    def stop_fetching(self) -> None:
        """Take no more calls from the cluster (a graceful stop begins).

        A fetch under way is let finish (at most ``min(1 s, heartbeat)``):
        calls the servers sent it are handed back at once rather than left
        to ``ack_wait``.
        """
        self._closing = True
        for served in self._served.values():
            served.slot.set()

    async def close(self) -> None:
        """Answer what still runs, hand back what never will."""
        self.stop_fetching()
        for served in self._served.values():
            if served.sub is None:
                continue
            try:
                await served.sub.unsubscribe()
            except Exception as exc:
                logger.warning("could not stop taking core NATS calls: %s", exc)
        with anyio.move_on_after(self._fetch_wait + 1.0, shield=True):
            while self._fetchers:
                self._fetchers_done = anyio.Event()
                await self._fetchers_done.wait()
        for scope in self._fetching:
            scope.cancel()
        with anyio.move_on_after(self._node.spec.heartbeat, shield=True):
            # The answers of calls that ended as their actors stopped.
            while self._replying:
                self._replies_done = anyio.Event()
                await self._replies_done.wait()
        await self._flush_outbox()
        for call_id, record in list(self._running.items()):
            if record.msg is not None:
                # Not answered by the time the actors stopped: another node takes it.
                await _settle(record.msg, "nak")
            else:
                await self._send(record.reply_to, call_id, _stopped(call_id))
        self._running.clear()

    def _leaving(self, served: _Served) -> bool:
        # A method, not the fields: the flags change while a fetch awaits.
        return self._closing or served.stopped

    async def _fetch_loop(self, served: _Served) -> None:
        """Ask the actor's consumer for as many calls as it has free slots, as slots free up.

        corral's own pull requests, on a subscription of this node's: the
        calls come to a callback (nats-py's ``fetch`` makes a task and a
        uuid per message, and waits for a batch to end before the next).
        Requests are open at once; each asks for the slots free and not
        asked for yet, and expires after ``min(1 s, heartbeat)``. The
        servers fill them in the order they were made, and end each one
        that expires with a status, so the calls asked for and not come are
        counted; a status lost on the way is made up for at expiry.
        """
        node = self._node
        scope = anyio.CancelScope()
        self._fetching.append(scope)
        if self._leaving(served):
            served.fetch_done.set()
            return
        self._fetchers += 1
        pulls = _Pulls()
        expires = self._fetch_wait
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{node.spec.stream}.{token(served.name)}"
        # Two tokens under the inbox: not the answers' ``<inbox>.*``.
        inbox = f"{node.inbox}.{_PULL}.{token(served.name)}"
        sub = None
        try:
            with scope:
                sub = await node.nc.subscribe(
                    inbox, cb=functools.partial(self._pulled, served, pulls)
                )
                while not self._leaving(served):
                    now = node.now()
                    pulls.expire(now)
                    want = served.max_concurrency - served.taken - pulls.asked
                    if want <= 0:
                        served.slot = anyio.Event()
                        with anyio.move_on_after(expires):
                            await served.slot.wait()
                        continue
                    request = b'{"batch":%d,"expires":%d}' % (want, int(expires * 1e9))
                    try:
                        await node.nc.publish(subject, request, reply=inbox)
                    except Exception as exc:  # a connection lost: try again soon
                        if self._leaving(served):
                            break
                        logger.warning(
                            "fetching calls for %r failed: %s: %s",
                            served.name,
                            type(exc).__name__,
                            exc,
                        )
                        await anyio.sleep(_FETCH_RETRY)
                        continue
                    pulls.add(want, now + expires)
                # Leaving: the open requests may still bring calls (handed back
                # at once by _pulled) until they expire.
                with anyio.move_on_after(expires + _LINGER):
                    while pulls.asked:
                        served.slot = anyio.Event()
                        with anyio.move_on_after(_LINGER):
                            await served.slot.wait()
                        pulls.expire(node.now())
        finally:
            if sub is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await sub.unsubscribe()
                    except Exception:
                        pass  # the connection is closing
            self._fetchers -= 1
            self._fetchers_done.set()
            served.fetch_done.set()

    async def _pulled(self, served: _Served, pulls: _Pulls, msg: Msg) -> None:
        """A call (or a status) came for one of the actor's pull requests."""
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is not None and not msg.data:
            if status == "100":
                return  # an idle heartbeat
            if status == "409":
                pulls.clear()  # a new leader, the consumer gone: every request with them
            else:
                pulls.end_oldest()  # 408: it expired; 404: nothing there
            served.slot.set()
            return
        pulls.came()
        if self._leaving(served):
            await _settle(msg, "nak")  # leaving: another node takes it now
            return
        await self._take(served, msg)

    async def _take(self, served: _Served, msg: Msg) -> None:
        node = self._node
        headers = msg.headers or {}
        reply_to = headers.get(REPLY_TO)
        try:
            envelope = node.protocol.loads(msg.data)
        except ProtocolError as exc:
            await self._refuse(served, msg, reply_to, exc)
            return
        if envelope.id in self._cancelled:
            await _settle(msg, "term")
            return
        if envelope.deadline is not None and envelope.deadline <= time.time():
            # Its caller has given up already: never started.
            await _settle(msg, "term")
            return
        running = self._running.get(envelope.id)
        if running is not None:
            # Delivered again while it runs here (the servers lost an in-progress
            # ack, say in an election): keep running it; answer for this delivery.
            running.msg = msg
            return
        attempt = _delivered(msg)
        if (
            attempt > 1
            and served.keep_records
            and await self._answered(envelope.id, reply_to, envelope.deadline)
        ):
            await _settle(msg, "ack")  # it ran to its end on a node that died
            return
        if attempt > envelope.attempt:
            envelope = attrs.evolve(envelope, attempt=attempt)
        if envelope.target != served.name:
            envelope = attrs.evolve(envelope, target=served.name)
        record = self._running[envelope.id] = _Running(msg, reply_to, envelope.deadline)
        served.taken += 1
        chunks = self._streamed(record, headers, attempt)
        try:
            fut = await node.runtime.deliver(envelope, track=True, chunks=chunks, checkpoint=False)
        except (UnhandledMessage, ProtocolError) as exc:
            self._unstarted(record, chunks)
            self._release(served, envelope.id)
            await self._send(reply_to, envelope.id, encode_error(envelope.id, exc))
            await _settle(msg, "term")
            return
        except (ActorStopped, NotFound):
            # Not served here any more: another node takes it now.
            self._unstarted(record, chunks)
            self._release(served, envelope.id)
            await _settle(msg, "nak")
            return
        except BaseException:
            self._unstarted(record, chunks)
            raise
        self._started(served, envelope.id, record, fut)

    def _streamed(
        self, record: _Running, headers: dict[str, str], attempt: int
    ) -> MemoryObjectSendStream[Any] | None:
        """Where a streamed call's handler sends its chunks (``None``: not streamed)."""
        if STREAM not in headers:
            return None
        send, recv = anyio.create_memory_object_stream[Any](STREAM_BUFFER)
        record.forward = _Forward(attempt, recv, heard=self._node.now())
        return send

    def _unstarted(self, record: _Running, chunks: MemoryObjectSendStream[Any] | None) -> None:
        if chunks is not None and record.forward is not None:
            chunks.close()
            record.forward.chunks.close()
            record.forward = None

    def _started(
        self, served: _Served, call_id: uuid.UUID, record: _Running, fut: Future[Any] | None
    ) -> None:
        """The actor took the call: answer when it ends (and send its chunks meanwhile)."""
        assert fut is not None
        record.future = fut
        if record.forward is not None:
            self._node.tg.start_soon(self._forward, call_id, record)
        fut.add_done_callback(lambda f: self._finished(served, call_id, f))

    async def _take_direct(self, served: _Served, msg: Msg) -> None:
        """Queue a call that came over core NATS (an actor exported ``durable=False``)."""
        node = self._node
        reply_to = msg.reply or None
        try:
            envelope = node.protocol.loads(msg.data)
        except ProtocolError as exc:
            await self._refuse(served, msg, reply_to, exc)
            return
        call_id = envelope.id
        if call_id in self._cancelled or (
            envelope.deadline is not None and envelope.deadline <= time.time()
        ):
            return  # its caller has given up already
        if envelope.target != served.name:
            envelope = attrs.evolve(envelope, target=served.name)
        headers = msg.headers or {}
        record = self._running[call_id] = _Running(None, reply_to, envelope.deadline)
        chunks = self._streamed(record, headers, 1)
        try:
            fut = await node.runtime.deliver(
                envelope, track=True, wait=NO_WAIT not in headers, chunks=chunks, checkpoint=False
            )
        except (UnhandledMessage, ProtocolError, MailboxFull, ActorStopped, NotFound) as exc:
            self._unstarted(record, chunks)
            self._running.pop(call_id, None)
            await self._send(reply_to, call_id, encode_error(call_id, exc))
            return
        except BaseException:
            self._unstarted(record, chunks)
            raise
        self._started(served, call_id, record, fut)

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
            if served.durable:
                await _settle(msg, "term")
            return
        error: Exception = exc
        if isinstance(type_name, str) and type_name not in self._node.protocol.names():
            error = UnhandledMessage(
                f"actor {served.name!r} does not handle {type_name} (no node serving it "
                "registers that message type)"
            )
        logger.warning("refused a call on %s: %s", msg.subject, error)
        await self._send(reply_to, call_id, encode_error(call_id, error))
        if served.durable:
            await _settle(msg, "term")

    def _finished(self, served: _Served, call_id: uuid.UUID, fut: Future[Any]) -> None:
        record = self._running.get(call_id)
        if record is None:
            return
        if record.forward is None:
            if record.msg is None:
                # A core NATS call: answer it, nothing to acknowledge.
                del self._running[call_id]
                data = self._direct_answer(call_id, fut)
                if data is not None and record.reply_to:
                    self._outbox.append(_Answer(record.reply_to, call_id, data))
                    self._outbox_ready.set()
                return
            if not served.keep_records:
                # Nothing to write down first: answered and acknowledged in order
                # by the outbox's task, not by a task of its own.
                data, how = self._outcome(served, call_id, fut)
                self._replying += 1  # a stop waits for it, as for an answer task
                self._outbox.append(
                    _Answer(record.reply_to, call_id, data, record.msg, how, served)
                )
                self._outbox_ready.set()
                return
        self._replying += 1
        self._node.tg.start_soon(self._reply, served, call_id, record, fut)

    def _outcome(
        self, served: _Served, call_id: uuid.UUID, fut: Future[Any]
    ) -> tuple[bytes | None, str]:
        """A stream call that ended: its answer (``None``: none to send), then ack or nak."""
        if self._leaving(served) and isinstance(fut.exception(), ActorStopped):
            return None, "nak"  # cut short by this node's stop: another node runs it
        if fut.cancelled():
            # By its caller: done with (no answer wanted). Else by this node's stop.
            return None, "ack" if call_id in self._cancelled else "nak"
        exc = fut.exception()
        if exc is None:
            return self._encode_reply(call_id, fut.result()), "ack"
        return encode_error(call_id, exc), "ack"

    async def _reply(
        self, served: _Served, call_id: uuid.UUID, record: _Running, fut: Future[Any]
    ) -> None:
        """Answer a streamed call once its chunks went, or one whose answer is kept first.

        The other answers go through the outbox.
        """
        msg = record.msg
        try:
            forward = record.forward
            if forward is not None:
                if fut.cancelled():
                    forward.scope.cancel()
                await forward.done.wait()
            if msg is None:  # a streamed core NATS call
                data = self._direct_answer(call_id, fut)
                if data is not None:
                    await self._send(record.reply_to, call_id, data)
                return
            data, how = self._outcome(served, call_id, fut)
            if data is not None:
                if served.keep_records:
                    await self._node.records.keep(call_id, data, record.deadline)
                await self._send(record.reply_to, call_id, data)
            await _settle(msg, how)
        finally:
            self._release(served, call_id)
            self._replying -= 1
            self._replies_done.set()

    async def _forward(self, call_id: uuid.UUID, record: _Running) -> None:
        """Send a streamed call's chunks to its caller as they come, a window ahead at most."""
        forward = record.forward
        assert forward is not None
        node = self._node
        silence = node.spec.ack_wait
        credit_to = f"{node.inbox}.{CREDIT}"
        try:
            with forward.scope, forward.chunks:
                index = 0
                async for chunk in forward.chunks:
                    while index - forward.read >= STREAM_WINDOW:
                        quiet = node.now() - forward.heard
                        if quiet >= silence:
                            logger.warning(
                                "the caller of streamed call %s read nothing for %s s: cancelled",
                                call_id,
                                silence,
                            )
                            self._cancel(call_id)
                            return
                        forward.room = anyio.Event()
                        with anyio.move_on_after(silence - quiet):
                            await forward.room.wait()
                    data = self._encode_reply(call_id, chunk)
                    position = {CHUNK: f"{forward.attempt} {index}"}
                    await self._send(record.reply_to, call_id, data, position, credit_to)
                    index += 1
        finally:
            forward.done.set()

    def on_credit(self, data: bytes) -> None:
        """A caller said how many chunks of its streamed calls it read (lines ``<id> <count>``)."""
        now = self._node.now()
        for line in data.split(b"\n"):
            text, _, count = line.partition(b" ")
            try:
                call_id = uuid.UUID(text.decode())
                read = int(count)
            except (ValueError, UnicodeDecodeError):
                continue
            record = self._running.get(call_id)
            forward = None if record is None else record.forward
            if forward is None:
                continue
            forward.heard = now
            if read > forward.read:
                forward.read = read
                forward.room.set()

    def _encode_reply(self, call_id: uuid.UUID, value: Any) -> bytes:
        # A handler's reply class is known only once it replies: register it
        # then (the caller names it in Cluster(types=...) to rebuild it).
        if attrs.has(type(value)):
            self._node.register(type(value))
        return encode_reply(self._node.protocol, call_id, value)

    def _direct_answer(self, call_id: uuid.UUID, fut: Future[Any]) -> bytes | None:
        """What to send the caller of a core NATS call that ended (``None``: it gave up)."""
        if fut.cancelled():
            return None if call_id in self._cancelled else _stopped(call_id)
        exc = fut.exception()
        if exc is None:
            return self._encode_reply(call_id, fut.result())
        if self._closing and isinstance(exc, ActorStopped):
            return _stopped(call_id)
        return encode_error(call_id, exc)

    async def outbox_loop(self) -> None:
        """Send the answers that need no task of their own, in order, as calls end."""
        while True:
            await self._flush_outbox()
            self._outbox_ready = anyio.Event()
            if not self._outbox:
                await self._outbox_ready.wait()

    async def _flush_outbox(self) -> None:
        outbox = self._outbox
        while outbox:
            answer = outbox.popleft()
            if answer.data is not None:
                await self._send(answer.reply_to, answer.call_id, answer.data)
            if answer.msg is not None:
                try:
                    await _settle(answer.msg, answer.how)
                finally:
                    if answer.served is not None:
                        self._release(answer.served, answer.call_id)
                    self._replying -= 1
                    self._replies_done.set()

    def _release(self, served: _Served, call_id: uuid.UUID) -> None:
        if self._running.pop(call_id, None) is not None and served.durable:
            served.taken -= 1
            served.slot.set()

    async def _send(
        self,
        reply_to: str | None,
        call_id: uuid.UUID,
        data: bytes,
        headers: dict[str, str] | None = None,
        reply: str = "",
    ) -> None:
        nc = self._node.nc
        if reply_to is None or nc.is_closed:
            return
        try:
            await nc.publish(reply_to, data, reply=reply, headers=headers)
        except Exception as exc:
            logger.warning("could not answer call %s: %s", call_id, exc)

    async def _answered(
        self, call_id: uuid.UUID, reply_to: str | None, deadline: float | None
    ) -> bool:
        """Answer a redelivered call from its result record, if it has one."""
        data = await self._node.records.read(call_id, deadline)
        if data is None:
            return False
        await self._send(reply_to, call_id, data)
        return True

    async def keepalive_loop(self) -> None:
        """Every heartbeat, say that each call this node holds is still alive.

        To the servers for a call from the stream (an in-progress ack); to
        its caller for a core NATS call (one message per caller, listing
        its calls). Every :data:`ANNOUNCE_EVERY` seconds, announce again how
        each served actor's calls are delivered (the entry has a TTL).
        """
        node = self._node
        announced = node.now()
        while True:
            await anyio.sleep(node.spec.heartbeat)
            held: dict[str, list[str]] = {}
            for call_id, record in list(self._running.items()):
                if record.msg is None:
                    if record.reply_to:
                        inbox = record.reply_to.rpartition(".")[0]
                        held.setdefault(inbox, []).append(call_id.hex)
                    continue
                try:
                    await record.msg.in_progress()
                except Exception as exc:
                    logger.warning("in-progress ack failed: %s", exc)
            for inbox, ids in held.items():
                for i in range(0, len(ids), _ALIVE_BATCH):
                    chunk = ",".join(ids[i : i + _ALIVE_BATCH]).encode()
                    try:
                        await node.nc.publish(f"{inbox}.{ALIVE}", chunk)
                    except Exception as exc:
                        logger.warning("could not tell a caller its calls are alive: %s", exc)
            if node.now() - announced >= ANNOUNCE_EVERY:
                announced = node.now()
                for served in list(self._served.values()):
                    try:
                        await node.records.announce(token(served.name), durable=served.durable)
                    except Exception as exc:
                        logger.warning("could not announce actor %r: %s", served.name, exc)

    async def on_cancel(self, msg: Msg) -> None:
        """A caller gave up a call: drop it if queued here, cancel its handler if running."""
        try:
            call_id = uuid.UUID(msg.data.decode())
        except (ValueError, UnicodeDecodeError):
            return
        self._cancel(call_id)

    def _cancel(self, call_id: uuid.UUID) -> None:
        """Its caller gave up *call_id*: never run it, stop it if it runs."""
        self._cancelled[call_id] = None
        while len(self._cancelled) > _CANCELLED_KEPT:
            self._cancelled.popitem(last=False)
        record = self._running.get(call_id)
        if record is not None and record.future is not None:
            record.future.cancel()  # queued here: dropped; running: its handler is cancelled


def _stopped(call_id: uuid.UUID) -> bytes:
    return encode_error(
        call_id,
        ActorStopped(
            "the node serving this call stopped before it ended "
            "(the actor is exported durable=False: no other node takes it)"
        ),
    )


def _delivered(msg: Msg) -> int:
    """How many times the servers delivered *msg* (read off its ack subject, as nats-py does).

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<...>``, or with a domain and
    an account hash before the stream in the newer form; nats-py's own
    ``metadata`` also parses timestamps and sequences, at several times the cost.
    """
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[4])
    if len(tokens) >= 11:
        return int(tokens[6])
    return int(msg.metadata.num_delivered)


async def _settle(msg: Msg, how: str) -> None:
    try:
        if how == "ack":
            await msg.ack()
        elif how == "nak":
            await msg.nak()
        else:
            await msg.term()
    except Exception as exc:  # the servers redeliver it after ack_wait
        logger.warning("could not %s a call: %s", how, exc)
