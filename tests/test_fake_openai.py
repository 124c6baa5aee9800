"""FakeLLMServer speaks OpenAI's protocol: the official openai client accepts all it sends.

Each test runs the official client (``openai.OpenAI``, and ``openai.AsyncOpenAI``
once) against a running server, with ``max_retries=0`` so that every reply
and error is the server's own. Where the client is lenient (it accepts a reply
with fields missing), the raw JSON is checked too.
"""

from __future__ import annotations

import base64
import datetime
import enum
import json
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import httpx
import openai
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.testing import FakeLLMServer, Faults
from corral.testing._fake_schema import instance

KEY = "sk-fake-test"
HELLO: Any = [{"role": "user", "content": "hello there"}]


@contextmanager
def serving(**options: Any) -> Iterator[tuple[FakeLLMServer, openai.OpenAI]]:
    """A fake server with *options*, and the official client pointed at it."""
    with FakeLLMServer(**options) as server:
        with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as client:
            yield server, client


def completions(client: openai.OpenAI) -> Any:
    """Where the client keeps parse() and stream(): chat.completions since 1.92, beta before."""
    if hasattr(client.chat.completions, "parse"):
        return client.chat.completions
    return client.beta.chat.completions  # pragma: no cover - openai < 1.92


def post(client: openai.OpenAI, path: str, body: dict[str, Any]) -> Any:
    """POST *body* as it is (no client-side checks), returning the JSON reply."""
    return client.post(path, body=body, cast_to=object)


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "error", "status", "kind", "code", "param"),
    [
        ("429", openai.RateLimitError, 429, "requests", "rate_limit_exceeded", None),
        ("quota", openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota", None),
        ("401", openai.AuthenticationError, 401, "invalid_request_error", "invalid_api_key", None),
        ("500", openai.InternalServerError, 500, "server_error", None, None),
        ("503", openai.InternalServerError, 503, "server_error", None, None),
        (
            "context_length",
            openai.BadRequestError,
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    ],
)
def test_each_error_outcome_is_openais_body_and_the_clients_exception(
    outcome: str,
    error: type[openai.APIStatusError],
    status: int,
    kind: str,
    code: str | None,
    param: str | None,
) -> None:
    """A scripted error is OpenAI's {"error": {message, type, param, code}} and its class."""
    with serving(script=[outcome]) as (_, client):
        with pytest.raises(error) as info:
            client.chat.completions.create(model="m", messages=HELLO)
    assert info.value.status_code == status
    assert (info.value.type, info.value.code, info.value.param) == (kind, code, param)
    assert isinstance(info.value.body, dict)
    assert set(info.value.body) == {"message", "type", "param", "code"}
    assert info.value.body["message"]
    assert info.value.response.headers["content-type"] == "application/json"
    quota_or_error = outcome != "429"
    assert ("retry-after" not in info.value.response.headers) is quota_or_error


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/chat/completions", {"model": "m"}, "messages", "missing_required_parameter"),
        ("/chat/completions", {"model": "m", "messages": []}, "messages", "empty_array"),
        ("/chat/completions", {"messages": HELLO}, None, None),
        (
            "/chat/completions",
            {"model": "m", "messages": HELLO, "n": 0},
            "n",
            "integer_below_min_value",
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": HELLO, "max_tokens": "9"},
            "max_tokens",
            "invalid_type",
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": [{"role": "robot", "content": "hi"}]},
            "messages.[0].role",
            "invalid_value",
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": [*HELLO, {"role": "tool", "content": "21"}]},
            "messages.[1].tool_call_id",
            "missing_required_parameter",
        ),
        (
            "/chat/completions",
            {
                "model": "m",
                "messages": [*HELLO, {"role": "tool", "content": "21", "tool_call_id": "c"}],
            },
            "messages.[1].role",
            None,
        ),
        (
            "/chat/completions",
            {
                "model": "m",
                "messages": [
                    *HELLO,
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "user", "content": "and?"},
                ],
            },
            "messages.[2].role",
            None,
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": HELLO, "response_format": {"type": "json_object"}},
            "messages",
            None,
        ),
        (
            "/chat/completions",
            {
                "model": "m",
                "messages": HELLO,
                "response_format": {"type": "json_schema", "json_schema": {"schema": {}}},
            },
            "response_format.json_schema.name",
            "missing_required_parameter",
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": HELLO, "response_format": {"type": "yaml"}},
            "response_format.type",
            "invalid_value",
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": HELLO, "tool_choice": "auto"},
            "tool_choice",
            None,
        ),
        (
            "/chat/completions",
            {"model": "o3-mini", "messages": HELLO, "max_tokens": 9},
            "max_tokens",
            "unsupported_parameter",
        ),
        (
            "/chat/completions",
            {"model": "m", "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]},
            "stop",
            "array_above_max_length",
        ),
        ("/embeddings", {"model": "e"}, "input", "missing_required_parameter"),
        ("/embeddings", {"model": "e", "input": []}, "input", None),
        (
            "/embeddings",
            {"model": "e", "input": "a", "encoding_format": "hex"},
            "encoding_format",
            "invalid_value",
        ),
        (
            "/embeddings",
            {"model": "e", "input": "a", "dimensions": 0},
            "dimensions",
            "integer_below_min_value",
        ),
    ],
)
def test_a_request_openai_refuses_is_a_400_naming_the_parameter(
    path: str, body: dict[str, Any], param: str | None, code: str | None
) -> None:
    """What OpenAI answers 400 to, the fake does too: invalid_request_error with param and code."""
    with serving() as (server, client):
        with pytest.raises(openai.BadRequestError) as info:
            post(client, path, body)
        assert server.stats().by_status == {400: 1}
    assert info.value.type == "invalid_request_error"
    assert (info.value.param, info.value.code) == (param, code)
    assert isinstance(info.value.body, dict) and info.value.body["message"]


