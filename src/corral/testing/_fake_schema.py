"""The minimal instance of a JSON schema: what the fake server's JSON replies and tool calls say.

An object has its required properties only; each value is the first
``const``/``enum``/``anyOf``/``oneOf`` choice (a value rather than null), or
the smallest value of its type the bounds allow: ``"fake"`` for a string
(padded to ``minLength``, or a sample of its ``format``), ``0`` for a number
(else the nearest bound, one step inside an exclusive one), ``false``, null,
and ``minItems`` items for an array. Local ``$ref``s (``#/$defs/...``) are
followed and ``allOf`` parts merged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["instance"]


def instance(schema: Any, root: Any = None, *, depth: int = 0) -> Any:
    """The minimal instance of the JSON schema *schema* (see the module's docstring).

    Raises:
        ValueError: A ``$ref`` that does not resolve, or nesting deeper than 64.
    """
    if root is None:
        root = schema
    if depth > 64:
        raise ValueError("the schema nests deeper than 64 levels (a required cycle?)")
    if not isinstance(schema, dict):
        return None  # `true`: anything goes
    if "$ref" in schema:
        return instance(_resolve(root, schema["$ref"]), root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            # A value, not null, where the schema allows both (Optional fields).
            chosen = next((o for o in options if o != {"type": "null"}), options[0])
            return instance(chosen, root, depth=depth + 1)
    if schema.get("allOf"):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            while isinstance(part, dict) and "$ref" in part:
                part = _resolve(root, part["$ref"])
            if isinstance(part, dict):
                both = {**part, **merged}
                if "properties" in part or "properties" in merged:
                    both["properties"] = {
                        **part.get("properties", {}),
                        **merged.get("properties", {}),
                    }
                if "required" in part or "required" in merged:
                    both["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged = both
        return instance(merged, root, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema or "required" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        else:
            kind = "string"
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: instance(properties.get(name, {}), root, depth=depth + 1)
            for name in schema.get("required", [])
        }
    if kind == "array":
        items = [instance(p, root, depth=depth + 1) for p in schema.get("prefixItems", [])]
        more = max(0, int(schema.get("minItems", 0)) - len(items))
        if more:
            item = instance(schema.get("items", {}), root, depth=depth + 1)
            items.extend([item] * more)
        return items
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string(schema)


def _resolve(root: Any, ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise ValueError(f"only local $refs resolve, got {ref!r}")
    node = root
    for token in ref[1:].split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(key)] if isinstance(node, list) else node[key]
        except (KeyError, IndexError, TypeError, ValueError):
            raise ValueError(f"$ref {ref!r} does not resolve") from None
    return node


_FORMATS: Final = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "fake@example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _string(schema: Mapping[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), "fake")
    low = int(schema.get("minLength", 0))
    if len(text) < low:
        text += "x" * (low - len(text))
    high = schema.get("maxLength")
    return text if high is None else text[: int(high)]


def _number(schema: Mapping[str, Any], *, integer: bool) -> int | float:
    # 0 if the bounds allow it, else the bound nearest to it (one step inside an exclusive one).
    step = 1 if integer else 0.5
    low = schema.get("minimum")
    if schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + step
    high = schema.get("maximum")
    if schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - step
    value: float = 0
    if low is not None and value < low:
        value = math.ceil(low) if integer else low
    elif high is not None and value > high:
        value = math.floor(high) if integer else high
    multiple = schema.get("multipleOf")
    if multiple:
        value = math.ceil(value / multiple) * multiple
    return int(value) if integer else float(value)
