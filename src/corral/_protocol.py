"""Turning envelopes into plain data and back, for crossing a process boundary.

This is the one place where cattrs errors become :class:`corral.ProtocolError`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_args, get_origin

import attrs
import cattrs
import cattrs.gen
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

from ._core._exceptions import ProtocolError
from ._core._messages import EMPTY_TRACE_CONTEXT, Envelope, GetStatus, Kind, Ping, Pong, Stop
from ._core._pile import ActorStatus, CallInfo

__all__ = ["Protocol"]

T = TypeVar("T", bound=type[Any])


class _WrongType(TypeError):
    """A value of the wrong JSON type; its message is shown as is.

    ``bare`` is the same message without the value, for data that must not
    be quoted (a model's output: it may say anything).
    """

    def __init__(self, message: str, bare: str | None = None) -> None:
        super().__init__(message)
        self.bare = message if bare is None else bare


def _wrong(expected: str, value: Any) -> _WrongType:
    kind = type(value).__name__
    return _WrongType(
        f"expected {expected}, got {kind} {value!r:.40}", f"expected {expected}, got {kind}"
    )


def _fixed_tuple_structure(t: Any, c: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Structure a fixed-length tuple (``tuple[int, str]``) item by item.

    Each item's error carries its index, as cattrs' own sequence errors do,
    so the error names the item's path.
    """
    args = get_args(t)

    def structure(value: Any, _: Any) -> Any:
        if len(value) != len(args):
            raise _WrongType(f"expected an array of {len(args)} items, got {len(value)}")
        errors: list[Exception] = []
        out = []
        for index, (arg, item) in enumerate(zip(args, value, strict=True)):
            try:
                out.append(c.get_structure_hook(arg)(item, arg))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring {t} @ index {index}", index, arg)
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return tuple(out)

    return structure


def _strict(name: str, ok: Callable[[Any], bool]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if not ok(value):
            raise _wrong(name, value)
        return value

    return hook


def _structure_float(value: Any, _: Any) -> float:
    if type(value) is float or type(value) is int:
        if not math.isfinite(value):
            raise _WrongType(f"expected a finite number, got {value!r}", "expected a finite number")
        return float(value)
    raise _wrong("a number", value)


def _is_tuple(t: Any) -> bool:
    return (get_origin(t) or t) is tuple


def _make_converter() -> cattrs.Converter:
    """A JSON converter that refuses values of the wrong type instead of coercing them.

    Plain cattrs turns ``"5"`` into ``5`` and ``"abc"`` into ``["a", "b", "c"]``;
    across a process boundary that hides the peer's bugs, so every primitive,
    array, object and attrs class checks the JSON type it is given first.
    """
    conv = make_converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict("an integer", lambda v: type(v) is int))
    conv.register_structure_hook(str, _strict("a string", lambda v: type(v) is str))
    conv.register_structure_hook(bool, _strict("a boolean", lambda v: type(v) is bool))
    conv.register_structure_hook(float, _structure_float)

    def sequence_factory(t: Any, c: cattrs.Converter) -> Callable[[Any, Any], Any]:
        args = get_args(t)
        if _is_tuple(t) and not (len(args) == 2 and args[1] is Ellipsis):
            inner: Callable[[Any, Any], Any] = _fixed_tuple_structure(t, c)
        elif _is_tuple(t):
            inner = homogenous_tuple_structure_factory(t, c)
        else:
            inner = list_structure_factory(t, c)

        def hook(value: Any, tt: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise _WrongType(f"expected an array, got {type(value).__name__}")
            return inner(value, tt)

        return hook

    def mapping_factory(t: Any, c: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = mapping_structure_factory(t, c)

        def hook(value: Any, tt: Any) -> Any:
            if not isinstance(value, dict):
                raise _WrongType(f"expected an object, got {type(value).__name__}")
            return inner(value, tt)

        return hook

    def attrs_factory(t: Any, c: cattrs.Converter) -> Callable[[Any, Any], Any]:
        inner = cattrs.gen.make_dict_structure_fn(t, c, _cattrs_forbid_extra_keys=True)

        def hook(value: Any, tt: Any) -> Any:
            if not isinstance(value, dict):
                raise _WrongType(f"expected an object, got {type(value).__name__}")
            return inner(value, tt)

        return hook

    conv.register_structure_hook_factory(lambda t: is_sequence(t) or _is_tuple(t), sequence_factory)
    conv.register_structure_hook_factory(is_mapping, mapping_factory)
    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    return conv


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, _WrongType):
        return str(exc)
    return format_exception(exc, type_)


def _format_bare(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, _WrongType):
        return exc.bare
    return format_exception(exc, type_)


def _translate(exc: Exception, path: str, *, values: bool = True) -> ProtocolError:
    """Turn a cattrs (or hook) error into one ProtocolError naming each bad field path.

    With *values* false the message names paths and types but quotes no value.
    """
    fmt = _format if values else _format_bare
    try:
        problems = cattrs.transform_error(exc, path=path, format_exception=fmt)
    except Exception:  # transform_error only knows cattrs' own error shapes
        problems = [f"{fmt(exc, None)} @ {path}"]
    return ProtocolError("; ".join(problems))


@attrs.frozen
class _Wire:
    """The envelope's plain-data shape, before the payload is structured."""

    id: str
    kind: str
    target: str
    type: str
    payload: dict[str, Any]
    reply_to: str | None = None
    deadline: float | None = None
    attempt: int = 1
    trace_context: dict[str, str] = attrs.field(factory=dict)
    created_at: float = 0.0


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# One encoder and one decoder (json.dumps and json.loads with options make new ones each call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)

_WIRE_KEYS = frozenset(attrs.fields_dict(_Wire))


def _finite(value: object) -> float | None:
    """*value* as a float if it is a finite JSON number, else ``None``."""
    if (type(value) is float or type(value) is int) and math.isfinite(value):
        return float(value)
    return None


def _fast_wire(data: dict[str, Any]) -> _Wire | None:
    """*data* as a :class:`_Wire` if it has exactly the shape :meth:`Protocol.dumps` writes.

    Checks the same types as the converter, in a fraction of its time;
    ``None`` for anything else, which then goes the converter's way (and
    gets its error messages).
    """
    if data.keys() != _WIRE_KEYS:
        return None
    id_, kind, target, type_ = data["id"], data["kind"], data["target"], data["type"]
    payload, reply_to, attempt = data["payload"], data["reply_to"], data["attempt"]
    trace_context = data["trace_context"]
    if not (
        type(id_) is str
        and type(kind) is str
        and type(target) is str
        and type(type_) is str
        and type(payload) is dict
        and (reply_to is None or type(reply_to) is str)
        and type(attempt) is int
        and type(trace_context) is dict
    ):
        return None
    for key, value in trace_context.items():
        if type(key) is not str or type(value) is not str:
            return None
    deadline = data["deadline"]
    if deadline is not None:
        deadline = _finite(deadline)
        if deadline is None:
            return None
    created_at = _finite(data["created_at"])
    if created_at is None:
        return None
    return _Wire(
        id_, kind, target, type_, payload, reply_to, deadline, attempt, trace_context, created_at
    )


#: Message types every Protocol knows: system messages and their replies.
_BUILTIN: tuple[tuple[type, str], ...] = (
    (Stop, "corral.Stop"),
    (Ping, "corral.Ping"),
    (Pong, "corral.Pong"),
    (GetStatus, "corral.GetStatus"),
    (ActorStatus, "corral.ActorStatus"),
    (CallInfo, "corral.CallInfo"),
)


class Protocol:
    """A registry of message types and the converter that turns envelopes into
    plain data (JSON types) and back.

    ::

        proto = corral.Protocol([Ask, Answer])
        data = proto.dumps(envelope)          # bytes for the wire
        same = proto.loads(data)              # an equal Envelope

    The payload's registered type name travels beside it, so the other side
    knows what to build; the system messages are always registered. Data that
    names an unknown type, misses a field, carries an extra one, or holds a
    value of the wrong JSON type is refused with :class:`ProtocolError`, whose
    message names every bad field path (``$.payload.items[0].x``); no values
    are coerced and nothing half-built is returned.

    Args:
        types: Message classes to register under their default names.
    """

    def __init__(self, types: Iterable[type] = ()) -> None:
        self._by_name: dict[str, type] = {}
        self._by_type: dict[type, str] = {}
        self._converter = _make_converter()
        for cls, name in _BUILTIN:
            self.register(cls, name=name)
        for cls in types:
            self.register(cls)

    def register(self, cls: T, *, name: str | None = None) -> T:
        """Register an attrs message class under *name* and return it (usable as a decorator).

        The default name is the one given to :func:`corral.message`, else
        ``module.QualName``. Registering the same class under the same name
        again is a no-op.

        Raises:
            TypeError: *cls* is not an attrs class.
            ValueError: The name or the class is registered differently already.
        """
        if not (isinstance(cls, type) and attrs.has(cls)):
            raise TypeError(f"only attrs classes can be registered as messages, got {cls!r}")
        if name is None:
            name = getattr(cls, "__corral_message_name__", None) or (
                f"{cls.__module__}.{cls.__qualname__}"
            )
        if not isinstance(name, str) or not name:
            raise ValueError(f"a message type name must be a non-empty str, got {name!r}")
        if self._by_name.get(name, cls) is not cls:
            raise ValueError(
                f"message type name {name!r} is registered already for {self._by_name[name]!r}"
            )
        if self._by_type.get(cls, name) != name:
            raise ValueError(f"{cls!r} is registered already as {self._by_type[cls]!r}")
        self._by_name[name] = cls
        self._by_type[cls] = name
        return cls  # type: ignore[return-value]  # attrs.has narrowed the TypeVar away

    def names(self) -> Mapping[str, type]:
        """Return the registered type names and their classes."""
        return dict(self._by_name)

    # --- plain data ----------------------------------------------------------------

    def unstructure(
        self, envelope: Envelope, *, trace_context: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Return *envelope* as a dict of JSON types.

        The envelope's own ``trace_context`` is written; for one without,
        *trace_context* is (the W3C headers of the span the envelope should
        continue: :func:`corral.telemetry.inject` puts the current span's on
        an envelope). The protocol never reads the ambient span itself.

        Raises:
            ProtocolError: The payload's type is not registered, or a value
                cannot be represented.
        """
        if not isinstance(envelope, Envelope):
            raise TypeError(f"expected an Envelope, got {type(envelope).__name__}")
        payload = envelope.payload
        name = self._by_type.get(type(payload))
        if name is None:
            raise ProtocolError(
                f"message type {type(payload).__qualname__} is not registered with this "
                "Protocol @ $.type"
            )
        try:
            body = self._converter.unstructure(payload)
        except Exception as exc:
            raise _translate(exc, "$.payload") from exc
        return {
            "id": str(envelope.id),
            "kind": envelope.kind.value,
            "target": envelope.target,
            "type": name,
            "payload": body,
            "reply_to": None if envelope.reply_to is None else str(envelope.reply_to),
            "deadline": envelope.deadline,
            "attempt": envelope.attempt,
            "trace_context": dict(envelope.trace_context or trace_context or {}),
            "created_at": envelope.created_at,
        }

    def structure(self, data: object) -> Envelope:
        """Build an envelope from plain data, checking every field.

        Raises:
            ProtocolError: The data is malformed; the message names the field path.
        """
        if not isinstance(data, dict):
            raise ProtocolError(f"expected an object, got {type(data).__name__} @ $")
        wire = _fast_wire(data)
        if wire is None:
            try:
                wire = self._converter.structure(data, _Wire)
            except Exception as exc:
                raise _translate(exc, "$") from exc
        try:
            envelope_id = uuid.UUID(wire.id)
        except ValueError:
            raise ProtocolError(f"expected a UUID, got {wire.id!r:.60} @ $.id") from None
        reply_to = None
        if wire.reply_to is not None:
            try:
                reply_to = uuid.UUID(wire.reply_to)
            except ValueError:
                raise ProtocolError(
                    f"expected a UUID, got {wire.reply_to!r:.60} @ $.reply_to"
                ) from None
        try:
            kind = Kind(wire.kind)
        except ValueError:
            kinds = ", ".join(k.value for k in Kind)
            raise ProtocolError(
                f"expected one of {kinds}, got {wire.kind!r:.40} @ $.kind"
            ) from None
        if not wire.target:
            raise ProtocolError("expected a non-empty actor name @ $.target")
        if wire.attempt < 1:
            raise ProtocolError(f"expected an attempt >= 1, got {wire.attempt} @ $.attempt")
        cls = self._by_name.get(wire.type)
        if cls is None:
            raise ProtocolError(
                f"unknown message type {wire.type!r:.80}; register it with this Protocol @ $.type"
            )
        try:
            payload: Any = self._converter.structure(wire.payload, cls)
        except Exception as exc:
            raise _translate(exc, "$.payload") from exc
        return Envelope(
            payload=payload,
            target=wire.target,
            kind=kind,
            id=envelope_id,
            reply_to=reply_to,
            deadline=wire.deadline,
            attempt=wire.attempt,
            trace_context=wire.trace_context or EMPTY_TRACE_CONTEXT,
            created_at=wire.created_at,
        )

    # --- reply values ----------------------------------------------------------------

    def unstructure_value(self, value: Any, *, check: bool = True) -> dict[str, Any]:
        """Return a reply *value* as ``{"type": name, "value": data}`` of JSON types.

        A registered attrs class travels with its name and is rebuilt by
        :meth:`structure_value`; JSON types (``None``, bools, numbers,
        strings, lists and dicts of them) travel as they are (``type``
        ``None``); anything else the converter can flatten (tuples, enums)
        arrives as its JSON form.

        With ``check=False``, whether the result has a JSON form is left to
        the caller, which encodes it anyway (and learns it then).

        Raises:
            ProtocolError: An attrs class that is not registered, or a value
                that has no JSON form.
        """
        name = self._by_type.get(type(value))
        if name is None and attrs.has(type(value)):
            raise ProtocolError(
                f"reply type {type(value).__qualname__} is not registered with this Protocol"
            )
        try:
            data = self._converter.unstructure(value)
            if check:
                json.dumps(data, allow_nan=False)
        except Exception as exc:
            raise ProtocolError(
                f"a {type(value).__qualname__} reply has no JSON form: {exc}"
            ) from exc
        return {"type": name, "value": data}

    def structure_value(self, data: object) -> Any:
        """Rebuild a reply value made by :meth:`unstructure_value`.

        Raises:
            ProtocolError: Malformed, or of a type that is not registered here.
        """
        if not isinstance(data, dict) or set(data) != {"type", "value"}:
            raise ProtocolError("expected an object with 'type' and 'value' @ $.ok")
        name, value = data["type"], data["value"]
        if name is None:
            return value
        cls = self._by_name.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ProtocolError(
                f"unknown reply type {name!r:.80}; register it with this Protocol "
                "(corral.Cluster(types=[...])) @ $.ok.type"
            )
        try:
            return self._converter.structure(value, cls)
        except Exception as exc:
            raise _translate(exc, "$.ok.value") from exc

    # --- JSON bytes ------------------------------------------------------------------

    def dumps(self, envelope: Envelope, *, trace_context: Mapping[str, str] | None = None) -> bytes:
        """Return *envelope* as compact UTF-8 JSON; ``loads`` gives back an equal envelope.

        *trace_context* as for :meth:`unstructure`.

        Raises:
            ProtocolError: As :meth:`unstructure`, or a value is not JSON (NaN, infinity).
        """
        data = self.unstructure(envelope, trace_context=trace_context)
        try:
            text = _ENCODER.encode(data)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"envelope is not representable as JSON: {exc} @ $") from exc
        return text.encode()

    def loads(self, data: bytes | str) -> Envelope:
        """Build an envelope from JSON text made by :meth:`dumps` (or a peer).

        Raises:
            ProtocolError: Not valid JSON, or malformed; the message names the field path.
        """
        try:
            obj = _DECODER.decode(data if isinstance(data, str) else data.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"not valid JSON: {exc} @ $") from exc
        return self.structure(obj)