def test_unknown_paths_and_models_are_openais_404s() -> None:
    """An unknown URL, or a model outside models=, is a 404 NotFoundError in OpenAI's words."""
    with serving(models=["m"]) as (_, client):
        with pytest.raises(openai.NotFoundError) as url:
            post(client, "/completions/chat", {"model": "m"})
        with pytest.raises(openai.NotFoundError) as model:
            client.chat.completions.create(model="gpt-9", messages=HELLO)
        with pytest.raises(openai.NotFoundError) as embedding_model:
            client.embeddings.create(model="gpt-9", input="hi")
    assert url.value.body == {
        "message": "Invalid URL (POST /v1/completions/chat)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    for refused in (model.value, embedding_model.value):
        assert refused.code == "model_not_found"
        assert "gpt-9" in refused.message


def test_a_429_says_its_wait_in_whole_seconds_and_in_milliseconds() -> None:
    """Retry-After is whole seconds (rounded up), retry-after-ms beside it; the bucket's too."""
    with serving(script=["429"], faults=Faults(retry_after=0.25)) as (_, client):
        with pytest.raises(openai.RateLimitError) as fault:
            client.models.list()
    assert fault.value.response.headers["retry-after"] == "1"
    assert fault.value.response.headers["retry-after-ms"] == "250"
    with serving(rate_limit=0.5) as (_, client):  # a token every 2 s, a bucket of 1
        client.models.list()
        with pytest.raises(openai.RateLimitError) as limited:
            client.models.list()
    headers = limited.value.response.headers
    assert headers["retry-after"] == "2"
    assert 1000 < int(headers["retry-after-ms"]) <= 2000
    assert (limited.value.type, limited.value.code) == ("requests", "rate_limit_exceeded")


def test_the_api_key_is_checked_before_the_rate_limit() -> None:
    """An unauthenticated flood meets 401 invalid_api_key, never 429, and spends no budget."""
    with serving(api_key=KEY, rate_limit=0.01) as (server, client):
        stranger = client.with_options(api_key="sk-wrong")
        for _ in range(5):
            with pytest.raises(openai.AuthenticationError) as info:
                stranger.models.list()
            assert info.value.code == "invalid_api_key"
        client.models.list()  # the bucket's one token is still there
        with pytest.raises(openai.RateLimitError):
            client.models.list()
        assert server.stats().by_status == {401: 5, 200: 1, 429: 1}


# --- chat replies ----------------------------------------------------------------------


def test_a_chat_reply_has_every_field_openai_sends() -> None:
    """id (unique), object, created, model, system_fingerprint, choices, usage with details."""
    with serving() as (_, client):
        before = int(time.time())
        raw = client.chat.completions.with_raw_response.create(
            model="m",
            messages=HELLO,
        )
        again = client.chat.completions.create(model="m", messages=HELLO)
        after = int(time.time())
    body = raw.http_response.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    }
    (choice,) = body["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["message"] == {
        "role": "assistant",
        "content": "fake reply to: hello there",
        "refusal": None,
        "annotations": [],
    }
    assert set(body["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }
    reply = raw.parse()
    assert reply.id.startswith("chatcmpl-") and again.id.startswith("chatcmpl-")
    assert reply.id != again.id
    assert reply.object == "chat.completion"
    assert isinstance(body["created"], int) and before <= reply.created <= after
    assert reply.model == "m"
    assert reply.system_fingerprint
    assert choice["logprobs"] is None and choice["finish_reason"] == "stop"
    usage = reply.usage
    assert usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_n_choices_a_token_limit_and_stop_sequences() -> None:
    """n gives n choices; max(_completion)_tokens cuts with "length"; stop cuts before it."""
    with serving() as (_, client):
        three = client.chat.completions.create(model="m", messages=HELLO, n=3)
        short = client.chat.completions.create(model="m", messages=HELLO, n=2, max_tokens=2)
        newer = client.chat.completions.create(
            model="o3-mini",
            messages=HELLO,
            max_completion_tokens=3,
        )
        stopped = client.chat.completions.create(model="m", messages=HELLO, stop=["xyz", " to:"])
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert [c.message.content for c in three.choices] == [
        "fake reply to: hello there",
        "fake reply 2 to: hello there",
        "fake reply 3 to: hello there",
    ]
    assert [(c.message.content, c.finish_reason) for c in short.choices] == [
        ("fake rep", "length"),
        ("fake rep", "length"),
    ]
    assert short.usage is not None and short.usage.completion_tokens == 4
    assert (newer.choices[0].message.content, newer.choices[0].finish_reason) == (
        "fake reply t",
        "length",
    )
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (
        "fake reply",
        "stop",
    )


def test_a_scripted_refusal_sets_refusal_and_no_content() -> None:
    """script=["refusal"]: content null, refusal set, whole and streamed."""
    with serving(script=["refusal", "refusal"]) as (_, client):
        whole = client.chat.completions.create(model="m", messages=HELLO)
        chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True))
    message = whole.choices[0].message
    assert message.content is None and message.refusal
    streamed = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert streamed == message.refusal
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)


