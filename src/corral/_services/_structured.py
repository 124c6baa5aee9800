"""Structured output: a strict JSON schema from an attrs class, and a reply parsed into it.

The schema is the one OpenAI's strict mode accepts: every object lists all
its properties as required and allows no others (``additionalProperties:
false``); an optional field is a union with ``null``; nested attrs classes
are ``$defs`` referenced with ``$ref`` (so a class may contain itself). The
reply is parsed with corral's strict converter (the one :class:`corral.Protocol`
uses): nothing is coerced, extra keys are refused, and a misfit names its
field path.

Classes travel between processes by name (a class object cannot be data):
the name :func:`corral.message` gave the class, else ``module.QualName``.
A process knows the classes it has been given.
"""

from __future__ import annotations

import enum
import json
import re
import threading
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeVar, get_args, get_origin

import attrs

from .._protocol import _make_converter, _translate
from ._exceptions import InvalidResponse

__all__ = ["json_schema", "known_class", "model_class", "model_name", "parse", "schema_name"]

T = TypeVar("T")

_PRIMITIVES: Final[Mapping[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}
_ARRAYS: Final = (list, tuple, Sequence, set, frozenset)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")

# Name -> class of every response model this process has been given.
_models: dict[str, type] = {}
_models_lock = threading.Lock()
# The converter Protocol uses: strict JSON types, extra keys refused.
_converter = _make_converter()


def _name_of(cls: type) -> str:
    name = getattr(cls, "__corral_message_name__", None)
    return name if isinstance(name, str) and name else f"{cls.__module__}.{cls.__qualname__}"


def model_name(value: type | str | None) -> str | None:
    """The type name of a response model class (registering the class), or a name as given.

    Raises:
        TypeError: *value* is neither an attrs class, a str nor ``None``.
        ValueError: Another class is registered under the same name.
    """
    if value is None or isinstance(value, str):
        return value
    if not (isinstance(value, type) and attrs.has(value)):
        raise TypeError(f"response_model must be an attrs class, got {value!r}")
    name = _name_of(value)
    with _models_lock:
        known = _models.setdefault(name, value)
    if known is not value:
        raise ValueError(
            f"response model name {name!r} is taken by {known!r} already; give "
            f"{value!r} another name with @corral.message(name=...)"
        )
    return name


def model_class(name: str) -> type:
    """The response model class registered under *name*.

    Raises:
        ValueError: No class of that name was given in this process.
    """
    try:
        return _models[name]
    except KeyError:
        raise ValueError(
            f"no response model {name!r} is known in this process: give the class itself "
            "(ChatRequest(response_model=TheClass)) before naming it by its name"
        ) from None


def known_class(name: str) -> type | None:
    """The response model class registered under *name*, or ``None``."""
    return _models.get(name)


def schema_name(model: type) -> str:
    """A name for *model*'s schema that OpenAI takes (letters, digits, ``_`` and ``-``)."""
    return _NAME_CHARS.sub("_", model.__name__)[:64] or "Model"


class _Builder:
    """Builds one schema: the root object, and the ``$defs`` of the classes inside it."""

    def __init__(self, root: type) -> None:
        self.root = root
        self.defs: dict[str, dict[str, Any]] = {}
        self.refs: dict[type, str] = {root: "#"}

    def object(self, cls: type, where: str) -> dict[str, Any]:
        try:
            hints = typing.get_type_hints(cls)
        except NameError as exc:
            raise TypeError(
                f"{where}: the annotations of {cls.__qualname__} cannot be resolved ({exc}); "
                "define the class at module level"
            ) from exc
        properties: dict[str, Any] = {}
        for field in attrs.fields(cls):
            if not field.init:
                continue
            schema = self.schema(hints.get(field.name, field.type), f"{where}.{field.name}")
            description = field.metadata.get("description")
            if isinstance(description, str):
                schema = {**schema, "description": description}
            properties[field.name] = schema
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    def ref(self, cls: type, where: str) -> dict[str, Any]:
        if cls not in self.refs:
            name = schema_name(cls)
            while name in self.defs:
                name += "_"
            self.refs[cls] = f"#/$defs/{name}"
            self.defs[name] = {}  # taken now: a class that contains itself refers here
            self.defs[name] = self.object(cls, where)
        return {"$ref": self.refs[cls]}

    def schema(self, tp: Any, where: str) -> dict[str, Any]:
        if tp is Any or tp is object:
            raise TypeError(f"{where}: Any has no strict JSON schema; give the field a type")
        if tp is type(None) or tp is None:
            return {"type": "null"}
        if isinstance(tp, type) and tp in _PRIMITIVES:
            return {"type": _PRIMITIVES[tp]}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return _enum([member.value for member in tp], where)
        if isinstance(tp, type) and attrs.has(tp):
            return self.ref(tp, where)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return _enum(list(args), where)
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.schema(arg, where) for arg in args]}
        if origin in _ARRAYS or (isinstance(origin, type) and issubclass(origin, Sequence)):
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                raise TypeError(
                    f"{where}: a tuple of fixed length has no strict JSON schema; "
                    "use tuple[X, ...] or an attrs class"
                )
            item = args[0] if args else Any
            return {"type": "array", "items": self.schema(item, f"{where}[]")}
        if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
            raise TypeError(
                f"{where}: strict JSON schemas have no objects with free keys; "
                "use an attrs class (or a list of them)"
            )
        raise TypeError(f"{where}: no JSON schema for {tp!r}")


def _enum(values: list[Any], where: str) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    if not values or not kinds <= {str, int, float, bool, type(None)}:
        raise TypeError(f"{where}: enum values must be strings or numbers, got {values!r}")
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in _PRIMITIVES:
            return {"type": _PRIMITIVES[kind], "enum": values}
    return {"enum": values}


def json_schema(model: type) -> dict[str, Any]:
    """The strict JSON schema of the attrs class *model*, as OpenAI's structured outputs take it.

    Fields of type ``str``, ``int``, ``float``, ``bool``, ``None``,
    ``Optional``/unions, ``list``/``tuple[X, ...]``/``Sequence``, enums
    (their values), ``Literal`` and nested attrs classes; every field is
    required and no other is allowed (strict mode), an optional one is a
    union with ``null``. A field's ``metadata={"description": ...}``
    becomes its description. Defaults are not part of the schema: the model
    writes every field.

    Raises:
        TypeError: *model* is not an attrs class, or a field has a type
            strict JSON schemas cannot express (``Any``, a ``dict``, a
            fixed-length tuple); the message names the field.
    """
    if not (isinstance(model, type) and attrs.has(model)):
        raise TypeError(f"json_schema takes an attrs class, got {model!r}")
    builder = _Builder(model)
    schema = builder.object(model, model.__qualname__)
    if builder.defs:
        schema["$defs"] = builder.defs
    return schema


def parse(model: type[T], text: str) -> T:
    """*text* (JSON) parsed into the attrs class *model*, as strictly as :class:`corral.Protocol`.

    Raises:
        InvalidResponse: *text* is not JSON, or does not fit *model*; the
            message names each bad field path (``$.items[2].price``).
    """
    # The messages quote no part of the reply, and chain no cause that does
    # (hence `from None`): a model's output may say anything, and errors end
    # up in logs and in spans' exception events.
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidResponse(
            f"the reply is not JSON for {model.__qualname__}: {exc} ({len(text)} characters)"
        ) from None
    try:
        value: T = _converter.structure(data, model)
    except Exception as exc:
        error = _translate(exc, "$", values=False)
        raise InvalidResponse(f"the reply does not fit {model.__qualname__}: {error}") from None
    return value
