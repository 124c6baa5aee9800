"""Remote refs: the same calls as an ActorRef, to an actor served by other processes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from .._core._checks import check_timeout
from .._core._exceptions import InvalidStateError
from .._core._future import Future
from .._core._messages import Kind, Ping

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from ._calling import Chunks
    from ._node import ClusterNode

__all__ = ["RemoteRef", "RemoteStream", "remote_ref"]

ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")


class RemoteRef(Generic[ReqT, ReplyT]):
    """A handle for sending calls to an actor served to the cluster, wherever it runs.

    Made by :meth:`Runtime.remote`; it has no public constructor. Its
    methods take the same arguments and raise the same errors as
    :class:`ActorRef`'s; the calls travel through the cluster's stream, so
    one of the nodes serving the actor runs each, and a call outlives the
    node that was running it (another node runs it again, as its next
    attempt). ``try_submit`` and ``try_tell`` are coroutines here: asking
    the servers for room takes a round trip.
    """

    __slots__ = ("_name", "_node")

    _node: ClusterNode
    _name: str

    def __init__(self) -> None:
        raise TypeError("RemoteRef has no public constructor; use Runtime.remote(name)")

    @classmethod
    def _make(cls, node: ClusterNode, name: str) -> RemoteRef[Any, Any]:
        remote: RemoteRef[Any, Any] = object.__new__(cls)
        remote._node = node
        remote._name = name
        return remote

    def __repr__(self) -> str:
        return f"<corral.RemoteRef {self._name!r} in cluster {self._node.spec.name!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteRef) and other._node is self._node and other._name == self._name
        )

    def __hash__(self) -> int:
        return hash((id(self._node), self._name))

    @property
    def name(self) -> str:
        """The name the actor is served under."""
        return self._name

    async def submit(self, msg: ReqT, *, timeout: float | None = None) -> Future[ReplyT]:
        """Send a request, waiting while the actor's mailbox in the cluster is full.

        Returns the call's future. With *timeout*, the future fails with
        :class:`DeadlineExceeded` when it passes, whatever the remote side does.

        Raises:
            DeadlineExceeded: *timeout* passed before the cluster took the call.
            ProtocolError: *msg* cannot cross processes, or is too big.
            ClusterUnavailable: The cluster did not take the call in time.
        """
        check_timeout(timeout)
        fut = await self._node.send(self._name, msg, Kind.REQUEST, timeout, wait=True)
        assert fut is not None
        return fut

    async def try_submit(self, msg: ReqT, *, timeout: float | None = None) -> Future[ReplyT]:
        """Send a request if the actor's mailbox in the cluster has room, else refuse.

        Raises:
            MailboxFull: The mailbox is full; nothing was queued.
        """
        check_timeout(timeout)
        fut = await self._node.send(self._name, msg, Kind.REQUEST, timeout, wait=False)
        assert fut is not None
        return fut

    async def ask(self, msg: ReqT, *, timeout: float | None = None) -> ReplyT:
        """Send a request and wait for the reply.

        If the caller is cancelled while waiting, the call is cancelled too:
        the node serving it drops it, or cancels its running handler.

        Raises:
            DeadlineExceeded: *timeout* passed before the reply came.
            NodeLost: Every delivery of the call ended with its node dying.
            RemoteError: The handler raised an exception that is not corral's.
            Exception: corral's own errors come back as themselves.
        """
        fut = await self.submit(msg, timeout=timeout)
        try:
            return await fut
        finally:
            if not fut.done():
                fut.cancel()

    async def tell(self, msg: ReqT) -> None:
        """Send a one-way message, waiting while the actor's mailbox in the cluster is full."""
        await self._node.send(self._name, msg, Kind.ONE_WAY, None, wait=True)

    async def try_tell(self, msg: ReqT) -> None:
        """Send a one-way message if the actor's mailbox in the cluster has room, else refuse.

        Raises:
            MailboxFull: The mailbox is full; nothing was queued.
        """
        await self._node.send(self._name, msg, Kind.ONE_WAY, None, wait=False)

    async def ping(self, *, timeout: float | None = None) -> None:
        """Round-trip a :class:`corral.Ping` through the actor's mailbox on a node serving it.

        Raises:
            DeadlineExceeded: *timeout* passed first.
        """
        check_timeout(timeout)
        fut = await self._node.send(self._name, Ping(), Kind.SYSTEM, timeout, wait=True)
        assert fut is not None
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def stream(self, msg: ReqT, *, timeout: float | None = None) -> RemoteStream[Any]:
        """Send a request whose reply comes in chunks, and read them as they arrive.

        ::

            async with chat.stream(ChatRequest(...), timeout=30) as chunks:
                async for chunk in chunks:
                    print(chunk.content, end="")

        As :meth:`ActorRef.stream`, across processes: the call waits in the
        actor's mailbox in the cluster like any other, one node serving the
        actor runs its :func:`corral.streams` handler, and the chunks come
        back in order. The serving node sends at most a window of chunks
        ahead of the reader. Leaving the ``async with`` early cancels the
        call on that node at once.

        A stream whose node dies before any chunk arrived is begun again
        by another node (its next attempt); once chunks arrived, it fails
        with :class:`NodeLost` instead of repeating them. That the actor
        streams no replies to the message is known only once a node read
        the call: iterating raises :class:`UnhandledMessage`.
        """
        check_timeout(timeout)
        return RemoteStream._make(self._node, self._name, msg, timeout)


