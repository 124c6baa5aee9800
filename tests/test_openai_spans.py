"""GenAI span attributes of the OpenAI actors, and their token estimates for rate limiters."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

import corral
from corral import ChatMessage, ChatRequest, ImagePart, OpenAIChat, TextPart
from corral.testing import ManualClock

from .loopback_http import Canned, canned_server
from .openai_helpers import canned, chat_actor, choice, chunk, completion, sse, stream_answer
from .tracing import MemoryTracing

pytestmark = pytest.mark.anyio

SECRET_TEXT = "my-private-question-7781"
SECRET_ARGS = '{"account": "ACC-99-private"}'


class Traced(MemoryTracing):
    """Spans in memory, and the instrument that makes them."""

    def model_span(self, name: str = "chat m") -> dict[str, Any]:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return dict(span.attributes or {})


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    t.provider.shutdown()


async def _run(traced: Traced, answer: Canned, request: ChatRequest, *, streamed: bool) -> None:
    async with canned_server(answer) as server:
        async with corral.Runtime(instruments=[traced.instrument]) as rt:
            ref = await rt.spawn(lambda: chat_actor(server.base_url), name="chat")
            if streamed:
                async with ref.stream(request, timeout=10) as chunks:
                    [c async for c in chunks]
            else:
                await ref.ask(request, timeout=10)


def _all_text(spans: Sequence[ReadableSpan]) -> str:
    return "\n".join(
        f"{s.name} {json.dumps(dict(s.attributes or {}), default=str)} "
        + " ".join(f"{e.name} {dict(e.attributes or {})}" for e in s.events)
        for s in spans
    )


REQUEST = ChatRequest(
    messages=[{"role": "user", "content": SECRET_TEXT}],
    seed=42,
    stop=["END"],
    top_p=0.5,
    temperature=0.2,
    frequency_penalty=0.3,
    presence_penalty=0.4,
    n=2,
    max_completion_tokens=50,
    service_tier="flex",
    response_format=corral.ResponseFormat.json_object(),
)
TOOL_CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "lookup", "arguments": SECRET_ARGS},
}
USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 8,
    "total_tokens": 28,
    "prompt_tokens_details": {"cached_tokens": 16},
    "completion_tokens_details": {"reasoning_tokens": 4},
}


async def test_chat_span_records_the_request_options_and_the_whole_reply(traced: Traced) -> None:
    """seed, stop, top_p, penalties, n, output type; every finish reason, usage, tool names."""
    body = completion(
        choice("{}", index=0, finish="stop"),
        choice(None, index=1, finish="tool_calls", tool_calls=[TOOL_CALL]),
        usage=USAGE,
        system_fingerprint="fp_1",
        service_tier="flex",
    )
    await _run(traced, canned(body), REQUEST, streamed=False)
    attributes = traced.model_span()
    assert {
        k: v for k, v in attributes.items() if k.startswith(("gen_ai.", "openai.", "corral."))
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "m",
        "gen_ai.request.seed": 42,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.frequency_penalty": 0.3,
        "gen_ai.request.presence_penalty": 0.4,
        "gen_ai.request.choice.count": 2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.output.type": "json",
        "openai.request.service_tier": "flex",
        "gen_ai.response.model": "m-2025",
        "gen_ai.response.id": "chatcmpl-abc",
        "gen_ai.response.finish_reasons": ("stop", "tool_calls"),
        "corral.gen_ai.tool_calls": ("lookup",),
        "openai.response.system_fingerprint": "fp_1",
        "openai.response.service_tier": "flex",
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 8,
        "gen_ai.usage.cache_read.input_tokens": 16,
        "gen_ai.usage.reasoning.output_tokens": 4,
    }


async def test_no_span_records_message_content_or_tool_arguments(traced: Traced) -> None:
    """The user's text and the model's tool arguments appear in no span, attribute or event."""
    body = completion(choice(None, finish="tool_calls", tool_calls=[TOOL_CALL]))
    await _run(traced, canned(body), REQUEST, streamed=False)
    await _run(
        traced,
        stream_answer(
            sse(chunk(None, tool_calls=[{**TOOL_CALL, "index": 0}]), chunk(None, "stop"))
        ),
        REQUEST,
        streamed=True,
    )
    text = _all_text(traced.spans())
    assert SECRET_TEXT not in text
    assert "ACC-99-private" not in text


async def test_a_streamed_span_records_usage_finish_reasons_and_tool_names(traced: Traced) -> None:
    """Regression: streamed calls recorded no usage; the usage chunk's is on the span now."""
    usage_event = {"id": "s", "model": "m-2025", "choices": [], "usage": USAGE}
    body = sse(
        chunk("hi"),
        chunk(None, tool_calls=[{**TOOL_CALL, "index": 0}]),
        chunk(None, "tool_calls"),
        usage_event,
    )
    await _run(traced, stream_answer(body), REQUEST, streamed=True)
    attributes = traced.model_span()
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.usage.input_tokens"] == 20
    assert attributes["gen_ai.usage.output_tokens"] == 8
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 16
    assert attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert attributes["corral.gen_ai.tool_calls"] == ("lookup",)


