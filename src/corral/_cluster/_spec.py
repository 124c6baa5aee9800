"""The cluster spec: which NATS servers, which cluster, and its delivery settings."""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
from collections.abc import Iterable
from typing import Any

import attrs

from .._core._checks import check_finite_positive, check_positive_int

__all__ = ["Cluster"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NOT_NODE = re.compile(r"[^A-Za-z0-9_.-]+")


_runtimes = itertools.count(1)


def default_node_name() -> str:
    """``<host>-<pid>`` (``-2``, ``-3`` for the next runtimes of the process).

    What a node name may not hold is replaced by ``-``.
    """
    host = _NOT_NODE.sub("-", socket.gethostname()).strip("-.") or "node"
    n = next(_runtimes)
    return f"{host[:48]}-{os.getpid()}" + (f"-{n}" if n > 1 else "")


def _servers(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        servers = tuple(value)
    except TypeError:
        raise TypeError(f"servers must be NATS URLs, got {value!r}") from None
    if not servers:
        raise ValueError("a Cluster needs at least one NATS server URL")
    for url in servers:
        if not isinstance(url, str) or not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(
                f"a NATS server URL starts with nats://, tls://, ws:// or wss://, got {url!r}"
            )
    return servers


def _check_name(_: Any, __: Any, value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"a cluster name is 1-64 letters, digits, '-' or '_' (it names NATS subjects "
            f"and streams), got {value!r}"
        )


def _types(value: Iterable[type]) -> tuple[type, ...]:
    return tuple(value)


def _check_node(_: Any, __: Any, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not _NODE.fullmatch(value)):
        raise ValueError(f"a node name is 1-64 letters, digits, '.', '-' or '_', got {value!r}")


def _check_seconds(what: str) -> Any:
    def check(_: Any, __: Any, value: float) -> None:
        check_finite_positive(value, what)

    return check


def _check_count(what: str) -> Any:
    def check(_: Any, __: Any, value: int) -> None:
        check_positive_int(value, what)

    return check


def _check_replicas(_: Any, __: Any, value: int | None) -> None:
    if value is not None and value not in (1, 3, 5):
        raise ValueError(f"replicas must be 1, 3, 5 or None (3 on a cluster of 3+), got {value!r}")


def _check_heartbeat(spec: Cluster, _: Any, value: float) -> None:
    _check_seconds("heartbeat")(spec, _, value)
    if value * 2 > spec.ack_wait:
        raise ValueError(
            f"heartbeat ({value} s) must be at most half of ack_wait ({spec.ack_wait} s): "
            "a running call's in-progress acks must arrive well inside it"
        )


@attrs.frozen(kw_only=True)
class Cluster:
    """Where a runtime's exported actors are served from, and how their calls travel.

    A runtime given a cluster (``Runtime(tree, cluster=corral.Cluster(...))``)
    connects to the NATS servers at entry, serves its exported children
    (``corral.child(..., export=True)``) to the cluster as well as locally,
    and reaches actors served by other processes with :meth:`Runtime.remote`.
    Calls travel through one JetStream stream per cluster name, so they
    outlive the process that queued them and the node that was serving them.

    Args:
        servers: NATS server URLs (one is enough; the others are discovered).
        name: The cluster's name: every runtime joining it uses the same. It
            names the stream (``CORRAL_<name>``) and the subjects
            (``corral.<name>.call.<actor>``).
        connect_timeout: Seconds ``Runtime`` entry waits for NATS before it
            fails, naming the servers.
        ack_wait: Seconds a serving node may stay silent about a call before
            the servers give it to another node (the failover time after a
            node dies).
        heartbeat: Seconds between a serving node's in-progress acks for
            each running call (at most half of *ack_wait*).
        attempts: How many times a call is delivered before the caller gets
            :class:`corral.NodeLost` (a delivery ends without an answer only
            when its node dies).
        mailbox: Calls that may wait in the stream for one actor (queued
            plus running); past it, ``try_submit`` raises
            :class:`corral.MailboxFull` and ``submit`` waits for room.
        replicas: Copies of each call the servers keep (``None``: 3 on a
            cluster of three or more servers, else 1).
        max_payload: Bytes a call may take at most; ``None``: what the
            server allows. A bigger one is refused before it is published.
        node: This runtime's name in the cluster (what ``corral status``
            shows, and each node's OpenTelemetry ``service.instance.id``
            under ``corral serve``); ``None``: ``<host>-<pid>``. Two live
            nodes cannot share a name (a process's second runtime is
            ``<host>-<pid>-2``).
        types: Message and reply classes this runtime sends or receives
            besides those its exported actors handle and those it sends
            (registered as it sends them): list the attrs classes remote
            actors reply with.

    Raises:
        ValueError, TypeError: A setting is out of range; the message names it.
    """

    servers: tuple[str, ...] = attrs.field(converter=_servers)
    name: str = attrs.field(default="corral", validator=_check_name)
    connect_timeout: float = attrs.field(default=5.0, validator=_check_seconds("connect_timeout"))
    ack_wait: float = attrs.field(default=30.0, validator=_check_seconds("ack_wait"))
    heartbeat: float = attrs.field(default=5.0, validator=_check_heartbeat)
    attempts: int = attrs.field(default=3, validator=_check_count("attempts"))
    mailbox: int = attrs.field(default=1000, validator=_check_count("mailbox"))
    replicas: int | None = attrs.field(default=None, validator=_check_replicas)
    max_payload: int | None = attrs.field(default=None)
    node: str | None = attrs.field(default=None, validator=_check_node)
    types: tuple[type, ...] = attrs.field(default=(), converter=_types)

    def __attrs_post_init__(self) -> None:
        if self.max_payload is not None:
            check_positive_int(self.max_payload, "max_payload")

    @property
    def stream(self) -> str:
        """The JetStream stream that holds the cluster's calls."""
        return f"CORRAL_{self.name}"

    def subject(self, actor: str) -> str:
        """The subject the calls to *actor* are published on."""
        return _subject(self.name, "call", actor)

    def direct_subject(self, actor: str) -> str:
        """The core NATS subject of *actor*'s calls when it is exported ``durable=False``."""
        return _subject(self.name, "direct", actor)


@functools.lru_cache(maxsize=4096)
def _subject(cluster: str, path: str, actor: str) -> str:
    # Made on every call sent: worked out once per actor.
    from ._wire import token

    return f"corral.{cluster}.{path}.{token(actor)}"
