"""Every chat reply real servers send is read: usage optional, errors in a 200, parts, refusals,
every choice, tool calls, logprobs and metadata."""

from __future__ import annotations

import pytest

import corral
from corral import ChatReply, InvalidResponse, ProviderError

from .openai_helpers import ask, canned, choice, completion

pytestmark = pytest.mark.anyio


async def test_a_reply_without_usage_keeps_its_content() -> None:
    """Regression: a reply with no usage raised ProtocolError ('usage.prompt_tokens')."""
    reply, _ = await ask(canned(completion(choice("hi"), omit_usage=True)))
    assert reply.content == "hi"
    assert reply.usage is None


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None},
        {"completion_tokens": 3},
        {},
    ],
    ids=["null", "null fields", "no prompt tokens", "empty"],
)
async def test_a_null_or_incomplete_usage_is_none_not_an_error(usage: object) -> None:
    """Regression: usage null, or with null fields, raised ProtocolError; now usage is None."""
    body = completion(choice("hi"), omit_usage=True)
    body["usage"] = usage
    reply, _ = await ask(canned(body))
    assert reply.content == "hi"
    assert reply.usage is None


async def test_usage_details_cached_and_reasoning_tokens() -> None:
    """Cached input and reasoning output tokens are read when given (null details are none)."""
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 32, "audio_tokens": None},
    }
    reply, _ = await ask(canned(completion(choice("hi"), usage=usage)))
    assert reply.usage == corral.TokenUsage(100, 40, cached_input_tokens=64, reasoning_tokens=32)
    assert reply.usage.total == 140
    litellm = {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    }
    reply, _ = await ask(canned(completion(choice("hi"), usage=litellm)))
    assert reply.usage == corral.TokenUsage(3, 1)


async def test_a_200_carrying_an_error_raises_the_providers_error_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a 200 whose body is {"error": ...} was reported as missing usage."""
    key = "sk-test-0123456789abcdefghij"
    monkeypatch.setenv("CORRAL_TEST_KEY", key)
    body = {
        "error": {
            "message": f"guardrail tripped for key {key}",
            "type": "invalid_request_error",
            "code": "content_filter",
            "param": None,
        }
    }
    with pytest.raises(ProviderError) as info:
        await ask(canned(body), api_key_env="CORRAL_TEST_KEY")
    error = info.value
    assert error.code == "content_filter"
    assert error.type == "invalid_request_error"
    assert error.message is not None and "guardrail tripped" in error.message
    assert key not in str(error) and key not in error.message
    assert "POST /v1/chat/completions" in str(error)


async def test_a_200_with_a_vllm_shaped_error_is_the_providers_error() -> None:
    """vLLM's {"object": "error", "message": ...} (no "error" member, no choices) is an error."""
    body = {"object": "error", "message": "model is loading", "type": "ServiceUnavailable"}
    with pytest.raises(ProviderError, match="model is loading"):
        await ask(canned(body))


async def test_content_as_parts_is_joined_and_the_parts_kept() -> None:
    """Regression: content as a list of parts raised ProtocolError; now text joined, parts kept."""
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "let me see"}]},
        {"type": "text", "text": "The answer "},
        {"type": "text", "text": "is 4."},
    ]
    reply, _ = await ask(canned(completion(choice(parts))))
    assert reply.content == "The answer is 4."
    assert reply.message is not None
    content = reply.message.content
    assert isinstance(content, tuple)
    assert content[0] == corral.RawPart(parts[0])
    assert content[1:] == (corral.TextPart("The answer "), corral.TextPart("is 4."))


async def test_a_refusal_is_kept_as_a_field_or_as_parts() -> None:
    """Regression: a refusal was dropped; now reply.refusal, from the field or refusal parts."""
    reply, _ = await ask(canned(completion(choice(None, refusal="I can't help with that."))))
    assert reply.refusal == "I can't help with that."
    assert reply.content == ""
    parts = [{"type": "refusal", "refusal": "No."}]
    reply, _ = await ask(canned(completion(choice(parts))))
    assert reply.refusal == "No."


async def test_every_choice_is_read_in_index_order() -> None:
    """Regression: only choice 0 was read; now every choice, by index, each with its reason."""
    body = completion(
        choice("second", index=1, finish="length"),
        choice("first", index=0, finish="stop"),
    )
    reply, _ = await ask(canned(body))
    assert [(c.index, c.content, c.finish_reason) for c in reply.choices] == [
        (0, "first", "stop"),
        (1, "second", "length"),
    ]
    assert reply.content == "first"
    assert reply.finish_reason == "stop"


