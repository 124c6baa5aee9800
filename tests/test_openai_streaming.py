"""Streamed chat: errors mid-stream, streams cut short, usage, tool-call assembly, SSE details."""

from __future__ import annotations

from typing import Any

import pytest

import corral
from corral import ChatChunk, ChatRequest, ProviderError, ToolCall, TransportError
from corral.testing import FakeLLMServer, ManualClock

from .loopback_http import Canned, Seen
from .openai_helpers import HELLO, canned, chunk, sent, sse, stream, stream_answer, usage_chunk

pytestmark = pytest.mark.anyio

RETRY = corral.ServicePolicy(retry=corral.RetryPolicy(max_attempts=3, min_delay=0, max_delay=0))
LITELLM_ERROR = {
    "error": {
        "message": "guardrail tripped mid-stream",
        "type": "guardrail_error",
        "param": None,
        "code": "content_filter",
    }
}


def text(chunks: list[ChatChunk]) -> str:
    return "".join(c.content for c in chunks)


async def test_an_error_event_mid_stream_ends_it_with_the_providers_error() -> None:
    """Regression: LiteLLM's error event after 3 chunks ended the stream as if complete."""
    body = sse(chunk("one "), chunk("two "), chunk("three "), LITELLM_ERROR, done=False)
    with pytest.raises(ProviderError) as info:
        await stream(stream_answer(body), policy=RETRY)
    error = info.value
    assert error.code == "content_filter"
    assert "after 3 chunks" in str(error) and "guardrail tripped mid-stream" in str(error)
    assert text(error.chunks) == "one two three "  # type: ignore[attr-defined]


async def test_an_error_event_before_any_chunk_is_retried_when_transient() -> None:
    """Before its first chunk a stream is retried like a call, here for a transient code."""
    overloaded = {"error": {"message": "try again", "type": "server_error", "code": None}}
    answers = [sse(overloaded, done=False), sse(chunk("fine", "stop"))]

    def answer(_: Seen) -> Canned:
        return stream_answer(answers.pop(0))

    chunks, seen = await stream(answer, policy=RETRY)  # type: ignore[arg-type]
    assert text(chunks) == "fine"
    assert len(seen) == 2


async def test_an_error_event_of_type_error_is_the_providers_error() -> None:
    """An SSE event named error (event: error) is an error whatever its data says."""
    body = sse(chunk("a")).replace(b"data: [DONE]\n\n", b"") + (
        b'event: error\ndata: {"type": "overloaded_error", "message": "Overloaded"}\n\n'
    )
    with pytest.raises(ProviderError, match="Overloaded"):
        await stream(stream_answer(body))


async def test_a_stream_cut_short_is_a_transport_error_not_a_complete_reply() -> None:
    """Regression: a stream with neither a finish reason nor [DONE] was taken as complete."""
    body = sse(chunk("The answer is"), done=False)
    with pytest.raises(TransportError, match="neither a finish reason nor \\[DONE\\]"):
        await stream(stream_answer(body), policy=RETRY)


async def test_an_empty_stream_is_cut_short_and_retried_before_any_chunk() -> None:
    """A 200 with an empty body delivered nothing: a TransportError, so it is retried."""
    answers = [b"", sse(chunk("ok", "stop"))]

    def answer(_: Seen) -> Canned:
        return stream_answer(answers.pop(0))

    chunks, seen = await stream(answer, policy=RETRY)  # type: ignore[arg-type]
    assert text(chunks) == "ok"
    assert len(seen) == 2


async def test_a_finish_reason_without_done_is_complete() -> None:
    """Servers that send no [DONE] end with a finish reason; that stream is whole."""
    chunks, _ = await stream(stream_answer(sse(chunk("hi"), chunk(None, "stop"), done=False)))
    assert text(chunks) == "hi"
    assert chunks[-1].finish_reason == "stop"


async def test_the_last_chunk_carries_the_assembled_reply_and_usage() -> None:
    """include_usage is sent by default; the usage chunk's usage is on the last chunk's reply."""
    body = sse(
        chunk(None, role="assistant"),
        chunk("Hel"),
        chunk("lo", "stop"),
        usage_chunk(prompt=9, completion=2),
    )
    chunks, seen = await stream(stream_answer(body))
    assert sent(seen)["stream_options"] == {"include_usage": True}
    assert [c.content for c in chunks] == ["Hel", "lo"]
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.reply is not None
    assert last.reply.content == "Hello"
    assert last.reply.usage == corral.TokenUsage(9, 2)
    assert (last.reply.id, last.reply.model) == ("chatcmpl-s1", "m-2025")
    assert all(c.reply is None for c in chunks[:-1])


async def test_stream_usage_can_be_turned_off_and_a_requests_options_win() -> None:
    """stream_usage=False sends no stream_options; a request's own stream_options are sent."""
    body = sse(chunk("x", "stop"))
    _, seen = await stream(stream_answer(body), stream_usage=False)
    assert "stream_options" not in sent(seen)
    request = ChatRequest(messages=[], stream_options={"include_usage": False})
    _, seen = await stream(stream_answer(body), request)
    assert sent(seen)["stream_options"] == {"include_usage": False}


