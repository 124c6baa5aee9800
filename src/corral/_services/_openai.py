"""Service actors for OpenAI-compatible APIs: chat completions and embeddings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Generic, TypeVar

import attrs
import httpx
from opentelemetry import trace

from .._core._actor import streams
from .._core._exceptions import ProtocolError
from .._core._messages import message
from ..telemetry._instrument import client_span
from ._http import DEFAULT_HTTP_TIMEOUT, HttpService
from ._policy import ServicePolicy

__all__ = [
    "ChatChunk",
    "ChatMessage",
    "ChatReply",
    "ChatRequest",
    "EmbeddingsReply",
    "EmbeddingsRequest",
    "OpenAIChat",
    "OpenAIEmbeddings",
    "TokenUsage",
]

DEFAULT_OPENAI_URL: Final = "https://api.openai.com/v1"
ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")
_PROVIDER: Final = "openai"
_CHAT: Final = "/chat/completions"
_EMBEDDINGS: Final = "/embeddings"


@message(name="openai.ChatMessage")
class ChatMessage:
    """One message of a chat: ``role`` is ``system``, ``user``, ``assistant`` (or ``tool``)."""

    role: str
    content: str


def _as_messages(value: Sequence[ChatMessage | Mapping[str, str]]) -> tuple[ChatMessage, ...]:
    return tuple(
        m if isinstance(m, ChatMessage) else ChatMessage(role=m["role"], content=m["content"])
        for m in value
    )


@message(name="openai.ChatRequest")
class ChatRequest:
    """A chat completion request; ``model`` defaults to the actor's."""

    messages: tuple[ChatMessage, ...] = attrs.field(converter=_as_messages)
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@message(name="openai.TokenUsage")
class TokenUsage:
    """Tokens a call used, as the provider reported them."""

    input_tokens: int
    output_tokens: int = 0

    @property
    def total(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


@message(name="openai.ChatReply")
class ChatReply:
    """The reply to a :class:`ChatRequest`."""

    content: str
    finish_reason: str | None
    model: str
    usage: TokenUsage


@message(name="openai.ChatChunk")
class ChatChunk:
    """One piece of a streamed chat reply (:meth:`ActorRef.stream`)."""

    content: str
    finish_reason: str | None = None


def _as_inputs(value: str | Iterable[str]) -> tuple[str, ...]:
    # A str is one input, as in OpenAI's API (not its characters).
    return (value,) if isinstance(value, str) else tuple(value)


@message(name="openai.EmbeddingsRequest")
class EmbeddingsRequest:
    """Texts to embed; ``model`` defaults to the actor's."""

    inputs: tuple[str, ...] = attrs.field(converter=_as_inputs)
    model: str | None = None


@message(name="openai.EmbeddingsReply")
class EmbeddingsReply:
    """One vector per input, in order."""

    vectors: tuple[tuple[float, ...], ...]
    model: str
    usage: TokenUsage


class _Shape:
    """Reads a JSON reply, naming the path of anything missing or mistyped."""

    def __init__(self, data: Any, where: str) -> None:
        self.data = data
        self.where = where

    def get(self, path: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        value = self.data
        for part in path.split("."):
            if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            elif isinstance(value, dict) and part in value:
                value = value[part]
            else:
                if optional:
                    return None
                raise ProtocolError(f"{self.where}: the reply has no {path!r}")
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise ProtocolError(
                f"{self.where}: {path!r} should be {getattr(kind, '__name__', kind)}, "
                f"got {type(value).__name__}"
            )
        return value


def _record_reply(
    span: trace.Span | None,
    *,
    model: str,
    response_id: str | None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    finish_reason: str | None = None,
) -> None:
    # What the reply says, as the GenAI conventions name it; what it does not
    # say is left out (embeddings have no output tokens: none, not 0).
    if span is None or not span.is_recording():
        return
    attributes: dict[str, Any] = {"gen_ai.response.model": model}
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    if input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = output_tokens
    if finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = (finish_reason,)
    span.set_attributes(attributes)


class _OpenAIService(HttpService[ReqT, ReplyT], Generic[ReqT, ReplyT]):
    """What the OpenAI-compatible actors share: a default model, OpenAI's URL and key."""

    policy = ServicePolicy()

    def __init__(
        self,
        *,
        model: str,
        base_url: str = DEFAULT_OPENAI_URL,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        secret_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            headers=headers,
            api_key_env=api_key_env,
            secret_headers=secret_headers,
            timeout=timeout,
            transport=transport,
        )
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        self.model = model
        url = httpx.URL(self.base_url)
        # The span template is the absolute path (the HTTP conventions'
        # url.template): base_url's own path, then the endpoint.
        self._prefix = url.path.rstrip("/")
        self._server: dict[str, Any] = {
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }

    def _genai_span(
        self, operation: str, model: str, attributes: Mapping[str, Any]
    ) -> AbstractContextManager[trace.Span | None]:
        """The GenAI semantic-convention span around one model call."""
        return client_span(
            f"{operation} {model}",
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": _PROVIDER,
                "gen_ai.request.model": model,
                **self._server,
                **attributes,
            },
        )


class OpenAIChat(_OpenAIService[ChatRequest, ChatReply]):
    """Chat completions from any OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio...).

    ``POST {base_url}/chat/completions``. Retries transient failures by
    default (a :class:`corral.ServicePolicy` with the default
    :class:`corral.RetryPolicy`; give ``policy=`` at spawn to add a rate
    limiter or a breaker). For rate limiters that count tokens, a call is
    estimated at a quarter of its characters plus its ``max_tokens``, and
    corrected with the usage the server reports.

    Args:
        model: The default model.
        base_url: The server (default OpenAI's).
        api_key_env: Environment variable with the API key (default
            ``OPENAI_API_KEY``; ``None`` for servers without keys).
        timeout, headers, secret_headers, transport: As :class:`HttpService`.
    """

    def estimate_tokens(self, msg: ChatRequest) -> int:
        """Tokens a request may use: characters / 4, plus the reply's ``max_tokens``."""
        chars = sum(len(m.content) + len(m.role) for m in msg.messages)
        return max(1, chars // 4) + (msg.max_tokens or 0)

    def reported_tokens(self, reply: ChatReply) -> int:
        """Tokens the server says the call used."""
        return reply.usage.total

    async def handle(self, msg: ChatRequest) -> ChatReply:
        model = msg.model or self.model
        body = self._body(msg, model)
        request_attrs: dict[str, Any] = {}
        if msg.temperature is not None:
            request_attrs["gen_ai.request.temperature"] = msg.temperature
        if msg.max_tokens is not None:
            request_attrs["gen_ai.request.max_tokens"] = msg.max_tokens
        with self._genai_span("chat", model, request_attrs) as span:
            response = await self.request("POST", _CHAT, json=body, template=self._prefix + _CHAT)
            shape = _Shape(self.parse_json(response), f"POST {self._prefix}{_CHAT}")
            content = shape.get("choices.0.message.content", str, optional=True) or ""
            finish = shape.get("choices.0.finish_reason", str, optional=True)
            output_tokens = shape.get("usage.completion_tokens", int, optional=True)
            usage = TokenUsage(
                input_tokens=shape.get("usage.prompt_tokens", int),
                output_tokens=output_tokens or 0,
            )
            reply_model = shape.get("model", str, optional=True) or model
            shape.get("choices.0.message", dict)
            _record_reply(
                span,
                model=reply_model,
                response_id=shape.get("id", str, optional=True),
                input_tokens=usage.input_tokens,
                output_tokens=output_tokens,
                finish_reason=finish,
            )
            return ChatReply(content=content, finish_reason=finish, model=reply_model, usage=usage)

    @streams(ChatRequest)
    async def stream_chat(self, msg: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the reply (server-sent events) as :class:`ChatChunk` pieces."""
        model = msg.model or self.model
        body = self._body(msg, model)
        body["stream"] = True
        where = f"POST {self._prefix}{_CHAT} (stream)"
        # What the chunks say of the reply as a whole, for the span.
        response_id: str | None = None
        reply_model = model
        final: str | None = None
        with self._genai_span("chat", model, {"gen_ai.request.stream": True}) as span:
            async with self.stream_request(
                "POST", _CHAT, json=body, template=self._prefix + _CHAT
            ) as response:
                finished = False
                # Read to the end of the body even after [DONE]: leaving httpx's
                # byte iterators half-consumed leaves them to the garbage collector.
                async for line in response.aiter_lines():
                    if finished or not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        continue
                    try:
                        event = json.loads(data)
                    except ValueError as exc:
                        raise ProtocolError(
                            f"{where}: an event is not JSON: {self.redact(data)[:80]!r}"
                        ) from exc
                    shape = _Shape(event, where)
                    response_id = shape.get("id", str, optional=True) or response_id
                    reply_model = shape.get("model", str, optional=True) or reply_model
                    content = shape.get("choices.0.delta.content", str, optional=True) or ""
                    finish = shape.get("choices.0.finish_reason", str, optional=True)
                    final = finish or final
                    if content or finish:
                        yield ChatChunk(content=content, finish_reason=finish)
            _record_reply(span, model=reply_model, response_id=response_id, finish_reason=final)

    def _body(self, msg: ChatRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in msg.messages],
        }
        if msg.temperature is not None:
            body["temperature"] = msg.temperature
        if msg.max_tokens is not None:
            body["max_tokens"] = msg.max_tokens
        return body


class OpenAIEmbeddings(_OpenAIService[EmbeddingsRequest, EmbeddingsReply]):
    """Embeddings from any OpenAI-compatible server: ``POST {base_url}/embeddings``.

    Arguments as :class:`OpenAIChat`. Token estimate: characters / 4.
    """

    def estimate_tokens(self, msg: EmbeddingsRequest) -> int:
        """Tokens a request may use: characters / 4."""
        return max(1, sum(len(text) for text in msg.inputs) // 4)

    def reported_tokens(self, reply: EmbeddingsReply) -> int:
        """Tokens the server says the call used."""
        return reply.usage.total

    async def handle(self, msg: EmbeddingsRequest) -> EmbeddingsReply:
        model = msg.model or self.model
        with self._genai_span("embeddings", model, {}) as span:
            response = await self.request(
                "POST",
                _EMBEDDINGS,
                json={"model": model, "input": list(msg.inputs)},
                template=self._prefix + _EMBEDDINGS,
            )
            where = f"POST {self._prefix}{_EMBEDDINGS}"
            shape = _Shape(self.parse_json(response), where)
            items = shape.get("data", list)
            vectors: list[tuple[float, ...]] = []
            for index in range(len(items)):
                vector = shape.get(f"data.{index}.embedding", list)
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
                    raise ProtocolError(f"{where}: 'data.{index}.embedding' should hold numbers")
                vectors.append(tuple(float(x) for x in vector))
            if len(vectors) != len(msg.inputs):
                raise ProtocolError(f"{where}: {len(msg.inputs)} inputs but {len(vectors)} vectors")
            usage = TokenUsage(input_tokens=shape.get("usage.prompt_tokens", int))
            reply_model = shape.get("model", str, optional=True) or model
            _record_reply(
                span,
                model=reply_model,
                response_id=shape.get("id", str, optional=True),
                input_tokens=usage.input_tokens,
            )
            return EmbeddingsReply(vectors=tuple(vectors), model=reply_model, usage=usage)