async def test_tool_calls_are_read_with_id_name_and_arguments() -> None:
    """Regression: a reply with tool_calls became content '' and the calls were lost."""
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
    ]
    reply, _ = await ask(canned(completion(choice(None, finish="tool_calls", tool_calls=calls))))
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (
        corral.ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
        corral.ToolCall("call_2", "now", ""),
    )
    assert reply.tool_calls[0].parse_arguments() == {"city": "Paris"}
    assert reply.tool_calls[1].parse_arguments() == {}
    assert reply.message is not None and reply.message.content is None


def test_tool_call_arguments_that_are_not_a_json_object_are_a_protocol_error() -> None:
    """parse_arguments names the call when the model wrote something that is not an object."""
    with pytest.raises(InvalidResponse, match=r"tool call 'c1' \(f\) are not JSON"):
        corral.ToolCall("c1", "f", '{"city": "Par').parse_arguments()
    with pytest.raises(InvalidResponse, match="should be a JSON object, got list"):
        corral.ToolCall("c1", "f", "[1]").parse_arguments()


async def test_tool_arguments_sent_as_an_object_are_taken_as_json_text() -> None:
    """A server that sends the arguments as an object (not JSON text) still gives JSON text."""
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]
    reply, _ = await ask(canned(completion(choice(None, tool_calls=calls))))
    assert reply.tool_calls[0].parse_arguments() == {"x": 1}


async def test_metadata_of_the_reply() -> None:
    """id, created, model, system_fingerprint and service_tier are read; created may be a float."""
    body = completion(
        choice("hi"), system_fingerprint="fp_44709d6fcb", service_tier="default", created=1.7e9
    )
    reply, _ = await ask(canned(body))
    assert (reply.id, reply.created, reply.model) == ("chatcmpl-abc", 1_700_000_000, "m-2025")
    assert (reply.system_fingerprint, reply.service_tier) == ("fp_44709d6fcb", "default")


async def test_logprobs_are_read_when_asked() -> None:
    """A choice's logprobs: tokens, log probabilities, bytes and the top alternatives."""
    logprobs = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
            }
        ],
        "refusal": None,
    }
    body = completion({**choice("Hi"), "logprobs": logprobs})
    reply, _ = await ask(canned(body))
    (token,) = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert token == corral.TokenLogprob(
        "Hi", -0.1, (72, 105), (corral.TopLogprob("Hi", -0.1, (72, 105)),)
    )


async def test_a_content_of_the_wrong_type_is_a_protocol_error_naming_the_path() -> None:
    """What would lose the reply's meaning (content a number) is refused, naming where."""
    with pytest.raises(InvalidResponse, match=r"'choices.0.message.content' should be a string"):
        await ask(canned(completion(choice(42))))


async def test_replies_travel_through_protocol() -> None:
    """A full reply (parts, tool calls, logprobs, usage details) round-trips through Protocol."""
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = completion(
        {**choice([{"type": "text", "text": "a"}, {"type": "x", "y": [1]}], tool_calls=calls)},
        choice(None, index=1, refusal="no"),
        usage={"prompt_tokens": 1, "completion_tokens": 2, "prompt_tokens_details": {}},
    )
    reply, _ = await ask(canned(body))
    proto = corral.Protocol([ChatReply])
    envelope = corral.Envelope(payload=reply, target="caller", kind=corral.Kind.REPLY)
    assert proto.loads(proto.dumps(envelope)).payload == reply


@pytest.mark.parametrize("error", [None, {}, ""], ids=["null", "empty object", "empty string"])
async def test_an_empty_error_member_beside_a_reply_is_no_error(error: object) -> None:
    """Gateways that send "error": null (or {}) beside the choices: the reply is read."""
    reply, _ = await ask(canned(completion(choice("hi"), error=error)))
    assert reply.content == "hi"


async def test_azures_content_filter_reply_is_read() -> None:
    """Azure's filtered choice: finish_reason content_filter, no content, filter results."""
    filtered = {
        "index": 0,
        "finish_reason": "content_filter",
        "message": {"role": "assistant", "content": None},
        "content_filter_results": {"violence": {"filtered": True, "severity": "high"}},
    }
    body = completion(filtered, prompt_filter_results=[{"prompt_index": 0}])
    reply, _ = await ask(canned(body))
    assert reply.finish_reason == "content_filter"
    assert reply.content == ""


async def test_a_reply_with_no_choices_is_a_protocol_error() -> None:
    """Regression: `choices: []` was read as an empty reply (content '', no finish reason)."""
    with pytest.raises(corral.InvalidResponse, match="the reply has no choices"):
        await ask(canned(completion()))