def test_logprobs_come_when_asked_one_entry_per_word() -> None:
    """logprobs=True, top_logprobs=k: each piece of the content with k alternatives."""
    with serving() as (_, client):
        reply = client.chat.completions.create(
            model="m",
            messages=HELLO,
            logprobs=True,
            top_logprobs=2,
        )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == reply.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob < 0 for t in logprobs.content)


# --- streams ---------------------------------------------------------------------------


def sse(server: FakeLLMServer, body: dict[str, Any]) -> list[str]:
    """The data: lines of a streamed reply, as sent."""
    reply = httpx.post(f"{server.base_url}/chat/completions", json={**body, "stream": True})
    assert reply.headers["content-type"] == "text/event-stream"
    return [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]


def test_a_stream_has_one_id_the_role_first_the_finish_last_then_done() -> None:
    """Chunks share the reply's id, created and model; the role first; finish; then [DONE]."""
    with serving() as (server, client):
        whole = client.chat.completions.create(model="m", messages=HELLO)
        chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True))
        raw = sse(server, {"model": "m", "messages": HELLO})
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].id != whole.id
    assert {(c.object, c.created, c.model) for c in chunks} == {
        ("chat.completion.chunk", chunks[0].created, "m")
    }
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks)
        == whole.choices[0].message.content
    )
    assert all(c.usage is None for c in chunks)
    assert raw[-1] == "[DONE]"
    assert all("usage" not in json.loads(data) for data in raw[:-1])


