"""Service actors for OpenAI-compatible APIs: chat completions and embeddings.

The messages are in :mod:`._openai_types`, their wire format in
:mod:`._openai_wire`; this module calls the API and traces the calls.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Final, Generic, TypeVar

import attrs
import httpx
from opentelemetry import trace

from .._core._actor import streams
from .._core._exceptions import CorralError
from ..telemetry._instrument import UNTRACED, client_span, is_traced
from . import _structured
from ._errors import ErrorDetail, parse_error, provider_error
from ._exceptions import HttpStatusError, InvalidResponse, TransportError
from ._http import DEFAULT_HTTP_TIMEOUT, HttpService, request_id
from ._openai_types import (
    ChatChunk,
    ChatReply,
    ChatRequest,
    EmbeddingsReply,
    EmbeddingsRequest,
    ImagePart,
    RawPart,
    RefusalPart,
    TextPart,
)
from ._openai_wire import (
    StreamAssembly,
    chat_body,
    chat_reply,
    embeddings_body,
    embeddings_reply,
    raise_for_error,
)
from ._policy import ServicePolicy
from ._sse import SSEDecoder, SSEEvent
from ._transport import HttpClientName, HttpResponse

__all__ = ["DEFAULT_OPENAI_URL", "OpenAIChat", "OpenAIEmbeddings"]

#: The official client's default: OpenAI's API prefix, ``/v1`` included.
DEFAULT_OPENAI_URL: Final = "https://api.openai.com/v1"
ReqT = TypeVar("ReqT")
ReplyT = TypeVar("ReplyT")
_PROVIDER: Final = "openai"
_CHAT: Final = "/chat/completions"
_EMBEDDINGS: Final = "/embeddings"
_DONE: Final = "[DONE]"


def _where(method: str, template: str) -> str:
    return f"{method} {template}"


class _OpenAIService(HttpService[ReqT, ReplyT], Generic[ReqT, ReplyT]):
    """What the OpenAI-compatible actors share: a default model, the endpoint, the key."""

    policy = ServicePolicy()
    #: The endpoint below ``base_url`` that the actor posts to.
    _ENDPOINT: ClassVar[str]

    def __init__(
        self,
        *,
        model: str,
        base_url: str = DEFAULT_OPENAI_URL,
        api_key_env: str | None = "OPENAI_API_KEY",
        api_key_header: str = "Authorization",
        query: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        secret_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: HttpClientName = "auto",
    ) -> None:
        if not isinstance(api_key_header, str) or not api_key_header:
            raise ValueError(f"api_key_header must be a header name, got {api_key_header!r}")
        bearer = api_key_header.lower() == "authorization"
        if isinstance(base_url, str) and "?" in base_url:
            # A pasted URL with its query (Azure's ?api-version=...): the
            # query goes after each endpoint's path, not inside the prefix.
            base_url, _, query_text = base_url.partition("?")
            query = {
                **dict(urllib.parse.parse_qsl(query_text, keep_blank_values=True)),
                **(query or {}),
            }
        if isinstance(secret_headers, str):
            raise TypeError(f"secret_headers must be header names, got the str {secret_headers!r}")
        super().__init__(
            base_url=base_url,
            headers=headers,
            # A key in a header of its own is sent by on_start below, not as a Bearer token.
            api_key_env=api_key_env if bearer else None,
            secret_headers=tuple(secret_headers) if bearer else (*secret_headers, api_key_header),
            timeout=timeout,
            transport=transport,
            http_client=http_client,
        )
        self.api_key_env = api_key_env
        self.api_key_header = api_key_header
        self._key_in_header = not bearer and api_key_env is not None
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        self.model = model
        query = dict(query or {})
        for name, value in query.items():
            if not (isinstance(name, str) and isinstance(value, str)):
                raise TypeError(f"query must map str to str, got {name!r}: {value!r}")
        self.query = query
        self._query = "?" + urllib.parse.urlencode(query) if query else ""
        url = httpx.URL(self.base_url)
        # The span template is the absolute path (the HTTP conventions'
        # url.template): base_url's own path, then the endpoint.
        self._prefix = url.path.rstrip("/")
        self._server: dict[str, Any] = {
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        self._path, self._template = self._endpoint(self._ENDPOINT)
        self._where = _where("POST", self._template)

    async def on_start(self) -> None:
        if not self._key_in_header:
            await super().on_start()
            return
        # The key goes in its own header (Azure's api-key): give HttpService the
        # header for this incarnation only, so that the key stays in no attribute.
        env = self.api_key_env
        assert env is not None
        key = os.environ.get(env)
        if not key:
            raise ValueError(f"the environment variable {env} (the API key) is not set")
        headers, self.headers = self.headers, {**self.headers, self.api_key_header: key}
        self.api_key_env = None
        try:
            await super().on_start()
        finally:
            self.headers, self.api_key_env = headers, env

    def _annotate(self, error: HttpStatusError) -> None:
        """Add a note to a 404 from a ``base_url`` without a path: the prefix lacks ``/v1``?"""
        if error.status == 404 and not self._prefix:
            # The usual cause since base_url became the API's prefix.
            error.add_note(
                f"base_url {self.redact(self.base_url)!r} has no path: OpenAI-compatible "
                "servers take the API's prefix, /v1 included (http://host:port/v1), "
                "and corral no longer adds /v1 itself"
            )

    def _endpoint(self, endpoint: str) -> tuple[str, str]:
        """The path to request (with the query) and its template (without)."""
        return endpoint + self._query, self._prefix + endpoint

    def _genai_span(
        self,
        operation: str,
        model: str,
        attributes: Callable[[], Mapping[str, Any]] | None = None,
    ) -> AbstractContextManager[trace.Span | None]:
        """The GenAI semantic-convention span around one model call.

        *attributes* are the request's own, asked for only when the call is traced.
        """
        if not is_traced():
            return UNTRACED
        return client_span(
            f"{operation} {model}",
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": _PROVIDER,
                "gen_ai.request.model": model,
                **self._server,
                **(attributes() if attributes is not None else {}),
            },
        )


def _output_limit(msg: ChatRequest) -> int | None:
    # max_completion_tokens replaced max_tokens; a request may have either.
    return msg.max_completion_tokens if msg.max_completion_tokens is not None else msg.max_tokens


def _chat_attributes(msg: ChatRequest) -> dict[str, Any]:
    """What the GenAI conventions record of a chat request (never its messages)."""
    found: dict[str, Any] = {}
    for name, key in (
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
        ("seed", "gen_ai.request.seed"),
    ):
        value = getattr(msg, name)
        if value is not None:
            found[key] = value
    limit = _output_limit(msg)
    if limit is not None:
        found["gen_ai.request.max_tokens"] = limit
    if msg.stop is not None:
        found["gen_ai.request.stop_sequences"] = (
            (msg.stop,) if isinstance(msg.stop, str) else msg.stop
        )
    if msg.n is not None and msg.n != 1:
        found["gen_ai.request.choice.count"] = msg.n
    if msg.response_format is not None:
        found["gen_ai.output.type"] = "text" if msg.response_format.type == "text" else "json"
    if msg.service_tier is not None and msg.service_tier != "auto":
        found["openai.request.service_tier"] = msg.service_tier
    return found


def _record_chat(span: trace.Span | None, reply: ChatReply) -> None:
    # What the reply says, as the GenAI conventions name it; what it does not
    # say is left out. Tool calls: their names only (arguments are user data).
    if span is None or not span.is_recording():
        return
    found: dict[str, Any] = {"gen_ai.response.model": reply.model}
    if reply.id is not None:
        found["gen_ai.response.id"] = reply.id
    reasons = tuple(c.finish_reason for c in reply.choices if c.finish_reason is not None)
    if reasons:
        found["gen_ai.response.finish_reasons"] = reasons
    tools = tuple(call.name for c in reply.choices for call in c.tool_calls)
    if tools:
        found["corral.gen_ai.tool_calls"] = tools
    if reply.system_fingerprint is not None:
        found["openai.response.system_fingerprint"] = reply.system_fingerprint
    if reply.service_tier is not None:
        found["openai.response.service_tier"] = reply.service_tier
    usage = reply.usage
    if usage is not None:
        found["gen_ai.usage.input_tokens"] = usage.input_tokens
        found["gen_ai.usage.output_tokens"] = usage.output_tokens
        if usage.cached_input_tokens is not None:
            found["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
        if usage.reasoning_tokens is not None:
            found["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    span.set_attributes(found)


def _check_parsed(reply: ChatReply) -> None:
    # A structured reply that does not fit fails the call, where the class
    # is known (always in the caller's process; elsewhere the caller checks).
    name = reply.response_model
    if name is not None and _structured.known_class(name) is not None:
        reply.parsed  # noqa: B018  # parsing raises the InvalidResponse that names the path


def _chunks(count: int) -> str:
    return "1 chunk" if count == 1 else f"{count} chunks"


def _is_json(response: HttpResponse) -> bool:
    kind: str = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _whole_chunks(reply: ChatReply) -> list[ChatChunk]:
    """A whole reply as the chunks a stream of it would end with (the last carries it)."""
    chunks = [
        ChatChunk(
            content=choice.content,
            finish_reason=choice.finish_reason,
            index=choice.index,
            role=choice.message.role,
            refusal=choice.refusal or "",
        )
        for choice in reply.choices
    ]
    if not chunks:
        return [ChatChunk(reply=reply)]
    chunks[-1] = _with_reply(chunks[-1], reply)
    return chunks


def _with_reply(chunk: ChatChunk, reply: ChatReply) -> ChatChunk:
    return attrs.evolve(chunk, reply=reply)  # type: ignore[misc]  # mypy: @message is attrs


class OpenAIChat(_OpenAIService[ChatRequest, ChatReply]):
    """Chat completions from any OpenAI-compatible server (OpenAI, Azure, vLLM, Ollama...).

    ``POST {base_url}/chat/completions``, where ``base_url`` is the API's
    prefix as the official client takes it, ``/v1`` included
    (``https://api.openai.com/v1``, ``http://localhost:11434/v1``,
    ``https://generativelanguage.googleapis.com/v1beta/openai``, or an Azure
    deployment's ``https://<resource>.openai.azure.com/openai/deployments/<name>``
    with ``query={"api-version": ...}`` and ``api_key_header="api-key"``).

    ``handle`` answers a :class:`corral.ChatRequest` with a
    :class:`corral.ChatReply`; ``ref.stream(request)`` streams it as
    :class:`corral.ChatChunk` pieces, the last of which carries the whole
    reply. Retries transient failures by default (a
    :class:`corral.ServicePolicy` with the default :class:`corral.RetryPolicy`;
    give ``policy=`` at spawn to add a rate limiter or a breaker). For rate
    limiters that count tokens, a call is estimated by
    :meth:`estimate_tokens` and corrected with the usage the server reports,
    streamed calls included.

    Args:
        model: The default model.
        base_url: The API's prefix (default OpenAI's, ``https://api.openai.com/v1``).
        api_key_env: Environment variable with the API key (default
            ``OPENAI_API_KEY``; ``None`` for servers without keys).
        api_key_header: The header that carries the key: ``Authorization``
            (the default) sends ``Bearer <key>``; any other (Azure's
            ``api-key``) the key as it is, and is a secret header.
        query: Query parameters for every request (Azure's ``api-version``).
            Not secret: keys belong in *api_key_env*.
        stream_usage: Ask for the usage of streamed calls
            (``stream_options: {"include_usage": true}``; default ``True``).
            ``False`` for servers that refuse the option; a request's own
            ``stream_options`` wins over either.
        timeout, headers, secret_headers, transport, http_client: As
            :class:`corral.HttpService`.
    """

    _ENDPOINT = _CHAT
    #: Tokens estimated for an image part (``detail`` unset, ``"auto"`` or
    #: ``"high"``): OpenAI's count for a 1024x1024 image in high detail.
    image_tokens: ClassVar[int] = 765
    #: Tokens estimated for an image part with ``detail="low"`` (OpenAI's flat rate).
    low_detail_image_tokens: ClassVar[int] = 85

    def __init__(
        self,
        *,
        model: str,
        base_url: str = DEFAULT_OPENAI_URL,
        api_key_env: str | None = "OPENAI_API_KEY",
        api_key_header: str = "Authorization",
        query: Mapping[str, str] | None = None,
        stream_usage: bool = True,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        secret_headers: Iterable[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: HttpClientName = "auto",
    ) -> None:
        super().__init__(
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            api_key_header=api_key_header,
            query=query,
            timeout=timeout,
            headers=headers,
            secret_headers=secret_headers,
            transport=transport,
            http_client=http_client,
        )
        self.stream_usage = bool(stream_usage)

    def estimate_tokens(self, msg: ChatRequest) -> int:
        """Tokens a request may use, before the server says.

        Characters / 4 of the text of every message (roles, names, text and
        refusal parts, tool calls and their arguments), of the tools'
        definitions and of other parts' JSON; plus :attr:`image_tokens` per
        image part (:attr:`low_detail_image_tokens` with ``detail="low"``);
        plus the reply's limit (``max_completion_tokens``, else
        ``max_tokens``) for each of the ``n`` choices.
        """
        chars = 0
        images = 0
        for m in msg.messages:
            chars += len(m.role) + len(m.name or "") + len(m.refusal or "")
            content = m.content
            if isinstance(content, str):
                chars += len(content)
            elif content is not None:
                for part in content:
                    if isinstance(part, TextPart):
                        chars += len(part.text)
                    elif isinstance(part, RefusalPart):
                        chars += len(part.refusal)
                    elif isinstance(part, ImagePart):
                        low = part.detail == "low"
                        images += self.low_detail_image_tokens if low else self.image_tokens
                    elif isinstance(part, RawPart):
                        chars += len(json.dumps(part.data, default=str))
            for call in m.tool_calls:
                chars += len(call.name) + len(call.arguments)
        for tool in msg.tools:
            chars += len(tool.name) + len(tool.description or "")
            chars += len(json.dumps(tool.parameters)) if tool.parameters is not None else 0
        limit = _output_limit(msg)
        return max(1, chars // 4) + images + (limit or 0) * (msg.n or 1)

    def reported_tokens(self, reply: ChatReply | ChatChunk) -> int | None:
        """Tokens the server says the call used (``None`` when it does not say).

        For a streamed call, *reply* is its last chunk, which carries the
        assembled reply and its usage.
        """
        if isinstance(reply, ChatChunk):
            if reply.reply is None:
                return None
            reply = reply.reply
        return reply.usage.total if reply.usage is not None else None

    async def handle(self, msg: ChatRequest) -> ChatReply:
        model = msg.model or self.model
        body = chat_body(msg, model)
        with self._genai_span("chat", model, lambda: _chat_attributes(msg)) as span:
            response = await self.request(
                "POST",
                self._path,
                json=body,
                headers=msg.extra_headers or None,
                template=self._template,
            )
            data = self.parse_json(response)
            raise_for_error(
                data, self._where, redact=self.redact, request_id=request_id(response.headers)
            )
            reply = chat_reply(data, self._where, model=model, response_model=msg.response_model)
            _record_chat(span, reply)
            _check_parsed(reply)
            return reply

    @streams(ChatRequest)
    async def stream_chat(self, msg: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the reply (server-sent events) as :class:`ChatChunk` pieces.

        The last chunk carries ``reply``, the whole reply assembled. An error
        event part-way ends the stream with :class:`corral.ProviderError`; a
        stream that ends with neither a finish reason nor ``[DONE]`` was cut
        short, and ends with :class:`corral.TransportError`.
        """
        model = msg.model or self.model
        body = chat_body(msg, model, stream=True, stream_usage=self.stream_usage)
        where = f"{self._where} (stream)"
        assembly = StreamAssembly(where, model=model, response_model=msg.response_model)

        def attributes() -> dict[str, Any]:
            return {**_chat_attributes(msg), "gen_ai.request.stream": True}

        delivered = 0
        # A chunk that ends a choice is held back until the next one, or the
        # end: the last chunk of the stream is the one that carries the reply.
        held: ChatChunk | None = None
        with self._genai_span("chat", model, attributes) as span:
            async with self.stream_request(
                "POST",
                self._path,
                json=body,
                headers=msg.extra_headers or None,
                template=self._template,
            ) as response:
                found_id = request_id(response.headers)
                if _is_json(response):
                    # A server (or gateway) that ignores stream=true answers
                    # with the whole reply, or with its error: take it as is.
                    await response.aread()
                    data = self.parse_json(response)
                    raise_for_error(data, where, redact=self.redact, request_id=found_id)
                    reply = chat_reply(data, where, model=model, response_model=msg.response_model)
                    _record_chat(span, reply)
                    _check_parsed(reply)
                    for whole in _whole_chunks(reply):
                        yield whole
                    return
                decoder = SSEDecoder()
                done = False
                failure: CorralError | None = None
                # Read to the end of the body even after [DONE] or an error:
                # leaving httpx's byte iterators half-consumed leaves them to
                # the garbage collector (trio warns of each).
                async for line in response.aiter_lines():
                    event = None if done or failure else decoder.decode(line)
                    if event is None:
                        continue
                    if event.data == _DONE:
                        done = True
                        continue
                    try:
                        seen = delivered + (held is not None)
                        data = self._event_data(event, where, seen, found_id, last=False)
                        chunks = assembly.feed(data)
                    except CorralError as exc:
                        failure = exc
                        continue
                    for chunk in chunks:
                        if held is not None:
                            yield held
                            delivered += 1
                            held = None
                        if chunk.finish_reason is not None:
                            held = chunk
                        else:
                            yield chunk
                            delivered += 1
                if failure is not None:
                    if held is not None:  # what came before the error is the caller's
                        yield held
                    raise failure
                if not done and decoder.pending:
                    # A last event without its blank line: servers that end the
                    # body right after it. Whole JSON counts; a cut one does not.
                    event = decoder.decode("")
                    if event is not None and event.data == _DONE:
                        done = True
                    elif event is not None:
                        data = self._event_data(event, where, delivered, found_id, last=True)
                        for chunk in assembly.feed(data):
                            if held is not None:
                                yield held
                                delivered += 1
                            held = chunk
            if not (done or assembly.finished):
                raise TransportError(
                    f"{where}: the stream ended after {_chunks(delivered + (held is not None))} "
                    "with neither a finish reason nor [DONE]: it was cut short"
                )
            reply = assembly.reply()
            _record_chat(span, reply)
            _check_parsed(reply)
            yield ChatChunk(reply=reply) if held is None else _with_reply(held, reply)

    def _event_data(
        self, event: SSEEvent, where: str, delivered: int, found_id: str | None, *, last: bool
    ) -> Any:
        """The JSON of one event, or the provider's error if the event is one."""
        happened = f"{where}: the stream carried an error after {_chunks(delivered)}"
        try:
            data = json.loads(event.data)
        except ValueError as exc:
            if event.event == "error":
                detail = ErrorDetail(message=event.data)
                raise provider_error(
                    detail, happened, redact=self.redact, request_id=found_id
                ) from None
            excerpt = self.redact(event.data)[:80]
            if last:
                raise TransportError(
                    f"{where}: the stream ended in the middle of an event: {excerpt!r}"
                ) from exc
            raise InvalidResponse(f"{where}: an event is not JSON: {excerpt!r}") from exc
        if event.event == "error":
            detail = parse_error(data) or ErrorDetail(message=event.data)
            raise provider_error(detail, happened, redact=self.redact, request_id=found_id)
        raise_for_error(data, happened, redact=self.redact, request_id=found_id)
        return data