class RemoteStream(Generic[ReplyT]):
    """The chunks of one streamed remote call (made by :meth:`RemoteRef.stream`).

    Use it as an async context manager and iterate it. When the handler
    fails, iterating raises its error after the chunks that came before it;
    when the deadline passes, :class:`DeadlineExceeded`.
    """

    __slots__ = ("_chunks", "_future", "_msg", "_name", "_node", "_recv", "_timeout")

    _node: ClusterNode
    _name: str
    _msg: Any
    _timeout: float | None
    _future: Future[int] | None
    _chunks: Chunks | None
    _recv: MemoryObjectReceiveStream[Any] | None

    def __init__(self) -> None:
        raise TypeError("RemoteStream has no public constructor; use RemoteRef.stream()")

    @classmethod
    def _make(
        cls, node: ClusterNode, name: str, msg: Any, timeout: float | None
    ) -> RemoteStream[Any]:
        stream: RemoteStream[Any] = object.__new__(cls)
        stream._node = node
        stream._name = name
        stream._msg = msg
        stream._timeout = timeout
        stream._future = None
        stream._chunks = None
        stream._recv = None
        return stream

    @property
    def future(self) -> Future[int]:
        """The call's future: the number of chunks, once the stream ended."""
        if self._future is None:
            raise InvalidStateError("the stream has not been opened: use 'async with'")
        return self._future

    async def __aenter__(self) -> RemoteStream[ReplyT]:
        from ._calling import Chunks
        from ._wire import STREAM_WINDOW

        send, recv = anyio.create_memory_object_stream[Any](STREAM_WINDOW)
        chunks = Chunks(send)
        try:
            fut = await self._node.send(
                self._name, self._msg, Kind.REQUEST, self._timeout, wait=True, chunks=chunks
            )
        except BaseException:
            send.close()
            recv.close()
            raise
        assert fut is not None
        self._future = fut
        self._chunks = chunks
        self._recv = recv
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        fut, recv = self._future, self._recv
        if fut is not None and not fut.done():
            fut.cancel()  # the reader stopped: the serving node cancels the handler
        if recv is not None:
            recv.close()

    def __aiter__(self) -> RemoteStream[ReplyT]:
        return self

    async def __anext__(self) -> ReplyT:
        fut, chunks, recv = self._future, self._chunks, self._recv
        if fut is None or chunks is None or recv is None:
            raise InvalidStateError("the stream has not been opened: use 'async with'")
        try:
            chunk = await recv.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await fut  # the call's error, if it failed (its deadline too)
            raise StopAsyncIteration from None
        chunks.read += 1
        self._node.calling.credit(chunks)
        return chunk  # type: ignore[no-any-return]


def remote_ref(node: ClusterNode, name: str) -> RemoteRef[Any, Any]:
    """The ref of actor *name* in *node*'s cluster (what :meth:`Runtime.remote` returns)."""
    return RemoteRef._make(node, name)