def test_include_usage_adds_the_usage_chunk_before_done() -> None:
    """stream_options.include_usage: every chunk has usage null, then choices [] with usage."""
    with serving() as (server, client):
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=HELLO,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        raw = sse(
            server, {"model": "m", "messages": HELLO, "stream_options": {"include_usage": True}}
        )
    *replies, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0
    assert all(c.usage is None and c.choices for c in replies)
    assert raw[-1] == "[DONE]"
    assert all(json.loads(data)["usage"] is None for data in raw[:-2])


def test_n_streamed_choices_interleave_by_index() -> None:
    """A stream of n choices sends each choice's chunks by index, each with its finish."""
    with serving() as (_, client):
        chunks = list(client.chat.completions.create(model="m", messages=HELLO, n=2, stream=True))
    texts = ["", ""]
    finishes: list[str | None] = [None, None]
    for chunk in chunks:
        (choice,) = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert texts == ["fake reply to: hello there", "fake reply 2 to: hello there"]
    assert finishes == ["stop", "stop"]


def test_a_scripted_error_mid_stream_raises_in_the_client_after_its_chunks() -> None:
    """error_200 streamed: N chunks, then data: {"error": ...}; the client raises APIError."""
    with serving(script=["error_200", "error_200:1"]) as (_, client):
        got: list[str] = []
        with pytest.raises(openai.APIError) as info:
            for chunk in client.chat.completions.create(model="m", messages=HELLO, stream=True):
                got.append(chunk.choices[0].delta.content or "")
        assert "".join(got) == "fake reply"  # the role's chunk, then two words
        assert info.value.type == "server_error"
        got.clear()
        with pytest.raises(openai.APIError):
            for chunk in client.chat.completions.create(model="m", messages=HELLO, stream=True):
                got.append(chunk.choices[0].delta.content or "")
        assert got == [""]


def test_error_200_whole_is_a_200_whose_body_is_an_error() -> None:
    """error_200 unstreamed: a 200 carrying {"error": {...}} instead of a reply."""
    with serving(script=["error_200"]) as (server, _):
        reply = httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "m", "messages": HELLO}
        )
    assert reply.status_code == 200
    assert set(reply.json()) == {"error"}
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


def test_a_cut_stream_ends_with_neither_a_finish_reason_nor_done() -> None:
    """cut:N streamed: N chunks and a proper end of body, no finish reason, no [DONE]."""
    with serving(script=["cut:4", "cut"]) as (server, client):
        raw = sse(server, {"model": "m", "messages": HELLO})
        chunks = list(client.chat.completions.create(model="m", messages=HELLO, stream=True))
    assert len(raw) == 4
    assert all(json.loads(data)["choices"][0]["finish_reason"] is None for data in raw)
    assert len(chunks) == 3 and all(c.choices[0].finish_reason is None for c in chunks)


def test_a_cut_whole_reply_closes_the_connection_halfway_through_the_body() -> None:
    """cut unstreamed: the Content-Length is the whole body's, half of it comes, then EOF."""
    with serving(script=["cut"]) as (_, client):
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=HELLO)