class OpenAIEmbeddings(_OpenAIService[EmbeddingsRequest, EmbeddingsReply]):
    """Embeddings from any OpenAI-compatible server: ``POST {base_url}/embeddings``.

    Arguments as :class:`OpenAIChat` (without ``stream_usage``). Vectors
    come in the order of the inputs (by the reply's ``index``); base64
    vectors (``encoding_format="base64"``) are decoded to floats. Token
    estimate: characters / 4.
    """

    _ENDPOINT = _EMBEDDINGS

    def estimate_tokens(self, msg: EmbeddingsRequest) -> int:
        """Tokens a request may use: characters / 4."""
        return max(1, sum(len(text) for text in msg.inputs) // 4)

    def reported_tokens(self, reply: EmbeddingsReply) -> int | None:
        """Tokens the server says the call used (``None`` when it does not say)."""
        return reply.usage.total if reply.usage is not None else None

    async def handle(self, msg: EmbeddingsRequest) -> EmbeddingsReply:
        model = msg.model or self.model
        attributes: dict[str, Any] = {}
        if msg.encoding_format is not None:
            attributes["gen_ai.request.encoding_formats"] = (msg.encoding_format,)
        if msg.dimensions is not None:
            attributes["gen_ai.embeddings.dimension.count"] = msg.dimensions
        with self._genai_span("embeddings", model, lambda: attributes) as span:
            response = await self.request(
                "POST",
                self._path,
                json=embeddings_body(msg, model),
                headers=msg.extra_headers or None,
                template=self._template,
            )
            data = self.parse_json(response)
            raise_for_error(
                data,
                self._where,
                redact=self.redact,
                request_id=request_id(response.headers),
                expected="data",
            )
            reply = embeddings_reply(data, self._where, model=model, inputs=len(msg.inputs))
            if span is not None and span.is_recording():
                span.set_attribute("gen_ai.response.model", reply.model)
                if reply.usage is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", reply.usage.input_tokens)
            return reply
