"""What ChatRequest sends: every option when set and nothing else, tools and tool messages,
multi-part content, the escape hatches; and the tool loop against FakeLLMServer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corral
from corral import ChatMessage, ChatRequest, ImagePart, TextPart, Tool, ToolCall, ToolChoice
from corral.testing import FakeLLMServer

from .openai_helpers import ask, canned, choice, completion, sent

pytestmark = pytest.mark.anyio

REPLY = canned(completion(choice("ok")))
WEATHER = Tool(
    "get_weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    strict=True,
)


async def test_unset_options_are_not_sent() -> None:
    """A request with only messages sends the model and the messages, nothing else."""
    _, seen = await ask(REPLY, ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    assert sent(seen) == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def test_every_option_is_sent_under_openais_name() -> None:
    """Each option reaches the body as OpenAI names it; max_completion_tokens included."""
    request = ChatRequest(
        messages=[{"role": "user", "content": "hi"}],
        model="o4-mini",
        temperature=0.5,
        top_p=0.9,
        max_tokens=10,
        max_completion_tokens=20,
        n=2,
        stop=["END", "STOP"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logit_bias={50256: -100},
        logprobs=True,
        top_logprobs=3,
        reasoning_effort="low",
        user="user-1",
        metadata={"run": "r1"},
        service_tier="flex",
        parallel_tool_calls=False,
        response_format=corral.ResponseFormat.json_object(),
    )
    _, seen = await ask(REPLY, request)
    body = sent(seen)
    assert body == {
        "model": "o4-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "n": 2,
        "stop": ["END", "STOP"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 3,
        "reasoning_effort": "low",
        "user": "user-1",
        "metadata": {"run": "r1"},
        "service_tier": "flex",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
    }


async def test_max_completion_tokens_alone_is_sent_without_max_tokens() -> None:
    """Regression: only max_tokens could be sent, which reasoning models refuse."""
    _, seen = await ask(REPLY, ChatRequest(messages=[], max_completion_tokens=64))
    body = sent(seen)
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body


async def test_tools_and_tool_choice_are_sent() -> None:
    """Regression: tools, tool_choice and parallel_tool_calls could not be sent."""
    request = ChatRequest(
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice=ToolChoice("get_weather"),
        parallel_tool_calls=True,
    )
    _, seen = await ask(REPLY, request)
    body = sent(seen)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters,
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is True
    _, seen = await ask(REPLY, ChatRequest(messages=[], tools=[WEATHER], tool_choice="required"))
    assert sent(seen)["tool_choice"] == "required"


def test_a_tool_choice_that_is_no_mode_is_refused() -> None:
    """tool_choice takes "auto", "none", "required" or a ToolChoice; another string is an error."""
    with pytest.raises(ValueError, match="tool_choice must be one of auto, none, required"):
        ChatRequest(messages=[], tool_choice="get_weather")


async def test_an_assistant_tool_call_and_the_tool_result_are_sent_as_openai_needs() -> None:
    """Regression: a tool message lost its tool_call_id (OpenAI answers 400 without it)."""
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    request = ChatRequest(
        messages=[
            ChatMessage("user", "Weather in Paris?"),
            ChatMessage("assistant", tool_calls=[call]),
            ChatMessage("tool", '{"temp": 12}', tool_call_id="call_1"),
        ]
    )
    _, seen = await ask(REPLY, request)
    assert sent(seen)["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": 12}', "tool_call_id": "call_1"},
    ]


async def test_multi_part_content_with_an_image_data_url() -> None:
    """Text and image parts (an https URL, a data: URL with detail) go as OpenAI's parts."""
    png = b"\x89PNG\r\n\x1a\nfake"
    message = ChatMessage(
        "user",
        [
            TextPart("What is in these?"),
            ImagePart("https://example.com/cat.jpg"),
            ImagePart.from_bytes(png, "image/png", detail="low"),
        ],
        name="alice",
    )
    _, seen = await ask(REPLY, ChatRequest(messages=[message]))
    (sent_message,) = sent(seen)["messages"]
    assert sent_message == {
        "role": "user",
        "name": "alice",
        "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,iVBORw0KGgpmYWtl", "detail": "low"},
            },
        ],
    }


def test_dict_messages_take_every_field_in_openais_shape() -> None:
    """Mapping messages keep working, tool calls in OpenAI's JSON shape and parts included."""
    request = ChatRequest(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "c"},
        ]
    )
    user, assistant, tool = request.messages
    assert user.content == (TextPart("hi"),)
    assert assistant.tool_calls == (ToolCall("c", "f", "{}"),)
    assert tool.tool_call_id == "c"
    with pytest.raises(ValueError, match="a chat message has no field 'tool_call'"):
        ChatRequest(messages=[{"role": "tool", "content": "x", "tool_call": "c"}])