# --- tools -----------------------------------------------------------------------------

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
                "note": {"type": "string"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
TIME: Any = {"type": "function", "function": {"name": "time"}}


def test_a_tool_loop_runs_with_no_script() -> None:
    """Tools offered: the reply calls the first; after the tool's result, it answers in text."""
    question: Any = [{"role": "user", "content": "Weather in Paris?"}]
    with serving() as (_, client):
        asked = client.chat.completions.create(model="m", messages=question, tools=[WEATHER, TIME])
        (choice,) = asked.choices
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.id.startswith("call_") and call.type == "function"
        assert call.function.name == "weather"
        arguments = json.loads(call.function.arguments)
        assert arguments == {"city": "fake", "unit": "celsius", "days": 1}
        answered = [
            *question,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"},
        ]
        final = client.chat.completions.create(model="m", messages=answered, tools=[WEATHER, TIME])
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "fake reply to: 21 degrees"
    assert final.choices[0].message.tool_calls is None


def test_tool_choice_and_parallel_tool_calls_pick_the_tools_called() -> None:
    """tool_choice names the tool or "none"; parallel_tool_calls=True calls each tool."""
    with serving() as (_, client):

        def called(**options: Any) -> list[str]:
            reply = client.chat.completions.create(
                model="m", messages=HELLO, tools=[WEATHER, TIME], **options
            )
            return [c.function.name for c in reply.choices[0].message.tool_calls or []]

        assert called(tool_choice={"type": "function", "function": {"name": "time"}}) == ["time"]
        assert called(tool_choice="none") == []
        assert called(tool_choice="required") == ["weather"]
        assert called(parallel_tool_calls=True) == ["weather", "time"]
        with pytest.raises(openai.BadRequestError) as info:
            called(tool_choice={"type": "function", "function": {"name": "nope"}})
        assert info.value.param == "tool_choice"


def test_streamed_tool_calls_come_in_deltas_by_index() -> None:
    """Each call's first delta has its index, id and name; arguments follow in pieces."""
    with serving() as (_, client):
        whole = client.chat.completions.create(
            model="m", messages=HELLO, tools=[WEATHER, TIME], parallel_tool_calls=True
        )
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=HELLO,
                tools=[WEATHER, TIME],
                parallel_tool_calls=True,
                stream=True,
            )
        )
        with completions(client).stream(model="m", messages=HELLO, tools=[WEATHER]) as stream:
            for _ in stream:
                pass
            assembled = stream.get_final_completion()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.function is not None
            if delta.index not in calls:
                assert delta.id and delta.function.name and delta.type == "function"
                calls[delta.index] = {"name": delta.function.name, "arguments": ""}
            else:
                assert delta.id is None and delta.function.name is None
            calls[delta.index]["arguments"] += delta.function.arguments or ""
    expected: Any = whole.choices[0].message.tool_calls or []
    assert [calls[i] for i in sorted(calls)] == [
        {"name": c.function.name, "arguments": c.function.arguments} for c in expected
    ]
    assert sum(len(c.choices[0].delta.tool_calls or []) for c in chunks) > len(calls)  # in pieces
    (call,) = assembled.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "fake", "unit": "celsius", "days": 1}


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(pydantic.BaseModel):
    city: str = pydantic.Field(min_length=6)
    country: str | None


class Forecast(pydantic.BaseModel):
    place: Place
    unit: Unit
    days: int = pydantic.Field(gt=2)
    low: float = pydantic.Field(ge=-5.5, le=-1)
    kind: Literal["daily", "hourly"]
    notes: list[str]
    stations: list[Place] = pydantic.Field(min_length=2)
    sunny: bool


def test_strict_function_tools_get_arguments_their_schema_accepts() -> None:
    """pydantic_function_tool (strict, $defs, enums, bounds): the client parses the arguments."""
    with serving() as (_, client):
        reply = completions(client).parse(
            model="m", messages=HELLO, tools=[openai.pydantic_function_tool(Forecast)]
        )
    (call,) = reply.choices[0].message.tool_calls
    parsed = call.function.parsed_arguments
    assert isinstance(parsed, Forecast)
    assert parsed.unit is Unit.CELSIUS and parsed.days == 3 and parsed.low == -1
    assert len(parsed.stations) == 2 and len(parsed.place.city) >= 6


# --- JSON replies ----------------------------------------------------------------------


def test_json_object_replies_are_a_json_object() -> None:
    """response_format json_object (with "JSON" in the messages): content is a JSON object."""
    with serving() as (_, client):
        reply = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "Answer in JSON: hi"}],
            response_format={"type": "json_object"},
        )
    assert json.loads(reply.choices[0].message.content or "") == {
        "reply": "fake reply to: Answer in JSON: hi"
    }


