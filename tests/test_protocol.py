"""The envelope and its plain-data form: round trips and refusals."""

from __future__ import annotations

import json
import uuid
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corral


@corral.message(name="test.Part")
class Part:
    text: str
    weight: float = 1.0
    tags: tuple[str, ...] = ()


@corral.message(name="test.Doc")
class Doc:
    title: str
    parts: list[Part]
    meta: dict[str, int] = attrs.field(factory=dict)
    cover: Part | None = None
    flag: bool = False
    pair: tuple[int, str] = (0, "")


@corral.message(name="test.Ask")
class Ask:
    question: str
    n: int


def proto() -> corral.Protocol:
    return corral.Protocol([Part, Doc, Ask])


text = st.text(max_size=20)
floats = st.floats(allow_nan=False, allow_infinity=False)
parts = st.builds(
    Part, text=text, weight=floats, tags=st.tuples() | st.lists(text, max_size=3).map(tuple)
)
docs = st.builds(
    Doc,
    title=text,
    parts=st.lists(parts, max_size=4),
    meta=st.dictionaries(text, st.integers(), max_size=3),
    cover=st.none() | parts,
    flag=st.booleans(),
    pair=st.tuples(st.integers(), text),
)
envelopes = st.builds(
    corral.Envelope,
    payload=docs,
    target=st.text(min_size=1, max_size=10),
    kind=st.sampled_from(list(corral.Kind)),
    id=st.uuids(version=4),
    reply_to=st.none() | st.uuids(),
    deadline=st.none() | st.floats(min_value=0, max_value=4e9),
    attempt=st.integers(min_value=1, max_value=10),
    trace_context=st.dictionaries(st.sampled_from(["traceparent", "tracestate"]), text),
    created_at=st.floats(min_value=0, max_value=4e9),
)


@settings(max_examples=200, deadline=None)
@given(envelopes)
def test_envelope_round_trips_through_json_bytes(env: corral.Envelope) -> None:
    """Any envelope of nested messages comes back equal, and its bytes come back identical."""
    p = proto()
    data = p.dumps(env)
    back = p.loads(data)
    assert back == env
    assert p.dumps(back) == data


@settings(max_examples=100, deadline=None)
@given(envelopes)
def test_plain_data_is_json_types_only(env: corral.Envelope) -> None:
    """unstructure gives dicts, lists, str, int, float, bool and None only."""

    def check(value: Any) -> None:
        if isinstance(value, dict):
            assert all(isinstance(k, str) for k in value)
            for v in value.values():
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)
        else:
            assert value is None or type(value) in (str, int, float, bool)

    data = proto().unstructure(env)
    check(json.loads(json.dumps(data)))
    assert proto().structure(data) == env


def _wire(**changes: Any) -> dict[str, Any]:
    env = corral.Envelope(
        payload=Doc(title="t", parts=[Part(text="a")]), target="docs", id=uuid.uuid4()
    )
    data = proto().unstructure(env)
    for key, value in changes.items():
        data[key] = value
    return data


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["payload"]["parts"][0].update(text=5), "$.payload.parts[0].text"),
        (lambda d: d["payload"]["parts"][0].update(weight="1.0"), "$.payload.parts[0].weight"),
        (lambda d: d["payload"].update(parts="abc"), "expected an array"),
        (lambda d: d["payload"].pop("title"), "required field missing @ $.payload.title"),
        (lambda d: d["payload"].update(extra=1), "extra fields found (extra) @ $.payload"),
        (lambda d: d["payload"].update(meta={"k": "1"}), "$.payload.meta['k']"),
        (lambda d: d["payload"].update(flag=1), "expected a boolean"),
        (lambda d: d["payload"].update(cover={"txt": "x"}), "$.payload.cover"),
        (lambda d: d["payload"].update(pair=[1, 2]), "$.payload.pair[1]"),
        (lambda d: d["payload"].update(pair=[1]), "array of 2 items, got 1 @ $.payload.pair"),
        (
            lambda d: d["payload"].update(pair=[1, "a", 3]),
            "array of 2 items, got 3 @ $.payload.pair",
        ),
        (lambda d: d.update(type="test.Nope"), "unknown message type 'test.Nope'"),
        (lambda d: d.update(id="not-a-uuid"), "@ $.id"),
        (lambda d: d.update(kind="shout"), "@ $.kind"),
        (lambda d: d.update(attempt=0), "@ $.attempt"),
        (lambda d: d.update(attempt=True), "$.attempt"),
        (lambda d: d.update(target=""), "@ $.target"),
        (lambda d: d.update(deadline="soon"), "$.deadline"),
        (lambda d: d.update(trace_context={"traceparent": 1}), "$.trace_context"),
        (lambda d: d.pop("payload"), "$.payload"),
        (lambda d: d.update(bogus=1), "extra fields found (bogus)"),
    ],
)
def test_malformed_data_is_refused_naming_the_field(mutate: Any, fragment: str) -> None:
    """Wrong types, missing or extra fields and unknown names raise ProtocolError with the path."""
    data = _wire()
    mutate(data)
    with pytest.raises(corral.ProtocolError) as info:
        proto().structure(data)
    assert fragment in str(info.value)


