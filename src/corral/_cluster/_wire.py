"""What crosses the cluster besides envelopes: subject tokens, replies, and errors as values.

A reply is compact JSON: ``{"id": ..., "ok": {"type": ..., "value": ...}}``
or ``{"id": ..., "error": {...}}``. Nothing is pickled. corral's own errors
come back as the same types, with their attributes; any other exception
comes back as a :class:`RemoteError` naming its type, with its message and
the remote traceback (of that exception only: a cause chain may quote what
an error message was careful to leave out).
"""

from __future__ import annotations

import functools
import json
import traceback
import uuid
from typing import Any, Final

from .._core._exceptions import CorralError, ProtocolError
from .._protocol import Protocol
from ._exceptions import RemoteError

__all__ = [
    "ALIVE",
    "CANCEL",
    "CHUNK",
    "CREDIT",
    "MSG_ID",
    "NO_WAIT",
    "REPLY_TO",
    "STREAM",
    "STREAM_WINDOW",
    "decode_reply",
    "encode_error",
    "encode_reply",
    "token",
]

#: Header: JetStream's duplicate detection key (the envelope id).
MSG_ID: Final = "Nats-Msg-Id"
#: Header: the caller's inbox subject for this call's reply (absent for tell).
REPLY_TO: Final = "Corral-Reply-To"
#: Subject tail on which callers broadcast the ids of calls they gave up.
CANCEL: Final = "cancel"
#: Header of a core NATS (``durable=False``) call sent with ``try_``: refuse it when full.
NO_WAIT: Final = "Corral-No-Wait"
#: Inbox tail to which a node serving ``durable=False`` calls sends, every
#: heartbeat, the ids of that caller's calls it still holds (comma-separated hex).
ALIVE: Final = "alive"
#: Header of a streamed call (:meth:`RemoteRef.stream`): run the actor's streaming handler.
STREAM: Final = "Corral-Stream"
#: Header of one chunk of a streamed call's reply, sent to the caller's inbox
#: before its final answer: ``"<attempt> <index>"`` (the index counts from 0).
CHUNK: Final = "Corral-Chunk"
#: Inbox tail to which a caller reading streamed calls sends, as it reads and
#: every heartbeat, how many chunks of each it has read (lines ``<call id hex>
#: <count>``): the serving node sends at most a window ahead of that.
CREDIT: Final = "credit"
#: Chunks of a streamed call its serving node may send ahead of what the caller read.
STREAM_WINDOW: Final = 32

#: One encoder for every reply (json.dumps with options makes a new one each call).
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)

_SAFE: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@functools.lru_cache(maxsize=4096)
def token(name: str) -> str:
    """*name* as one NATS subject token (and consumer name): reversible, readable.

    Letters, digits, ``_`` and ``-`` stay; every other character becomes
    ``=`` and the hex of its UTF-8 bytes (``a.b`` -> ``a=2eb``).
    """
    return "".join(c if c in _SAFE else "".join(f"={b:02x}" for b in c.encode()) for c in name)


def _json_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _error_data(exc: BaseException) -> dict[str, Any]:
    import corral

    cls = type(exc)
    public = getattr(corral, cls.__name__, None)
    if public is cls and issubclass(cls, CorralError):
        name = f"corral.{cls.__name__}"
    else:
        name = f"{cls.__module__}.{cls.__qualname__}"
    fields = {
        key: value
        for key, value in vars(exc).items()
        if not key.startswith("_") and _json_scalar(value)
    }
    if isinstance(exc, RemoteError):
        # Passed on by a node that called another: keep the original's name and trace.
        name, fields = exc.type_name, {}
        text = exc.remote_traceback
    else:
        text = "".join(traceback.format_exception(exc, chain=False))
    return {"type": name, "message": str(exc), "fields": fields, "traceback": text}


def encode_reply(protocol: Protocol, call_id: uuid.UUID, value: Any) -> bytes:
    """The reply to call *call_id*: *value*, or the error that it cannot be sent."""
    try:
        body: dict[str, Any] = {
            "id": str(call_id),
            "ok": protocol.unstructure_value(value, check=False),
        }
        return _COMPACT.encode(body).encode()
    except (ProtocolError, TypeError, ValueError) as exc:
        error = ProtocolError(f"the reply ({type(value).__qualname__}) cannot be sent: {exc}")
        return encode_error(call_id, error)


def encode_error(call_id: uuid.UUID, exc: BaseException) -> bytes:
    """The reply to call *call_id* that it failed with *exc*."""
    body = {"id": str(call_id), "error": _error_data(exc)}
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def _rebuild(data: Any) -> BaseException:
    if not isinstance(data, dict):
        return ProtocolError(f"a reply's error is not an object: {type(data).__name__}")
    name = str(data.get("type", "?"))
    message = str(data.get("message", ""))
    text = str(data.get("traceback", ""))
    if name.startswith("corral."):
        import corral

        cls = getattr(corral, name.removeprefix("corral."), None)
        if isinstance(cls, type) and issubclass(cls, CorralError) and cls is not RemoteError:
            exc = cls.__new__(cls)
            exc.args = (message,)
            fields = data.get("fields")
            if isinstance(fields, dict):
                for key, value in fields.items():
                    if isinstance(key, str) and not key.startswith("_") and _json_scalar(value):
                        setattr(exc, key, value)
            return exc
    return RemoteError(name, message, text)


def decode_reply(protocol: Protocol, data: bytes) -> tuple[uuid.UUID, bool, Any]:
    """``(call id, ok, value or exception)`` from a reply's bytes.

    Raises:
        ProtocolError: The bytes are not a reply.
    """
    try:
        body = json.loads(data)
        call_id = uuid.UUID(body["id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"not a corral reply: {exc}") from None
    if "error" in body:
        return call_id, False, _rebuild(body["error"])
    try:
        return call_id, True, protocol.structure_value(body.get("ok"))
    except ProtocolError as exc:
        return call_id, False, exc
