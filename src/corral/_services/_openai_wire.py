"""OpenAI's wire format: JSON bodies from request messages, reply messages from JSON.

Replies are read leniently where servers differ harmlessly (fields missing
or ``null``, extra fields, ``created`` as a float, tool arguments as an
object) and strictly where a wrong type would lose the reply's meaning (a
``content`` that is a number): then a :class:`corral.InvalidResponse` names the
path (``'choices.0.message.content' should be ...``). A body that is an
error (``{"error": ...}`` in a 200) is the provider's error, not a
malformed reply.
"""

from __future__ import annotations

import array
import base64
import binascii
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeGuard

from ._errors import parse_error, provider_error
from ._exceptions import InvalidResponse
from ._openai_types import (
    ChatChunk,
    ChatMessage,
    ChatReply,
    ChatRequest,
    Choice,
    ContentPart,
    EmbeddingsReply,
    EmbeddingsRequest,
    ImagePart,
    Logprobs,
    RefusalPart,
    ResponseFormat,
    TextPart,
    TokenLogprob,
    TokenUsage,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
    part_from_json,
)

__all__ = [
    "StreamAssembly",
    "chat_body",
    "chat_reply",
    "embeddings_body",
    "embeddings_reply",
    "raise_for_error",
    "usage_of",
]

