"""Structured output: a strict JSON schema from an attrs class, the reply parsed into it."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import attrs
import pytest

import corral
from corral import ChatRequest, InvalidResponse, ResponseFormat
from corral.testing import FakeLLMServer

from .openai_helpers import ask, canned, choice, completion, sent

pytestmark = pytest.mark.anyio


class Unit(enum.Enum):
    KG = "kg"
    PIECE = "piece"


@attrs.frozen
class Item:
    name: str
    price: float
    unit: Unit
    tags: tuple[str, ...] = ()


@corral.message(name="test.Order")
class Order:
    items: list[Item]
    status: Literal["open", "paid"]
    note: str | None = attrs.field(default=None, metadata={"description": "anything else"})
    count: int = 0
    urgent: bool = False


@attrs.frozen
class Node:
    label: str
    children: list[Node]


@attrs.frozen
class Loose:
    extra: dict[str, Any]


@attrs.frozen
class Pair:
    both: tuple[int, str]


ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number"},
        "unit": {"type": "string", "enum": ["kg", "piece"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "price", "unit", "tags"],
    "additionalProperties": False,
}
ORDER = {
    "items": [
        {"name": "flour", "price": 1.5, "unit": "kg", "tags": []},
        {"name": "eggs", "price": 3, "unit": "piece", "tags": ["fresh"]},
    ],
    "status": "open",
    "note": None,
    "count": 2,
    "urgent": False,
}


def test_the_schema_is_strict_with_every_field_required() -> None:
    """Fields, Optional, lists, enums, Literal, nested classes; all required, none other."""
    assert corral.json_schema(Order) == {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "status": {"type": "string", "enum": ["open", "paid"]},
            "note": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "anything else",
            },
            "count": {"type": "integer"},
            "urgent": {"type": "boolean"},
        },
        "required": ["items", "status", "note", "count", "urgent"],
        "additionalProperties": False,
        "$defs": {"Item": ITEM_SCHEMA},
    }


def test_a_class_that_contains_itself_refers_to_the_root() -> None:
    """Recursion is a $ref to the root ("#"), as OpenAI's strict mode allows."""
    schema = corral.json_schema(Node)
    assert schema["properties"]["children"] == {"type": "array", "items": {"$ref": "#"}}


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (Loose, r"Loose\.extra: strict JSON schemas have no objects with free keys"),
        (Pair, r"Pair\.both: a tuple of fixed length"),
        (int, "json_schema takes an attrs class"),
    ],
)
def test_types_without_a_strict_schema_are_refused_naming_the_field(
    model: type, match: str
) -> None:
    """A dict, a fixed-length tuple (or a non-attrs class) is a TypeError naming the field."""
    with pytest.raises(TypeError, match=match):
        corral.json_schema(model)


async def test_response_model_sends_a_strict_json_schema_and_parses_the_reply() -> None:
    """ChatRequest(response_model=cls) asks for the class's schema; reply.parsed is an instance."""
    reply, seen = await ask(
        canned(completion(choice(json.dumps(ORDER)))),
        ChatRequest(messages=[{"role": "user", "content": "my order"}], response_model=Order),
    )
    assert sent(seen)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Order", "schema": corral.json_schema(Order), "strict": True},
    }
    order = reply.parsed
    assert isinstance(order, Order)
    assert order.items[1] == Item("eggs", 3.0, Unit.PIECE, ("fresh",))
    assert reply.parse(Order) == order


async def test_a_reply_that_does_not_fit_fails_the_call_naming_the_field_path() -> None:
    """The model's JSON with a price as a string: InvalidResponse at $.items[2].price."""
    bad = {
        **ORDER,
        "items": [*ORDER["items"], {"name": "x", "price": "3", "unit": "kg", "tags": []}],
    }
    with pytest.raises(InvalidResponse, match=r"does not fit Order: .* @ \$\.items\[2\]\.price"):
        await ask(
            canned(completion(choice(json.dumps(bad)))),
            ChatRequest(messages=[], response_model=Order),
        )
    with pytest.raises(InvalidResponse, match="the reply is not JSON for Order"):
        await ask(
            canned(completion(choice('{"items": [', finish="length"))),
            ChatRequest(messages=[], response_model=Order),
        )


async def test_a_refusal_gives_no_parsed_value() -> None:
    """A model that refuses sends no JSON: parsed is None and the refusal is there."""
    reply, _ = await ask(
        canned(completion(choice(None, refusal="I can't."))),
        ChatRequest(messages=[], response_model=Order),
    )
    assert reply.parsed is None
    assert reply.refusal == "I can't."


async def test_structured_output_against_the_fake_server() -> None:
    """FakeLLMServer answers json_schema requests with JSON fitting the schema: it parses."""
    async with FakeLLMServer() as server, corral.Runtime() as rt:
        chat = await rt.spawn(
            lambda: corral.OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
            name="chat",
        )
        reply = await chat.ask(
            ChatRequest(messages=[{"role": "user", "content": "an order"}], response_model=Order),
            timeout=10,
        )
        async with chat.stream(
            ChatRequest(messages=[{"role": "user", "content": "a tree"}], response_model=Node),
            timeout=10,
        ) as chunks:
            streamed = [c async for c in chunks]
    assert isinstance(reply.parsed, Order)
    last = streamed[-1].reply
    assert last is not None and isinstance(last.parsed, Node)


def test_the_request_and_reply_travel_through_protocol_by_type_name() -> None:
    """The class travels as its type name; the schema with it; parsed works on the other side."""
    request = ChatRequest(messages=[], response_model=Order)
    assert request.response_model == "test.Order"
    assert request.response_format == ResponseFormat.from_type(Order)
    proto = corral.Protocol([ChatRequest, corral.ChatReply])
    back = proto.loads(proto.dumps(corral.Envelope(payload=request, target="chat"))).payload
    assert back == request
    reply = corral.ChatReply(
        (corral.Choice(0, corral.ChatMessage("assistant", json.dumps(ORDER))),),
        "m",
        response_model="test.Order",
    )
    envelope = corral.Envelope(payload=reply, target="caller", kind=corral.Kind.REPLY)
    assert isinstance(proto.loads(proto.dumps(envelope)).payload.parsed, Order)


def test_response_model_names_must_be_unique_and_known() -> None:
    """Another class under a taken name is refused; an unknown name without a schema too."""
    ChatRequest(messages=[], response_model=Order)  # known from here on

    @corral.message(name="test.Order")
    class Impostor:
        x: int

    with pytest.raises(ValueError, match=r"'test\.Order' is taken"):
        ChatRequest(messages=[], response_model=Impostor)
    with pytest.raises(ValueError, match=r"no response model 'nobody\.Knows' is known"):
        ChatRequest(messages=[], response_model="nobody.Knows")
    with pytest.raises(TypeError, match="response_model must be an attrs class"):
        ChatRequest(messages=[], response_model=dict)  # type: ignore[arg-type]


def test_a_tool_from_an_attrs_class_is_strict() -> None:
    """Tool.from_type takes its parameters from the class's strict schema."""
    tool = corral.Tool.from_type(Item, name="add_item", description="Add an item.")
    assert tool == corral.Tool(
        "add_item", description="Add an item.", parameters=ITEM_SCHEMA, strict=True
    )
