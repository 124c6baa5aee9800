"""Canned replies of real OpenAI-compatible servers, and an actor to read them with."""

from __future__ import annotations

import json
from typing import Any

import corral

from .loopback_http import Canned, Seen, canned_server

HELLO = corral.ChatRequest(messages=[{"role": "user", "content": "hello"}])


def completion(
    *choices: dict[str, Any], usage: Any = None, omit_usage: bool = False, **extra: Any
) -> dict[str, Any]:
    """A chat.completion body with *choices* (and OpenAI's usual fields)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m-2025",
        "choices": list(choices),
        **extra,
    }
    if not omit_usage:
        body["usage"] = (
            usage
            if usage is not None
            else {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        )
    return body


def choice(
    content: Any = "hi", *, index: int = 0, finish: str | None = "stop", **message: Any
) -> dict[str, Any]:
    """One choice of a chat.completion."""
    return {
        "index": index,
        "message": {"role": "assistant", "content": content, **message},
        "finish_reason": finish,
    }


def sse(*events: dict[str, Any] | str, done: bool = True) -> bytes:
    """A server-sent event stream: each event a JSON object (or raw text), then [DONE]."""
    out = b""
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        out += f"data: {data}\n\n".encode()
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(
    content: Any = None,
    finish: str | None = None,
    *,
    index: int = 0,
    **delta: Any,
) -> dict[str, Any]:
    """A chat.completion.chunk of one choice."""
    body = dict(delta)
    if content is not None:
        body["content"] = content
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m-2025",
        "choices": [{"index": index, "delta": body, "finish_reason": finish}],
    }


def usage_chunk(prompt: int = 5, completion: int = 3) -> dict[str, Any]:
    """The chunk include_usage adds at the end: no choices, the usage."""
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "model": "m-2025",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def canned(body: dict[str, Any] | list[Any] | bytes, **options: Any) -> Canned:
    """A 200 answer of *body* (JSON, or bytes as they are)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Canned(body=data, **options)


def stream_answer(body: bytes) -> Canned:
    """A 200 event stream."""
    return Canned(body=body, content_type="text/event-stream")


def chat_actor(base: str, **options: Any) -> corral.OpenAIChat:
    options.setdefault("api_key_env", None)
    return corral.OpenAIChat(model="m", base_url=f"{base}/v1", **options)


async def ask(
    answer: Canned,
    request: corral.ChatRequest = HELLO,
    *,
    policy: corral.CallPolicy | None = None,
    **options: Any,
) -> tuple[corral.ChatReply, list[Seen]]:
    """Ask an OpenAIChat served by *answer*; the reply and the requests the server saw.

    The call's error is raised as it is (not in the server's exception group).
    """
    error: Exception | None = None
    async with canned_server(answer) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: chat_actor(server.base_url, **options),
            name="chat",
            policy=policy or corral.ServicePolicy(retry=None),
        )
        try:
            reply = await ref.ask(request, timeout=10)
        except Exception as exc:
            error = exc
    if error is not None:
        raise error
    return reply, server.requests


async def stream(
    answer: Canned,
    request: corral.ChatRequest = HELLO,
    *,
    policy: corral.CallPolicy | None = None,
    **options: Any,
) -> tuple[list[corral.ChatChunk], list[Seen]]:
    """Stream from an OpenAIChat served by *answer*; the chunks and the requests seen.

    The stream's error is raised as it is, with the chunks before it in its
    ``chunks`` attribute.
    """
    error: Exception | None = None
    got: list[corral.ChatChunk] = []
    async with canned_server(answer) as server, corral.Runtime() as rt:
        ref = await rt.spawn(
            lambda: chat_actor(server.base_url, **options),
            name="chat",
            policy=policy or corral.ServicePolicy(retry=None),
        )
        try:
            async with ref.stream(request, timeout=10) as chunks:
                async for c in chunks:
                    got.append(c)
        except Exception as exc:
            exc.chunks = got  # type: ignore[attr-defined]
            error = exc
    if error is not None:
        raise error
    return got, server.requests


def sent(seen: list[Seen]) -> dict[str, Any]:
    """The JSON body of the one request the server saw."""
    (request,) = seen
    body: dict[str, Any] = json.loads(request.body)
    return body