def _call_delta(index: int, **fields: Any) -> dict[str, Any]:
    function = {k: v for k, v in fields.items() if k in ("name", "arguments")}
    delta: dict[str, Any] = {"index": index, "function": function}
    if "id" in fields:
        delta.update(id=fields["id"], type="function")
    return chunk(None, tool_calls=[delta])


async def test_tool_call_deltas_are_assembled_by_index() -> None:
    """Regression: streamed tool calls were dropped; their pieces now make whole calls."""
    body = sse(
        chunk(None, role="assistant"),
        _call_delta(0, id="call_a", name="get_weather", arguments=""),
        _call_delta(0, arguments='{"city": '),
        _call_delta(1, id="call_b", name="now", arguments=""),
        _call_delta(0, arguments='"Paris"}'),
        _call_delta(1, arguments="{}"),
        chunk(None, "tool_calls"),
        usage_chunk(),
    )
    chunks, _ = await stream(stream_answer(body))
    pieces = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.id, d.name) for d in pieces[:1]] == [(0, "call_a", "get_weather")]
    reply = chunks[-1].reply
    assert reply is not None
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_b", "now", "{}"),
    )
    assert reply.message is not None and reply.message.content is None


async def test_tool_call_deltas_without_an_index_follow_their_ids() -> None:
    """Servers that send no index: a new id starts a call, pieces without one extend it."""
    body = sse(
        chunk(None, tool_calls=[{"id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]),
        chunk(None, tool_calls=[{"function": {"arguments": ": 1}"}}]),
        chunk(None, tool_calls=[{"id": "c2", "function": {"name": "g", "arguments": "{}"}}]),
        chunk(None, "tool_calls"),
    )
    chunks, _ = await stream(stream_answer(body))
    reply = chunks[-1].reply
    assert reply is not None
    assert reply.tool_calls == (ToolCall("c1", "f", '{"a": 1}'), ToolCall("c2", "g", "{}"))


async def test_content_parts_and_refusal_deltas() -> None:
    """Regression: a delta's content as parts raised ProtocolError; refusal deltas were lost."""
    body = sse(
        chunk([{"type": "text", "text": "Hi "}, {"type": "thinking", "x": 1}]),
        chunk("there"),
        chunk(None, refusal="I can't"),
        chunk(None, "stop", refusal=" do that."),
    )
    chunks, _ = await stream(stream_answer(body))
    assert text(chunks) == "Hi there"
    assert "".join(c.refusal for c in chunks) == "I can't do that."
    reply = chunks[-1].reply
    assert reply is not None
    assert (reply.content, reply.refusal) == ("Hi there", "I can't do that.")


async def test_every_choice_of_a_stream_is_assembled() -> None:
    """With n=2 the chunks name their choice, and the reply has both, in index order."""
    body = sse(
        chunk("a", index=0),
        chunk("b", index=1),
        chunk("A", "stop", index=0),
        chunk("B", "length", index=1),
    )
    chunks, _ = await stream(stream_answer(body))
    reply = chunks[-1].reply
    assert reply is not None
    assert [(c.index, c.content, c.finish_reason) for c in reply.choices] == [
        (0, "aA", "stop"),
        (1, "bB", "length"),
    ]


async def test_sse_comments_ids_and_data_over_several_lines() -> None:
    """Regression: data over several data: lines was refused; comments and ids are skipped."""
    body = (
        b": keep-alive\n\n"
        b"id: 1\n"
        b'data: {"id": "x", "model": "m", "choices":\n'
        b'data: [{"index": 0, "delta": {"content": "multi"}, "finish_reason": null}]}\n\n'
        b": another comment\n" + sse(chunk("line", "stop"))
    )
    chunks, _ = await stream(stream_answer(body))
    assert text(chunks) == "multiline"


async def test_a_last_event_without_its_blank_line_still_counts() -> None:
    """A body ending right after its last event's line: [DONE] ends it; cut JSON is cut short."""
    chunks, _ = await stream(stream_answer(sse(chunk("ok", "stop"), done=False) + b"data: [DONE]"))
    assert text(chunks) == "ok"
    body = sse(chunk("ok"), done=False) + b'data: {"choices": [{"index": 0, "del'
    with pytest.raises(TransportError, match="in the middle of an event"):
        await stream(stream_answer(body))


async def test_streamed_usage_corrects_the_rate_limiters_token_estimate() -> None:
    """Regression: streamed calls gave the limiter no usage; now the usage chunk corrects it."""
    limiter = corral.RateLimiter(tokens=10_000, per=60, clock=ManualClock())
    policy = corral.ServicePolicy(retry=None, rate_limiter=limiter)
    request = ChatRequest(messages=[{"role": "user", "content": "x" * 400}], max_tokens=1000)
    body = sse(chunk("hi", "stop"), usage_chunk(prompt=100, completion=20))
    chunks, _ = await stream(stream_answer(body), request, policy=policy)
    assert chunks[-1].reply is not None
    assert limiter.status().tokens_available == 10_000 - 120


async def test_a_stream_without_usage_leaves_the_estimate_charged() -> None:
    """No usage chunk (a server that ignores include_usage): the estimate stays, no error."""
    limiter = corral.RateLimiter(tokens=10_000, per=60, clock=ManualClock())
    policy = corral.ServicePolicy(retry=None, rate_limiter=limiter)
    request = ChatRequest(messages=[{"role": "user", "content": "x" * 400}], max_tokens=1000)
    chunks, _ = await stream(stream_answer(sse(chunk("hi", "stop"))), request, policy=policy)
    assert chunks[-1].reply is not None and chunks[-1].reply.usage is None
    estimate = corral.OpenAIChat(model="m").estimate_tokens(request)
    assert estimate == 101 + 1000  # (4 + 400) characters / 4, and max_tokens
    assert limiter.status().tokens_available == 10_000 - estimate


async def test_the_fake_server_streams_tool_calls_and_usage_assembled() -> None:
    """Against FakeLLMServer: a streamed tool call arrives whole in the reply, with usage."""
    tool = corral.Tool(
        "lookup",
        parameters={
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query", "limit"],
            "additionalProperties": False,
        },
    )
    async with FakeLLMServer() as server, corral.Runtime() as rt:
        chat = await rt.spawn(
            lambda: corral.OpenAIChat(model="m", base_url=server.base_url, api_key_env=None),
            name="chat",
        )
        request = ChatRequest(messages=[{"role": "user", "content": "find it"}], tools=[tool])
        async with chat.stream(request, timeout=10) as chunks:
            got = [c async for c in chunks]
        async with chat.stream(HELLO, timeout=10) as chunks:
            plain = [c async for c in chunks]
    reply = got[-1].reply
    assert reply is not None and reply.finish_reason == "tool_calls"
    (call,) = reply.tool_calls
    assert call.name == "lookup"
    assert set(call.parse_arguments()) == {"query", "limit"}
    assert reply.usage is not None and reply.usage.input_tokens > 0
    whole = plain[-1].reply
    assert whole is not None and whole.content == text(plain) == "fake reply to: hello"


async def test_azures_stream_shapes_are_read() -> None:
    """Azure's first chunk (no id, no model, prompt filter results, no choices) and its
    content filter results per choice are taken in stride."""
    first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [
            {"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}
        ],
    }
    filtered = chunk("Hi", "stop")
    filtered["choices"][0]["content_filter_results"] = {"hate": {"filtered": False}}
    chunks, _ = await stream(stream_answer(sse(first, filtered)))
    reply = chunks[-1].reply
    assert reply is not None
    assert (reply.content, reply.id, reply.model) == ("Hi", "chatcmpl-s1", "m-2025")


async def test_usage_in_every_chunk_keeps_the_last() -> None:
    """vLLM's continuous usage stats put usage in each chunk: the last one counts."""
    one = {**chunk("a"), "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    two = {**chunk("b", "stop"), "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    chunks, _ = await stream(stream_answer(sse(one, two)))
    reply = chunks[-1].reply
    assert reply is not None and reply.usage == corral.TokenUsage(5, 2)


async def test_a_stream_answered_with_the_whole_reply_takes_it_once() -> None:
    """Regression: a server ignoring stream=true (a JSON reply) was 'cut short' and sent 3 times."""
    whole = {
        "id": "chatcmpl-w",
        "object": "chat.completion",
        "model": "m-2025",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "all"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    chunks, seen = await stream(canned(whole), policy=RETRY)
    assert len(seen) == 1
    assert text(chunks) == "all"
    assert chunks[-1].finish_reason == "stop"
    reply = chunks[-1].reply
    assert reply is not None and reply.id == "chatcmpl-w" and reply.content == "all"
    assert reply.usage is not None and reply.usage.total == 4


async def test_a_stream_answered_with_a_json_error_raises_the_providers_error_once() -> None:
    """Regression: a 200 JSON error to a stream lost the provider's message and was retried."""
    blocked = {"error": {"message": "guardrail blocked", "type": "invalid_request_error"}}
    seen_count = []

    def answer(seen: Seen) -> Canned:
        seen_count.append(seen)
        return canned(blocked)

    with pytest.raises(ProviderError, match="guardrail blocked"):
        await stream(answer, policy=RETRY)  # type: ignore[arg-type]
    assert len(seen_count) == 1


async def test_a_finished_chunk_before_an_error_is_delivered_first() -> None:
    """Regression: the chunk that ended a choice was held back and lost when an error followed."""
    body = sse(chunk("a"), chunk("b", "stop"), LITELLM_ERROR, done=False)
    with pytest.raises(ProviderError, match="after 2 chunks") as info:
        await stream(stream_answer(body), policy=RETRY)
    assert text(info.value.chunks) == "ab"  # type: ignore[attr-defined]
    body = sse(chunk("a", "stop"), LITELLM_ERROR, done=False)
    with pytest.raises(ProviderError, match="after 1 chunk:") as info:
        await stream(stream_answer(body), policy=RETRY)
    assert text(info.value.chunks) == "a"  # type: ignore[attr-defined]