async def test_extra_body_is_merged_last_and_extra_headers_are_sent() -> None:
    """The escape hatches: provider fields merged into the body (winning), headers sent."""
    request = ChatRequest(
        messages=[],
        temperature=0.1,
        extra_body={"top_k": 40, "temperature": 0.7, "chat_template_kwargs": {"x": True}},
        extra_headers={"X-Gateway-Tenant": "t1"},
    )
    _, seen = await ask(REPLY, request)
    body = sent(seen)
    assert (body["top_k"], body["temperature"]) == (40, 0.7)
    assert body["chat_template_kwargs"] == {"x": True}
    assert seen[0].headers["x-gateway-tenant"] == "t1"


def test_a_full_request_travels_through_protocol() -> None:
    """Every kind of field survives Protocol's strict round trip."""
    request = ChatRequest(
        messages=[
            ChatMessage(
                "user", [TextPart("a"), ImagePart("data:image/png;base64,AA", detail="high")]
            ),
            ChatMessage("assistant", tool_calls=[ToolCall("c", "f", "{}")], refusal=None),
            ChatMessage("tool", "1", tool_call_id="c"),
            ChatMessage("user", [corral.RawPart({"type": "input_audio", "input_audio": {}})]),
        ],
        stop="x",
        tools=[WEATHER],
        tool_choice=ToolChoice("get_weather"),
        logit_bias={"1": 2},
        metadata={"a": "b"},
        response_format=corral.ResponseFormat.json_schema("s", {"type": "object"}),
        stream_options={"include_usage": False},
        extra_body={"k": [1, {"v": None}]},
        extra_headers={"h": "v"},
    )
    proto = corral.Protocol([ChatRequest])
    back = proto.loads(proto.dumps(corral.Envelope(payload=request, target="chat"))).payload
    assert back == request


def _weather(arguments: dict[str, Any]) -> str:
    return json.dumps({"city": arguments["city"], "temperature": 12})


async def test_the_tool_loop_against_the_fake_server() -> None:
    """The model asks for a tool, the program answers with its result, the model replies."""
    async with FakeLLMServer() as server, corral.Runtime() as rt:
        chat = await rt.spawn(
            lambda: corral.OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
            name="chat",
        )
        messages: list[ChatMessage] = [ChatMessage("user", "What is the weather in Paris?")]
        first = await chat.ask(ChatRequest(messages=messages, tools=[WEATHER]), timeout=10)
        assert first.finish_reason == "tool_calls"
        (call,) = first.tool_calls
        assert call.name == "get_weather" and call.id
        assert first.message is not None
        messages.append(first.message)
        messages.append(ChatMessage("tool", _weather(call.parse_arguments()), tool_call_id=call.id))
        second = await chat.ask(ChatRequest(messages=messages, tools=[WEATHER]), timeout=10)
    assert second.finish_reason == "stop"
    assert second.tool_calls == ()
    assert "temperature" in second.content


_texts = st.text(max_size=12)
_parts = st.one_of(
    st.builds(TextPart, _texts),
    st.builds(ImagePart, _texts, detail=st.none() | st.sampled_from(["low", "high", "auto"])),
    st.builds(corral.RefusalPart, _texts),
    st.builds(corral.RawPart, st.dictionaries(_texts, st.integers() | _texts, max_size=2)),
)
_calls = st.builds(ToolCall, _texts, _texts, _texts)
_messages = st.builds(
    ChatMessage,
    st.sampled_from(["system", "user", "assistant", "tool"]),
    st.none() | _texts | st.lists(_parts, max_size=3).map(tuple),
    name=st.none() | _texts,
    tool_calls=st.lists(_calls, max_size=2).map(tuple),
    tool_call_id=st.none() | _texts,
    refusal=st.none() | _texts,
)
_requests = st.builds(
    ChatRequest,
    st.lists(_messages, max_size=3),
    model=st.none() | _texts,
    temperature=st.none() | st.floats(0, 2),
    n=st.none() | st.integers(1, 4),
    stop=st.none() | _texts | st.lists(_texts, max_size=2).map(tuple),
    tools=st.lists(st.builds(Tool, _texts, strict=st.none() | st.booleans()), max_size=2),
    tool_choice=st.none()
    | st.sampled_from(["auto", "none", "required"])
    | st.builds(ToolChoice, _texts),
    extra_body=st.dictionaries(_texts, st.integers() | _texts | st.none(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(_requests)
def test_any_request_round_trips_through_protocol(msg: ChatRequest) -> None:
    """Any ChatRequest comes back equal from Protocol's JSON, and its bytes identical."""
    proto = corral.Protocol([ChatRequest])
    data = proto.dumps(corral.Envelope(payload=msg, target="chat"))
    back = proto.loads(data)
    assert back.payload == msg
    assert proto.dumps(back) == data