_NUMBER: Final = (int, float)
#: The types of the numbers in JSON that json.loads makes (bool is neither).
_JSON_NUMBERS: Final = frozenset({int, float})


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    """Typed reads of a JSON reply that name the path of what does not fit."""

    def __init__(self, where: str) -> None:
        self.where = where

    def wrong(self, path: str, expected: str, value: Any) -> InvalidResponse:
        return InvalidResponse(f"{self.where}: {path!r} should be {expected}, got {_kind(value)}")

    def text(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        value = obj.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.wrong(f"{path}.{key}", "a string", value)

    def integer(self, obj: Mapping[str, Any], key: str) -> int | None:
        # Metadata: an integral float is taken (some servers send created as one);
        # anything else that is not an integer is as good as absent.
        value = obj.get(key)
        if _is_int(value):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None

    def mapping(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
        value = obj.get(key)
        if value is None or isinstance(value, dict):
            return value
        raise self.wrong(f"{path}.{key}", "an object", value)

    def items(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        raise self.wrong(f"{path}.{key}", "an array", value)


# --- requests ---------------------------------------------------------------------------


def _part_json(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        image: dict[str, Any] = {"url": part.url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, RefusalPart):
        return {"type": "refusal", "refusal": part.refusal}
    return dict(part.data)


def message_json(m: ChatMessage) -> dict[str, Any]:
    """One chat message as OpenAI takes it."""
    out: dict[str, Any] = {"role": m.role}
    content = m.content
    # A message without content says so (null): chat templates read the key.
    out["content"] = (
        content if content is None or isinstance(content, str) else [_part_json(p) for p in content]
    )
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type,
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.refusal is not None:
        out["refusal"] = m.refusal
    return out


def _response_format_json(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    if fmt.description is not None:
        schema["description"] = fmt.description
    return {"type": "json_schema", "json_schema": schema}


#: Options sent under their own name when set.
_PLAIN_OPTIONS: Final = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "metadata",
    "service_tier",
)


def chat_body(
    msg: ChatRequest, model: str, *, stream: bool = False, stream_usage: bool = True
) -> dict[str, Any]:
    """The JSON body of *msg* for *model*: every option that is set, then ``extra_body``."""
    body: dict[str, Any] = {"model": model, "messages": [message_json(m) for m in msg.messages]}
    for name in _PLAIN_OPTIONS:
        value = getattr(msg, name)
        if value is not None:
            body[name] = value
    if msg.stop is not None:
        body["stop"] = msg.stop if isinstance(msg.stop, str) else list(msg.stop)
    if msg.tools:
        body["tools"] = [_tool_json(tool) for tool in msg.tools]
    if isinstance(msg.tool_choice, ToolChoice):
        body["tool_choice"] = {"type": "function", "function": {"name": msg.tool_choice.name}}
    elif msg.tool_choice is not None:
        body["tool_choice"] = msg.tool_choice
    if msg.response_format is not None:
        body["response_format"] = _response_format_json(msg.response_format)
    if stream:
        body["stream"] = True
        if msg.stream_options is not None:
            body["stream_options"] = msg.stream_options
        elif stream_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(msg.extra_body)
    return body


def _tool_json(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def embeddings_body(msg: EmbeddingsRequest, model: str) -> dict[str, Any]:
    """The JSON body of *msg* for *model*."""
    body: dict[str, Any] = {"model": model, "input": list(msg.inputs)}
    for name in ("dimensions", "encoding_format", "user"):
        value = getattr(msg, name)
        if value is not None:
            body[name] = value
    body.update(msg.extra_body)
    return body


# --- replies ----------------------------------------------------------------------------


def raise_for_error(
    data: Any,
    where: str,
    *,
    redact: Callable[[str], str],
    request_id: str | None = None,
    expected: str = "choices",
) -> None:
    """Raise the provider's error if *data* (a 200's body) is one instead of a reply.

    It is one when it has an ``error`` member that is not ``null`` or empty
    (gateways send ``"error": null`` or ``{}`` beside a reply), or when it
    lacks *expected* and reads as an error in another usual shape
    (``{"message": ...}``, ``{"detail": ...}``).

    Raises:
        ProviderError: What the provider said, redacted.
    """
    if isinstance(data, list):
        detail = parse_error(data)
    elif not isinstance(data, dict):
        return
    elif data.get("error"):
        detail = parse_error({"error": data["error"]})
    elif expected not in data:
        detail = parse_error(data)
    else:
        return
    if detail is not None:
        raise provider_error(detail, where, redact=redact, request_id=request_id)


def usage_of(value: Any) -> TokenUsage | None:
    """The usage a reply reports, or ``None`` when it reports none (absent, ``null``,
    or without a number of input tokens)."""
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    if not _is_int(prompt):
        return None
    completion = value.get("completion_tokens")
    cached = reasoning = None
    details = value.get("prompt_tokens_details")
    if isinstance(details, dict) and _is_int(details.get("cached_tokens")):
        cached = details["cached_tokens"]
    details = value.get("completion_tokens_details")
    if isinstance(details, dict) and _is_int(details.get("reasoning_tokens")):
        reasoning = details["reasoning_tokens"]
    return TokenUsage(
        prompt,
        completion if _is_int(completion) else 0,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _content(
    read: _Reader, obj: Mapping[str, Any], path: str
) -> str | tuple[ContentPart, ...] | None:
    value = obj.get("content")
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise read.wrong(f"{path}.content", "a string, an array of parts or null", value)
    parts: list[ContentPart] = []
    for i, part in enumerate(value):
        if isinstance(part, str):  # a bare string in the list: text
            parts.append(TextPart(part))
        elif isinstance(part, dict):
            parts.append(part_from_json(part))
        else:
            raise read.wrong(f"{path}.content.{i}", "an object", part)
    return tuple(parts)


def _arguments(value: Any) -> str:
    # The arguments are JSON text; a server that sends the object itself is taken.
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _tool_calls(read: _Reader, obj: Mapping[str, Any], path: str) -> tuple[ToolCall, ...]:
    calls = []
    for i, item in enumerate(read.items(obj, "tool_calls", path)):
        at = f"{path}.tool_calls.{i}"
        if not isinstance(item, dict):
            raise read.wrong(at, "an object", item)
        function = read.mapping(item, "function", at) or {}
        name = read.text(function, "name", f"{at}.function")
        if name is None:
            raise InvalidResponse(f"{read.where}: the reply has no {at + '.function.name'!r}")
        calls.append(
            ToolCall(
                read.text(item, "id", at) or "",
                name,
                _arguments(function.get("arguments")),
                type=read.text(item, "type", at) or "function",
            )
        )
    return tuple(calls)


def _top(read: _Reader, value: Any, path: str) -> TopLogprob:
    if not isinstance(value, dict):
        raise read.wrong(path, "an object", value)
    token = read.text(value, "token", path) or ""
    logprob = value.get("logprob")
    if not isinstance(logprob, _NUMBER) or isinstance(logprob, bool):
        raise read.wrong(f"{path}.logprob", "a number", logprob)
    raw = value.get("bytes")
    data = tuple(raw) if isinstance(raw, list) and all(_is_int(b) for b in raw) else None
    return TopLogprob(token, float(logprob), data)


def _token_logprobs(read: _Reader, value: Any, path: str) -> tuple[TokenLogprob, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise read.wrong(path, "an array", value)
    tokens = []
    for i, item in enumerate(value):
        top = _top(read, item, f"{path}.{i}")
        alternatives = tuple(
            _top(read, alt, f"{path}.{i}.top_logprobs.{j}")
            for j, alt in enumerate(read.items(item, "top_logprobs", f"{path}.{i}"))
        )
        tokens.append(TokenLogprob(top.token, top.logprob, top.bytes, alternatives))
    return tuple(tokens)


def _logprobs(read: _Reader, obj: Mapping[str, Any], path: str) -> Logprobs | None:
    value = read.mapping(obj, "logprobs", path)
    if value is None:
        return None
    return Logprobs(
        _token_logprobs(read, value.get("content"), f"{path}.logprobs.content"),
        _token_logprobs(read, value.get("refusal"), f"{path}.logprobs.refusal"),
    )


def chat_reply(
    data: Any,
    where: str,
    *,
    model: str,
    response_model: str | None = None,
) -> ChatReply:
    """The :class:`ChatReply` in a chat completion's JSON body (choices in index order).

    Raises:
        InvalidResponse: The body is not a chat completion.
    """
    read = _Reader(where)
    if not isinstance(data, dict):
        raise read.wrong("$", "an object", data)
    if "choices" not in data:
        raise InvalidResponse(f"{where}: the reply has no 'choices'")
    choices = []
    for position, item in enumerate(read.items(data, "choices", "$")):
        path = f"choices.{position}"
        if not isinstance(item, dict):
            raise read.wrong(path, "an object", item)
        body = read.mapping(item, "message", path)
        if body is None:
            raise InvalidResponse(f"{where}: the reply has no {path + '.message'!r}")
        at = f"{path}.message"
        message = ChatMessage(
            read.text(body, "role", at) or "assistant",
            _content(read, body, at),
            tool_calls=_tool_calls(read, body, at),
            refusal=read.text(body, "refusal", at),
        )
        index = read.integer(item, "index")
        choices.append(
            Choice(
                position if index is None else index,
                message,
                read.text(item, "finish_reason", path),
                logprobs=_logprobs(read, item, path),
            )
        )
    if not choices:
        # Nothing to read: an answer without one choice is no answer.
        raise InvalidResponse(f"{where}: the reply has no choices ('choices' is empty)")
    choices.sort(key=lambda c: c.index)
    return ChatReply(
        tuple(choices),
        read.text(data, "model", "$") or model,
        id=read.text(data, "id", "$"),
        created=read.integer(data, "created"),
        system_fingerprint=read.text(data, "system_fingerprint", "$"),
        service_tier=read.text(data, "service_tier", "$"),
        usage=usage_of(data.get("usage")),
        response_model=response_model,
    )


def _floats_from_base64(text: str, read: _Reader, path: str) -> tuple[float, ...]:
    # OpenAI's base64 embeddings are little-endian float32s.
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidResponse(f"{read.where}: {path!r} is not valid base64: {exc}") from exc
    if len(raw) % 4:
        raise InvalidResponse(
            f"{read.where}: {path!r} holds {len(raw)} bytes, not a whole number of float32s"
        )
    values = array.array("f", raw)
    if sys.byteorder == "big":
        values.byteswap()
    return tuple(values)


def embeddings_reply(data: Any, where: str, *, model: str, inputs: int) -> EmbeddingsReply:
    """The :class:`EmbeddingsReply` in an embeddings JSON body, vectors ordered by ``index``.

    Raises:
        InvalidResponse: Not an embeddings reply, a vector that is not numbers
            (or base64 of them), or not one vector for each of *inputs*.
    """
    read = _Reader(where)
    if not isinstance(data, dict):
        raise read.wrong("$", "an object", data)
    if "data" not in data:
        raise InvalidResponse(f"{where}: the reply has no 'data'")
    by_index: dict[int, tuple[float, ...]] = {}
    for position, item in enumerate(read.items(data, "data", "$")):
        path = f"data.{position}"
        if not isinstance(item, dict):
            raise read.wrong(path, "an object", item)
        vector = item.get("embedding")
        if isinstance(vector, str):
            floats = _floats_from_base64(vector, read, f"{path}.embedding")
        elif isinstance(vector, list) and set(map(type, vector)) <= _JSON_NUMBERS:
            # Checked and converted in C: a vector has hundreds to thousands of numbers.
            floats = tuple(map(float, vector))
        else:
            raise InvalidResponse(
                f"{where}: {path + '.embedding'!r} should hold numbers (or base64 of them)"
            )
        index = read.integer(item, "index")
        index = position if index is None else index
        if index in by_index:
            raise InvalidResponse(f"{where}: two vectors have index {index}")
        by_index[index] = floats
    if sorted(by_index) != list(range(inputs)):
        raise InvalidResponse(
            f"{where}: {inputs} inputs but vectors for indexes {sorted(by_index)[:10]}"
        )
    return EmbeddingsReply(
        tuple(by_index[i] for i in range(inputs)),
        read.text(data, "model", "$") or model,
        usage_of(data.get("usage")),
    )


# --- streams ----------------------------------------------------------------------------


class _ChoiceSoFar:
    """What the chunks said of one choice so far."""

    __slots__ = ("calls", "finish_reason", "logprobs", "refusal", "role", "text")

    def __init__(self) -> None:
        self.role: str | None = None
        self.text: list[str] = []
        self.refusal: list[str] = []
        # index -> [id, name, argument pieces, type]
        self.calls: dict[int, list[Any]] = {}
        self.finish_reason: str | None = None
        self.logprobs: list[TokenLogprob] = []

    def call_index(self, delta: Mapping[str, Any], call_id: str | None) -> int:
        # Servers that send no index (Gemini's endpoint, some vLLM versions)
        # start a new call with a new id, and continue the last one without.
        index = delta.get("index")
        if _is_int(index):
            return index
        if call_id is not None and all(c[0] != call_id for c in self.calls.values()):
            return len(self.calls)
        if call_id is not None:
            return next(i for i, c in self.calls.items() if c[0] == call_id)
        return max(self.calls, default=0)

    def add_call(self, index: int, call_id: str | None, name: str | None, args: str) -> None:
        call = self.calls.setdefault(index, [None, None, [], "function"])
        if call_id and call[0] is None:
            call[0] = call_id
        if name:
            # OpenAI sends the name once; a server that repeats it is not concatenated.
            call[1] = name if call[1] is None or call[1] == name else call[1] + name
        if args:
            call[2].append(args)

    def choice(self, index: int) -> Choice:
        calls = tuple(
            ToolCall(c[0] or "", c[1] or "", "".join(c[2]), type=c[3])
            for _, c in sorted(self.calls.items())
        )
        message = ChatMessage(
            self.role or "assistant",
            "".join(self.text) if self.text else None,
            tool_calls=calls,
            refusal="".join(self.refusal) if self.refusal else None,
        )
        logprobs = Logprobs(tuple(self.logprobs)) if self.logprobs else None
        return Choice(index, message, self.finish_reason, logprobs=logprobs)


class StreamAssembly:
    """Turns a stream's events into :class:`ChatChunk` pieces, and assembles the whole reply.

    Feed it each event's decoded JSON; it returns the chunks worth
    delivering (new text, refusal, tool-call pieces or a finish reason).
    """

    def __init__(self, where: str, *, model: str, response_model: str | None = None) -> None:
        self.read = _Reader(where)
        self.model = model
        self.response_model = response_model
        self.id: str | None = None
        self.created: int | None = None
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        self.usage: TokenUsage | None = None
        self.choices: dict[int, _ChoiceSoFar] = {}

    @property
    def finished(self) -> bool:
        """Whether every choice the stream began has its finish reason."""
        return bool(self.choices) and all(
            c.finish_reason is not None for c in self.choices.values()
        )

    def feed(self, data: Any) -> list[ChatChunk]:
        """The chunks in one event's JSON."""
        read = self.read
        if not isinstance(data, dict):
            raise read.wrong("$", "an object", data)
        self.id = read.text(data, "id", "$") or self.id
        self.model = read.text(data, "model", "$") or self.model
        self.created = read.integer(data, "created") or self.created
        self.system_fingerprint = (
            read.text(data, "system_fingerprint", "$") or self.system_fingerprint
        )
        self.service_tier = read.text(data, "service_tier", "$") or self.service_tier
        usage = usage_of(data.get("usage"))
        if usage is not None:  # the usage chunk, or a server that sends usage in every chunk
            self.usage = usage
        chunks = []
        for position, item in enumerate(read.items(data, "choices", "$")):
            path = f"choices.{position}"
            if not isinstance(item, dict):
                raise read.wrong(path, "an object", item)
            chunk = self._choice(item, path, position)
            if chunk is not None:
                chunks.append(chunk)
        return chunks

    def _choice(self, item: Mapping[str, Any], path: str, position: int) -> ChatChunk | None:
        read = self.read
        index = read.integer(item, "index")
        index = position if index is None else index
        state = self.choices.setdefault(index, _ChoiceSoFar())
        at = f"{path}.delta"
        delta = read.mapping(item, "delta", path) or {}
        role = read.text(delta, "role", at)
        state.role = role or state.role
        content = _content(read, delta, at)
        text = (
            content
            if content is None or isinstance(content, str)
            else "".join(p.text for p in content if isinstance(p, TextPart))
        )
        refusal = read.text(delta, "refusal", at) or ""
        if isinstance(content, tuple):
            refusal += "".join(p.refusal for p in content if isinstance(p, RefusalPart))
        if text:
            state.text.append(text)
        if refusal:
            state.refusal.append(refusal)
        deltas = []
        for i, raw in enumerate(read.items(delta, "tool_calls", at)):
            call_at = f"{at}.tool_calls.{i}"
            if not isinstance(raw, dict):
                raise read.wrong(call_at, "an object", raw)
            function = read.mapping(raw, "function", call_at) or {}
            call_id = read.text(raw, "id", call_at)
            name = read.text(function, "name", f"{call_at}.function")
            args = _arguments(function.get("arguments"))
            call_index = state.call_index(raw, call_id)
            state.add_call(call_index, call_id, name, args)
            deltas.append(ToolCallDelta(call_index, call_id, name, args))
        logprobs = _logprobs(read, item, path)
        if logprobs is not None:
            state.logprobs.extend(logprobs.content)
        finish = read.text(item, "finish_reason", path)
        if finish is not None:
            state.finish_reason = finish
        if not (text or refusal or deltas or finish):
            return None
        return ChatChunk(
            text or "",
            finish,
            index=index,
            role=role,
            refusal=refusal,
            tool_calls=tuple(deltas),
            logprobs=logprobs,
        )

    def reply(self) -> ChatReply:
        """The whole reply, as the chunks so far told it."""
        return ChatReply(
            tuple(state.choice(i) for i, state in sorted(self.choices.items())),
            self.model,
            id=self.id,
            created=self.created,
            system_fingerprint=self.system_fingerprint,
            service_tier=self.service_tier,
            usage=self.usage,
            response_model=self.response_model,
        )
