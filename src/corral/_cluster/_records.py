"""Result records: the answer of each call, kept in JetStream KV until its last possible redelivery.

A serving node writes a call's answer down before it acknowledges the
call; a node the servers give the call to again (its first node died
between the two) answers from the record instead of running the call a
second time, and a caller whose answer was lost on core NATS reads it
from there. The same bucket holds each exported actor's announced
delivery (``actors.<token>``: durable or not), which callers read to
choose the path. Also here: the one retry-with-backoff helper the cluster
uses.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import anyio

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from ._spec import Cluster

__all__ = ["ANNOUNCE_EVERY", "RETRY_FIRST", "RETRY_MOST", "Records", "retrying", "wait_for_leader"]

logger = logging.getLogger("corral.cluster")

T = TypeVar("T")

#: Seconds an entry lives at least (announcements are written again well inside it).
MIN_TTL: Final = 600.0
#: Seconds between a serving node's announcements of its actors.
ANNOUNCE_EVERY: Final = MIN_TTL / 5

#: The first and the longest pause between attempts.
RETRY_FIRST: Final = 0.05
RETRY_MOST: Final = 1.0


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    until: float,
    final: type[BaseException] | tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.time,
) -> T:
    """``await attempt()``, again with backoff while it fails, until *until* on *clock*.

    An exception of a *final* type is an answer, not a failure: it is
    raised at once. The last failure is raised when time is up.
    """
    pause = RETRY_FIRST
    while True:
        try:
            return await attempt()
        except final:
            raise
        except Exception:
            left = until - clock()
            if left <= 0:
                raise
        await anyio.sleep(min(pause, left))
        pause = min(pause * 2, RETRY_MOST)


def bounded(attempt: Callable[[], Awaitable[T]], limit: float) -> Callable[[], Awaitable[T]]:
    """*attempt*, failing with TimeoutError after *limit* seconds (a try for :func:`retrying`).

    A request the servers drop (a leader change) would otherwise wait out
    the client's whole timeout on one try.
    """

    async def one_try() -> T:
        with anyio.fail_after(limit):
            return await attempt()

    return one_try


async def wait_for_leader(js: JetStreamContext, stream: str) -> None:
    """Wait until *stream* (a replicated stream, or a bucket's) has elected its leader.

    A stream just made on a cluster takes requests before it can answer
    them: a read sent then goes unanswered until the client's timeout (5 s
    here, every time). Its info is answered by the cluster's meta leader,
    and says when the stream's own leader is there. Callers bound the wait.
    """
    pause = RETRY_FIRST
    while True:
        info = await js.stream_info(stream)
        if info.cluster is None or info.cluster.leader:
            return
        await anyio.sleep(pause)
        pause = min(pause * 2, 0.2)


class Records:
    """The cluster's bucket of answers (``CORRAL_<name>_results``)."""

    def __init__(self, bucket: KeyValue, ack_wait: float) -> None:
        self._bucket = bucket
        self._ack_wait = ack_wait

    @classmethod
    async def open(cls, js: JetStreamContext, spec: Cluster, replicas: int) -> Records:
        """Make sure the bucket exists (another node may have made it) and open it."""
        from nats.js import api
        from nats.js.errors import BadRequestError

        config = api.KeyValueConfig(
            bucket=f"{spec.stream}_results",
            history=1,
            ttl=max(MIN_TTL, 4 * spec.ack_wait * spec.attempts),
            storage=api.StorageType.FILE,
            replicas=replicas,
        )
        try:
            bucket = await js.create_key_value(config)
        except BadRequestError:
            bucket = await js.key_value(config.bucket)  # made by another node, its way
        await wait_for_leader(js, f"KV_{config.bucket}")
        return cls(bucket, spec.ack_wait)

    async def keep(self, call_id: uuid.UUID, data: bytes, deadline: float | None) -> None:
        """Write a call's answer down, retrying until its deadline (or ``ack_wait``)."""
        until = time.time() + self._ack_wait if deadline is None else deadline
        try:
            await retrying(lambda: self._bucket.put(call_id.hex, data), until)
        except Exception as exc:
            logger.warning("could not keep the answer of call %s: %s", call_id, exc)

    async def read(self, call_id: uuid.UUID, deadline: float | None) -> bytes | None:
        """The kept answer of *call_id*, or ``None`` without one.

        A read that fails (the bucket's servers electing a leader) is tried
        again until *deadline* (at most ``ack_wait``): running a call again,
        or losing its answer, because the record could not be read is what
        the record is there to prevent.
        """
        from nats.js.errors import KeyNotFoundError

        until = min(time.time() + self._ack_wait, deadline or math.inf)
        try:
            entry = await retrying(lambda: self._bucket.get(call_id.hex), until, KeyNotFoundError)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            logger.warning("could not read the answer of call %s: %s", call_id, exc)
            return None
        return entry.value or None

    async def announce(self, actor_token: str, *, durable: bool) -> None:
        """Say how actor *actor_token*'s calls are delivered (the last node to say wins)."""
        data = json.dumps({"durable": durable}).encode()
        await self._bucket.put(f"actors.{actor_token}", data)

    async def durable(self, actor_token: str, until: float) -> bool | None:
        """Whether the actor's calls go through the stream; ``None``: no node announced it.

        Raises:
            Exception: The bucket could not be read by wall-clock *until*.
        """
        from nats.js.errors import KeyNotFoundError

        try:
            entry = await retrying(
                lambda: self._bucket.get(f"actors.{actor_token}"), until, KeyNotFoundError
            )
        except KeyNotFoundError:
            return None
        try:
            return bool(json.loads(entry.value or b"")["durable"])
        except (ValueError, KeyError, TypeError):
            return None