def test_no_coercion_of_strings_to_numbers() -> None:
    """'5' is not an int: a peer's type bug is reported, not papered over."""
    env = corral.Envelope(payload=Ask(question="q", n=5), target="x")
    data = proto().unstructure(env)
    data["payload"]["n"] = "5"
    with pytest.raises(
        corral.ProtocolError, match=r"expected an integer, got str .* @ \$\.payload\.n"
    ):
        proto().structure(data)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[]", b'"x"', b"\xff\xfe", b'{"id": NaN}'],
)
def test_bad_bytes_are_refused(raw: bytes) -> None:
    """Invalid JSON, a non-object and NaN are refused with ProtocolError."""
    with pytest.raises(corral.ProtocolError):
        proto().loads(raw)


def test_unregistered_payload_cannot_be_dumped() -> None:
    """Dumping a message type the protocol does not know names the type."""

    @attrs.frozen
    class Secret:
        x: int

    env = corral.Envelope(payload=Secret(1), target="x")
    with pytest.raises(corral.ProtocolError, match="Secret is not registered"):
        proto().dumps(env)


def test_non_finite_floats_cannot_be_dumped() -> None:
    """NaN is not JSON: dumps refuses rather than writing a non-standard token."""
    env = corral.Envelope(payload=Part(text="a", weight=float("nan")), target="x")
    with pytest.raises(corral.ProtocolError, match="not representable"):
        proto().dumps(env)


def test_registry_refuses_conflicts_and_non_attrs() -> None:
    """A name or class registered twice differently, or a non-attrs class, is refused."""
    p = proto()
    p.register(Part)  # same class, same name: fine
    with pytest.raises(ValueError, match="registered already"):
        p.register(Ask, name="test.Part")
    with pytest.raises(ValueError, match="registered already as"):
        p.register(Part, name="other.Part")
    with pytest.raises(TypeError, match="only attrs classes"):
        p.register(int)
    assert p.names()["test.Part"] is Part


def test_default_name_is_module_and_qualname() -> None:
    """Without corral.message(name=...), the wire name is module.QualName."""

    @attrs.frozen
    class Local:
        x: int

    p = corral.Protocol([Local])
    data = p.unstructure(corral.Envelope(payload=Local(1), target="t"))
    assert data["type"] == f"{__name__}.{Local.__qualname__}"


def test_system_messages_are_always_registered() -> None:
    """Stop, Ping, Pong and GetStatus travel in the same envelope without registration."""
    p = corral.Protocol()
    for payload in (
        corral.Stop(reason="bye"),
        corral.Ping(),
        corral.Pong(name="a"),
        corral.GetStatus(),
    ):
        env = corral.Envelope(payload=payload, target="a", kind=corral.Kind.SYSTEM)
        assert p.loads(p.dumps(env)) == env


def test_reply_envelope_correlates_with_request() -> None:
    """Envelope.reply keeps the deadline and trace context and points back at the request."""
    req = corral.Envelope(
        payload=Ask(question="q", n=1),
        target="x",
        deadline=123.0,
        trace_context={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    )
    rep = req.reply(Part(text="answer"))
    assert rep.kind is corral.Kind.REPLY
    assert rep.reply_to == req.id
    assert rep.deadline == req.deadline
    assert rep.trace_context == req.trace_context
    assert rep.id != req.id


def test_messages_are_frozen_by_default() -> None:
    """corral.message makes frozen attrs classes unless told otherwise."""
    msg = Ask(question="q", n=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        msg.n = 2  # type: ignore[misc]

    @corral.message(frozen=False)
    class Mutable:
        x: int

    m = Mutable(1)
    m.x = 2
    assert m.x == 2


def test_new_ids_are_version_4_uuids() -> None:
    """Envelope ids are well-formed, distinct RFC 4122 version 4 UUIDs."""
    ids = {corral.Envelope(payload=Ask(question="", n=0), target="x").id for _ in range(1000)}
    assert len(ids) == 1000
    for i in ids:
        assert i.version == 4
        assert i.variant == uuid.RFC_4122
        assert uuid.UUID(str(i)) == i