def test_json_schema_replies_parse_into_the_schemas_model() -> None:
    """response_format from a pydantic model (strict json_schema): the client parses it."""
    with serving() as (_, client):
        reply = completions(client).parse(model="m", messages=HELLO, response_format=Forecast)
        cut = client.chat.completions.create(
            model="m",
            messages=HELLO,
            max_tokens=5,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "f", "schema": Forecast.model_json_schema()},
            },
        )
    forecast = reply.choices[0].message.parsed
    assert isinstance(forecast, Forecast)
    assert forecast.kind == "daily" and forecast.sunny is False and forecast.notes == []
    assert forecast.place.country is not None  # a value rather than null where both fit
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].message.content == reply.choices[0].message.content[:20]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "format": "date-time"}, "2024-01-01T00:00:00Z"),
        ({"type": "string", "minLength": 6, "maxLength": 7}, "fakexx"),
        ({"type": "string", "maxLength": 2}, "fa"),
        ({"type": "integer", "exclusiveMaximum": -3}, -4),
        ({"type": "integer", "minimum": 7, "multipleOf": 5}, 10),
        ({"type": "number", "exclusiveMinimum": 1.5}, 2.0),
        ({"type": ["null", "integer"]}, 0),
        ({"const": {"a": 1}}, {"a": 1}),
        ({"oneOf": [{"type": "null"}, {"type": "boolean"}]}, False),
        ({"type": "array", "prefixItems": [{"type": "integer"}, {"const": "x"}]}, [0, "x"]),
        ({"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2}, [1, 1]),
        ({"required": ["a"], "properties": {"a": {"enum": [3, 4]}, "b": {}}}, {"a": 3}),
        (
            {
                "allOf": [{"$ref": "#/definitions/Base"}, {"required": ["b"]}],
                "properties": {"b": {"type": "boolean"}},
                "definitions": {
                    "Base": {
                        "type": "object",
                        "properties": {"a": {"type": "integer"}},
                        "required": ["a"],
                    }
                },
            },
            {"a": 0, "b": False},
        ),
        (
            {
                "$ref": "#/$defs/Tree",
                "$defs": {
                    "Tree": {
                        "type": "object",
                        "properties": {
                            "children": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}
                        },
                        "required": ["children"],
                    }
                },
            },
            {"children": []},
        ),
    ],
)
def test_the_minimal_instance_of_a_schema(schema: Any, expected: Any) -> None:
    """Required properties only; the first choice; the smallest value the bounds allow."""
    assert instance(schema) == expected


_Leaf = st.sampled_from(
    [
        str,
        int,
        float,
        bool,
        Annotated[str, pydantic.Field(min_length=7, max_length=9)],
        Annotated[int, pydantic.Field(gt=3, le=9)],
        Annotated[int, pydantic.Field(lt=-2, multiple_of=3)],
        Annotated[float, pydantic.Field(ge=0.5)],
        Literal["a", "b"],
        Unit,
        datetime.date,
        uuid.UUID,
    ]
)


def _models(depth: int) -> st.SearchStrategy[Any]:
    """Field types: leaves, lists (with a minimum length), Optionals and nested models."""
    types = _Leaf if depth == 0 else st.one_of(_Leaf, _models(depth - 1))
    wrapped = st.one_of(
        types,
        types.map(lambda t: t | None),
        st.tuples(types, st.integers(0, 2)).map(
            lambda tn: Annotated[list[tn[0]], pydantic.Field(min_length=tn[1])]  # type: ignore[name-defined]
        ),
    )
    return st.lists(st.tuples(wrapped, st.booleans()), min_size=1, max_size=5).map(
        lambda fields: pydantic.create_model(  # type: ignore[call-overload]
            f"M{depth}",
            **{
                f"f{i}": (t, None) if optional else (t, ...)
                for i, (t, optional) in enumerate(fields)
            },
        )
    )


@settings(max_examples=60, deadline=None)
@given(_models(2))
def test_a_models_schema_has_a_minimal_instance_the_model_accepts(model: Any) -> None:
    """For pydantic models' schemas ($defs, anyOf, bounds, formats), the instance validates."""
    model.model_validate(instance(model.model_json_schema()))


def test_a_schema_that_does_not_resolve_is_a_400() -> None:
    """A dangling $ref in a json_schema or a tool's parameters is a 400, not a crash."""
    dangling: Any = {"$ref": "#/$defs/Nowhere"}
    with serving() as (_, client):
        with pytest.raises(openai.BadRequestError) as reply:
            client.chat.completions.create(
                model="m",
                messages=HELLO,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": dangling},
                },
            )
        with pytest.raises(openai.BadRequestError):
            tool: Any = {"type": "function", "function": {"name": "f", "parameters": dangling}}
            client.chat.completions.create(model="m", messages=HELLO, tools=[tool])
    assert reply.value.param == "response_format"