async def test_unset_options_and_one_choice_record_nothing(traced: Traced) -> None:
    """Options not set, n=1 and a text format leave their attributes out (text: 'text')."""
    request = ChatRequest(
        messages=[{"role": "user", "content": "x"}],
        n=1,
        response_format=corral.ResponseFormat("text"),
    )
    await _run(traced, canned(completion(choice("ok"), omit_usage=True)), request, streamed=False)
    attributes = traced.model_span()
    assert attributes["gen_ai.output.type"] == "text"
    for absent in (
        "gen_ai.request.choice.count",
        "gen_ai.request.seed",
        "gen_ai.request.stop_sequences",
        "gen_ai.usage.input_tokens",
        "corral.gen_ai.tool_calls",
    ):
        assert absent not in attributes


async def test_embeddings_span_records_encoding_format_and_dimensions(traced: Traced) -> None:
    """An embeddings request's encoding_format and dimensions are on its span."""
    body = json.dumps({"data": [{"index": 0, "embedding": [0.5, 0.5]}], "model": "e"}).encode()
    async with canned_server(Canned(body=body)) as server:
        async with corral.Runtime(instruments=[traced.instrument]) as rt:
            ref = await rt.spawn(
                lambda: corral.OpenAIEmbeddings(
                    model="e", base_url=f"{server.base_url}/v1", api_key_env=None
                ),
                name="embed",
            )
            await ref.ask(
                corral.EmbeddingsRequest(inputs="x", dimensions=2, encoding_format="float"),
                timeout=10,
            )
    attributes = traced.model_span("embeddings e")
    assert attributes["gen_ai.request.encoding_formats"] == ("float",)
    assert attributes["gen_ai.embeddings.dimension.count"] == 2
    assert "gen_ai.usage.input_tokens" not in attributes  # the reply gave no usage


# --- token estimates -----------------------------------------------------------------------


def test_estimates_count_text_parts_and_a_documented_amount_per_image() -> None:
    """Text parts count as characters / 4; each image as image_tokens (low detail: less)."""
    chat = OpenAIChat(model="m")
    text = ChatRequest(messages=[ChatMessage("user", "x" * 396)])
    assert chat.estimate_tokens(text) == 100  # (4 + 396) / 4
    parts = ChatRequest(
        messages=[
            ChatMessage(
                "user",
                [
                    TextPart("x" * 396),
                    ImagePart("https://example.com/a.png"),
                    ImagePart("https://example.com/b.png", detail="low"),
                ],
            )
        ]
    )
    assert chat.estimate_tokens(parts) == 100 + OpenAIChat.image_tokens + 85
    assert (OpenAIChat.image_tokens, OpenAIChat.low_detail_image_tokens) == (765, 85)


def test_estimates_count_tools_tool_calls_and_every_choices_limit() -> None:
    """Tool definitions and calls count; the reply's limit counts once per choice (n)."""
    chat = OpenAIChat(model="m")
    tool = corral.Tool("f", parameters={"type": "object"})
    request = ChatRequest(
        messages=[
            ChatMessage("assistant", tool_calls=[corral.ToolCall("c", "abcd", "x" * 36)]),
        ],
        tools=[tool],
        max_completion_tokens=10,
        n=3,
    )
    chars = len("assistant") + 4 + 36 + 1 + len(json.dumps({"type": "object"}))
    assert chat.estimate_tokens(request) == chars // 4 + 30


async def test_the_limiter_is_corrected_from_the_usage_of_a_reply() -> None:
    """A non-streamed call's usage replaces its estimate in the token bucket."""
    limiter = corral.RateLimiter(tokens=10_000, per=60, clock=ManualClock())
    body = completion(choice("ok"), usage={"prompt_tokens": 30, "completion_tokens": 5})
    async with canned_server(canned(body)) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: chat_actor(server.base_url),
            name="chat",
            policy=corral.ServicePolicy(retry=None, rate_limiter=limiter),
        )
        await ref.ask(ChatRequest(messages=[], max_tokens=500), timeout=10)
    assert limiter.status().tokens_available == 10_000 - 35


@corral.message(name="test.spans.Profile")
class Profile:
    """A structured reply to fit."""

    name: str
    age: int


async def test_a_structured_reply_that_does_not_fit_quotes_none_of_it_in_any_span(
    traced: Traced,
) -> None:
    """Regression: the misfit's error quoted the model's output into the spans' exception events."""
    misfit = json.dumps({"name": "x", "age": f"my SSN is {SECRET_TEXT}"})
    not_json = f"{SECRET_TEXT} is not JSON"
    request = ChatRequest(messages=[{"role": "user", "content": "q"}], response_model=Profile)
    for content in (misfit, not_json):
        async with canned_server(canned(completion(choice(content)))) as server:
            async with corral.Runtime(instruments=[traced.instrument]) as rt:
                ref = await rt.spawn(lambda: chat_actor(server.base_url), name="chat")
                with pytest.raises(corral.InvalidResponse) as info:
                    await ref.ask(request, timeout=10)
        assert SECRET_TEXT not in str(info.value)
    assert "@ $.age" in _all_text(traced.spans())  # the path is there, the value is not
    text = _all_text(traced.spans())
    assert SECRET_TEXT not in text
    assert "exception.stacktrace" in text  # the exception events were looked at