# --- embeddings and models -------------------------------------------------------------


def test_embeddings_take_one_string_as_one_input_and_honour_dimensions() -> None:
    """A string is one input; a list is one per item, by index; dimensions set the length."""
    with serving() as (_, client):
        one = client.embeddings.create(model="e", input="hello world", dimensions=5)
        many = client.embeddings.create(
            model="e", input=["a", "bb", "ccc"], encoding_format="float"
        )
        tokens = client.embeddings.create(
            model="e", input=[[1, 2, 3], [4]], encoding_format="float"
        )
    assert (one.object, one.model) == ("list", "e")
    assert [len(d.embedding) for d in one.data] == [5]
    assert [d.index for d in many.data] == [0, 1, 2]
    assert [len(d.embedding) for d in many.data] == [8, 8, 8]
    assert len({tuple(d.embedding) for d in many.data}) == 3
    assert len(tokens.data) == 2
    assert one.usage.prompt_tokens == one.usage.total_tokens > 0


def test_base64_embeddings_are_little_endian_float32() -> None:
    """encoding_format="base64": each vector packed as little-endian float32, then base64."""
    with serving() as (server, client):
        floats = client.embeddings.create(
            model="e", input=["one", "three"], encoding_format="float"
        )
        raw = httpx.post(
            f"{server.base_url}/embeddings",
            json={
                "model": "e",
                "input": ["one", "three"],
                "encoding_format": "base64",
                "dimensions": 8,
            },
        ).json()
        # Asked for no format, the official client asks for base64 and decodes it itself.
        decoded = client.embeddings.create(model="e", input=["one", "three"])
    for item, plain in zip(raw["data"], floats.data, strict=True):
        assert isinstance(item["embedding"], str)
        packed = base64.b64decode(item["embedding"])
        assert struct.unpack("<8f", packed) == pytest.approx(plain.embedding, abs=1e-6)
    for item, plain in zip(decoded.data, floats.data, strict=True):
        assert item.embedding == pytest.approx(plain.embedding, abs=1e-6)


def test_models_lists_the_served_models_and_those_asked_for() -> None:
    """GET /v1/models lists models= and every model asked for; /v1/models/{id} retrieves one."""
    with serving() as (_, client):
        assert client.models.list().data == []
        client.chat.completions.create(model="chat-1", messages=HELLO)
        client.embeddings.create(model="embed-1", input="x")
        assert [m.id for m in client.models.list()] == ["chat-1", "embed-1"]
        model = client.models.retrieve("chat-1")
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve("other")
    assert (model.id, model.object, model.owned_by) == ("chat-1", "model", "corral")
    assert isinstance(model.created, int)
    assert info.value.code == "model_not_found"
    with serving(models=["a", "b"]) as (_, client):
        client.chat.completions.create(model="b", messages=HELLO)
        assert [m.id for m in client.models.list()] == ["a", "b"]


# --- the async client ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_async_client_runs_a_streamed_tool_loop_with_usage() -> None:
    """AsyncOpenAI: a streamed tool call, the answer, a streamed reply with usage.

    asyncio only: the official async client leaves its streams' async
    generators unfinished after [DONE] (trio's finalizer warns about each, and
    warnings are errors here), and its own cleanup is written for asyncio
    ("support non asyncio runtimes" is a TODO in it). The server runs on any.
    """
    async with FakeLLMServer() as server:
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key=KEY, max_retries=0
        ) as client:
            question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
            ids, names = set(), []
            stream = await client.chat.completions.create(
                model="m", messages=question, tools=[WEATHER], stream=True
            )
            async for chunk in stream:
                for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                    if delta.id:
                        ids.add(delta.id)
                        names.append(delta.function.name if delta.function else None)
            assert names == ["weather"]
            (call_id,) = ids
            answered = [
                *question,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": "weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call_id, "content": "sunny"},
            ]
            stream = await client.chat.completions.create(
                model="m",
                messages=answered,
                tools=[WEATHER],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "fake reply to: sunny"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
