"""The messages of the OpenAI-compatible actors: requests, replies, chunks, and their parts.

Every class here is a corral message (frozen attrs, a registered type name
under ``openai.``), so requests and replies travel through
:class:`corral.Protocol` like any other: their fields are JSON types,
tuples, ``None`` and other messages of this module.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from .._core._messages import message
from . import _structured
from ._exceptions import InvalidResponse

__all__ = [
    "TOOL_CHOICES",
    "ChatChunk",
    "ChatMessage",
    "ChatReply",
    "ChatRequest",
    "Choice",
    "ContentPart",
    "EmbeddingsReply",
    "EmbeddingsRequest",
    "ImagePart",
    "Logprobs",
    "RawPart",
    "RefusalPart",
    "ResponseFormat",
    "TextPart",
    "TokenLogprob",
    "TokenUsage",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "TopLogprob",
]

#: The ``tool_choice`` modes a :class:`ChatRequest` takes as a string.
TOOL_CHOICES: Final = ("auto", "none", "required")
_RESPONSE_TYPES: Final = ("text", "json_object", "json_schema")
_ENCODINGS: Final = ("float", "base64")


# --- content parts --------------------------------------------------------------------


@message(name="openai.TextPart")
class TextPart:
    """Text in a message's content (``{"type": "text", "text": ...}``)."""

    text: str


@message(name="openai.ImagePart")
class ImagePart:
    """An image in a message's content: an ``https://`` URL or a ``data:`` URL.

    ``detail`` is ``"auto"``, ``"low"`` or ``"high"`` (unset: the server's
    default). :meth:`from_bytes` makes the ``data:`` URL of an image you have.
    """

    url: str
    detail: str | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def from_bytes(
        cls, data: bytes, media_type: str = "image/png", *, detail: str | None = None
    ) -> ImagePart:
        """The image *data* as a ``data:<media_type>;base64,...`` URL part."""
        encoded = base64.b64encode(data).decode("ascii")
        return cls(f"data:{media_type};base64,{encoded}", detail=detail)


@message(name="openai.RefusalPart")
class RefusalPart:
    """A refusal in an assistant message's content (``{"type": "refusal", ...}``)."""

    refusal: str


@message(name="openai.RawPart")
class RawPart:
    """A content part corral has no class for, kept and sent as its JSON object.

    For instance ``RawPart({"type": "input_audio", "input_audio": {...}})``,
    or a reasoning part a server puts in a reply.
    """

    data: dict[str, Any] = attrs.field(converter=dict)

    @property
    def type(self) -> str | None:
        """The part's ``type``, if it has one."""
        kind = self.data.get("type")
        return kind if isinstance(kind, str) else None


ContentPart = TextPart | ImagePart | RefusalPart | RawPart


def part_from_json(value: Mapping[str, Any]) -> ContentPart:
    """The part a JSON content part describes (OpenAI's shapes; anything else a RawPart)."""
    kind = value.get("type")
    if kind == "text" and isinstance(value.get("text"), str):
        return TextPart(value["text"])
    if kind == "refusal" and isinstance(value.get("refusal"), str):
        return RefusalPart(value["refusal"])
    if kind == "image_url":
        image = value.get("image_url")
        if isinstance(image, str):
            return ImagePart(image)
        if isinstance(image, Mapping) and isinstance(image.get("url"), str):
            detail = image.get("detail")
            return ImagePart(image["url"], detail=detail if isinstance(detail, str) else None)
    return RawPart(dict(value))


def _as_content(
    value: str | Iterable[ContentPart | Mapping[str, Any]] | None,
) -> str | tuple[ContentPart, ...] | None:
    if value is None or isinstance(value, str):
        return value
    return tuple(p if not isinstance(p, Mapping) else part_from_json(p) for p in value)


def text_of(content: str | Sequence[ContentPart] | None) -> str:
    """The text of *content*: itself, or its text parts joined ("" for none)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextPart))


# --- tools ------------------------------------------------------------------------------


@message(name="openai.ToolCall")
class ToolCall:
    """A call of a function tool the model asks for.

    ``arguments`` is the JSON text the model wrote (it may not be valid
    JSON, or not fit the tool's schema: check it); :meth:`parse_arguments`
    decodes it.
    """

    id: str
    name: str
    arguments: str = ""
    type: str = attrs.field(default="function", kw_only=True)

    def parse_arguments(self) -> dict[str, Any]:
        """The arguments as a JSON object (``{}`` for empty arguments).

        Raises:
            InvalidResponse: They are not JSON, or not an object.
        """
        if not self.arguments.strip():
            return {}
        try:
            value = json.loads(self.arguments)
        except ValueError as exc:
            raise InvalidResponse(
                f"the arguments of tool call {self.id!r} ({self.name}) are not JSON: {exc}"
            ) from exc
        if not isinstance(value, dict):
            raise InvalidResponse(
                f"the arguments of tool call {self.id!r} ({self.name}) should be a JSON "
                f"object, got {type(value).__name__}"
            )
        return value


def _tool_call_from_json(value: Mapping[str, Any]) -> ToolCall:
    function = value.get("function") or {}
    return ToolCall(
        str(value.get("id", "")),
        str(function.get("name", "")),
        str(function.get("arguments", "")),
        type=str(value.get("type", "function")),
    )


def _as_tool_calls(value: Iterable[ToolCall | Mapping[str, Any]]) -> tuple[ToolCall, ...]:
    return tuple(c if not isinstance(c, Mapping) else _tool_call_from_json(c) for c in value)


@message(name="openai.Tool")
class Tool:
    """A function the model may call: its name, what it does, its JSON-schema parameters.

    ``strict=True`` asks the provider to make the arguments fit the schema
    exactly (OpenAI's strict mode: every property required, no others).
    :meth:`from_type` builds such a tool from an attrs class.
    """

    name: str
    description: str | None = attrs.field(default=None, kw_only=True)
    parameters: dict[str, Any] | None = attrs.field(default=None, kw_only=True)
    strict: bool | None = attrs.field(default=None, kw_only=True)

    @classmethod
    def from_type(
        cls, model: type, *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """A strict tool whose parameters are the fields of the attrs class *model*.

        The name defaults to the class name; :func:`corral.json_schema` says
        which field types are understood.
        """
        return cls(
            name if name is not None else model.__name__,
            description=description,
            parameters=_structured.json_schema(model),
            strict=True,
        )


@message(name="openai.ToolChoice")
class ToolChoice:
    """Make the model call the function tool *name* (a ``tool_choice`` that names one)."""

    name: str


def _check_tool_choice(_: Any, __: Any, value: str | ToolChoice | None) -> None:
    if isinstance(value, str) and value not in TOOL_CHOICES:
        raise ValueError(
            f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or a ToolChoice(name), "
            f"got {value!r}"
        )


@message(name="openai.ResponseFormat")
class ResponseFormat:
    """What the reply's content must be: ``text``, any JSON object, or JSON fitting a schema.

    Make one with :meth:`json_object`, :meth:`json_schema` or
    :meth:`from_type`; ``ChatRequest(response_model=cls)`` makes the last
    one for you.
    """

    type: str = attrs.field(validator=attrs.validators.in_(_RESPONSE_TYPES))
    name: str | None = attrs.field(default=None, kw_only=True)
    schema: dict[str, Any] | None = attrs.field(default=None, kw_only=True)
    strict: bool | None = attrs.field(default=None, kw_only=True)
    description: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.type == "json_schema" and (self.name is None or self.schema is None):
            raise ValueError("a json_schema response format needs a name and a schema")

    @classmethod
    def json_object(cls) -> ResponseFormat:
        """Any JSON object (``{"type": "json_object"}``)."""
        return cls("json_object")

    @classmethod
    def json_schema(
        cls,
        name: str,
        schema: Mapping[str, Any],
        *,
        strict: bool | None = True,
        description: str | None = None,
    ) -> ResponseFormat:
        """JSON that fits *schema* (OpenAI's structured outputs; strict by default)."""
        return cls(
            "json_schema", name=name, schema=dict(schema), strict=strict, description=description
        )

    @classmethod
    def from_type(cls, model: builtins.type, *, description: str | None = None) -> ResponseFormat:
        """A strict JSON schema built from the attrs class *model* (:func:`corral.json_schema`)."""
        return cls.json_schema(
            _structured.schema_name(model),
            _structured.json_schema(model),
            strict=True,
            description=description,
        )


# --- requests ---------------------------------------------------------------------------


_MESSAGE_KEYS: Final = frozenset(
    {"role", "content", "name", "tool_calls", "tool_call_id", "refusal"}
)


@message(name="openai.ChatMessage")
class ChatMessage:
    """One message of a chat.

    ``role`` is ``system`` (or ``developer``), ``user``, ``assistant`` or
    ``tool``. ``content`` is a string, a sequence of parts
    (:class:`TextPart`, :class:`ImagePart`, :class:`RefusalPart`,
    :class:`RawPart`, or OpenAI's JSON parts as mappings), or ``None`` (an
    assistant message that only calls tools). An assistant message carries
    the ``tool_calls`` the model made; the ``tool`` message answering one
    names it with ``tool_call_id``. A reply's :attr:`Choice.message` is a
    ``ChatMessage`` to append to the conversation as it is.
    """

    role: str
    content: str | tuple[ContentPart, ...] | None = attrs.field(default=None, converter=_as_content)
    name: str | None = attrs.field(default=None, kw_only=True)
    tool_calls: tuple[ToolCall, ...] = attrs.field(
        default=(), converter=_as_tool_calls, kw_only=True
    )
    tool_call_id: str | None = attrs.field(default=None, kw_only=True)
    refusal: str | None = attrs.field(default=None, kw_only=True)

    @property
    def text(self) -> str:
        """The content as text: the string, or the text parts joined (``""`` for none)."""
        return text_of(self.content)


def _as_message(value: ChatMessage | Mapping[str, Any]) -> ChatMessage:
    if isinstance(value, ChatMessage):
        return value
    unknown = set(value) - _MESSAGE_KEYS
    if unknown:
        raise ValueError(
            f"a chat message has no field {', '.join(sorted(map(repr, unknown)))}; "
            f"it takes {', '.join(sorted(_MESSAGE_KEYS))}"
        )
    if "role" not in value:
        raise ValueError(f"a chat message needs a 'role', got {dict(value)!r:.80}")
    return ChatMessage(
        value["role"],
        value.get("content"),
        name=value.get("name"),
        tool_calls=value.get("tool_calls") or (),
        tool_call_id=value.get("tool_call_id"),
        refusal=value.get("refusal"),
    )


def _as_messages(value: Iterable[ChatMessage | Mapping[str, Any]]) -> tuple[ChatMessage, ...]:
    return tuple(_as_message(m) for m in value)


def _as_stop(value: str | Iterable[str] | None) -> str | tuple[str, ...] | None:
    return value if value is None or isinstance(value, str) else tuple(value)


def _as_tools(value: Iterable[Tool]) -> tuple[Tool, ...]:
    return tuple(value)


def _as_optional_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def _as_logit_bias(value: Mapping[str | int, int] | None) -> dict[str, int] | None:
    # OpenAI's keys are token ids; JSON object keys are strings.
    return None if value is None else {str(k): v for k, v in value.items()}


@message(name="openai.ChatRequest")
class ChatRequest:
    """A chat completion request. Every option left unset is not sent.

    ``messages`` are :class:`ChatMessage` objects or mappings with their
    fields (``{"role": "user", "content": "..."}``); ``model`` defaults to
    the actor's. The options are OpenAI's, under their names:
    ``temperature``, ``top_p``, ``max_tokens`` (older servers) and
    ``max_completion_tokens`` (reasoning models refuse ``max_tokens``),
    ``n``, ``stop`` (a string or several), ``seed``, ``presence_penalty``,
    ``frequency_penalty``, ``logit_bias`` (token id to bias), ``logprobs``
    and ``top_logprobs``, ``tools`` (:class:`Tool`), ``tool_choice``
    (``"auto"``, ``"none"``, ``"required"`` or a :class:`ToolChoice`),
    ``parallel_tool_calls``, ``response_format`` (:class:`ResponseFormat`),
    ``reasoning_effort``, ``user``, ``metadata``, ``service_tier`` and
    ``stream_options`` (for a streamed call; the actor asks for usage by
    default).

    ``response_model`` takes an attrs class: the request then asks for JSON
    fitting the class's schema (strict), and the reply's
    :attr:`ChatReply.parsed` is an instance of it. The class travels as its
    message type name (that of :func:`corral.message`, else
    ``module.QualName``); naming a class by that string works where the
    class was given before in the process.

    ``extra_body`` is merged into the JSON body last (provider-specific
    fields, or ones corral has no option for; it wins over the options),
    and ``extra_headers`` are sent with the request, as the official
    client's arguments of the same names.
    """

    messages: tuple[ChatMessage, ...] = attrs.field(converter=_as_messages)
    model: str | None = attrs.field(default=None, kw_only=True)
    temperature: float | None = attrs.field(default=None, kw_only=True)
    top_p: float | None = attrs.field(default=None, kw_only=True)
    max_tokens: int | None = attrs.field(default=None, kw_only=True)
    max_completion_tokens: int | None = attrs.field(default=None, kw_only=True)
    n: int | None = attrs.field(default=None, kw_only=True)
    stop: str | tuple[str, ...] | None = attrs.field(default=None, converter=_as_stop, kw_only=True)
    seed: int | None = attrs.field(default=None, kw_only=True)
    presence_penalty: float | None = attrs.field(default=None, kw_only=True)
    frequency_penalty: float | None = attrs.field(default=None, kw_only=True)
    logit_bias: dict[str, int] | None = attrs.field(
        default=None, converter=_as_logit_bias, kw_only=True
    )
    logprobs: bool | None = attrs.field(default=None, kw_only=True)
    top_logprobs: int | None = attrs.field(default=None, kw_only=True)
    tools: tuple[Tool, ...] = attrs.field(default=(), converter=_as_tools, kw_only=True)
    tool_choice: str | ToolChoice | None = attrs.field(
        default=None, validator=_check_tool_choice, kw_only=True
    )
    parallel_tool_calls: bool | None = attrs.field(default=None, kw_only=True)
    response_format: ResponseFormat | None = attrs.field(default=None, kw_only=True)
    response_model: str | None = attrs.field(
        default=None, converter=_structured.model_name, kw_only=True
    )
    reasoning_effort: str | None = attrs.field(default=None, kw_only=True)
    user: str | None = attrs.field(default=None, kw_only=True)
    metadata: dict[str, str] | None = attrs.field(
        default=None, converter=_as_optional_dict, kw_only=True
    )
    service_tier: str | None = attrs.field(default=None, kw_only=True)
    stream_options: dict[str, Any] | None = attrs.field(
        default=None, converter=_as_optional_dict, kw_only=True
    )
    extra_body: dict[str, Any] = attrs.field(factory=dict, converter=dict, kw_only=True)
    extra_headers: dict[str, str] = attrs.field(factory=dict, converter=dict, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.response_model is not None and self.response_format is None:
            model = _structured.model_class(self.response_model)
            object.__setattr__(self, "response_format", ResponseFormat.from_type(model))


def _as_inputs(value: str | Iterable[str]) -> tuple[str, ...]:
    # A str is one input, as in OpenAI's API (not its characters).
    inputs = (value,) if isinstance(value, str) else tuple(value)
    if not inputs:
        raise ValueError("inputs must hold at least one text to embed, got none")
    for position, item in enumerate(inputs):
        if not isinstance(item, str):
            raise TypeError(
                f"inputs must be texts (str); inputs[{position}] is "
                f"{type(item).__name__} {item!r:.40}"
            )
    return inputs


@message(name="openai.EmbeddingsRequest")
class EmbeddingsRequest:
    """Texts to embed: one string is one input, a sequence of strings is several.

    ``model`` defaults to the actor's; ``dimensions``, ``encoding_format``
    (``"float"`` or ``"base64"``: either way the reply holds floats) and
    ``user`` are sent when set; ``extra_body`` and ``extra_headers`` as for
    :class:`ChatRequest`.
    """

    inputs: tuple[str, ...] = attrs.field(converter=_as_inputs)
    model: str | None = attrs.field(default=None, kw_only=True)
    dimensions: int | None = attrs.field(default=None, kw_only=True)
    encoding_format: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.in_(_ENCODINGS)),
        kw_only=True,
    )
    user: str | None = attrs.field(default=None, kw_only=True)
    extra_body: dict[str, Any] = attrs.field(factory=dict, converter=dict, kw_only=True)
    extra_headers: dict[str, str] = attrs.field(factory=dict, converter=dict, kw_only=True)


# --- replies ----------------------------------------------------------------------------


@message(name="openai.TokenUsage")
class TokenUsage:
    """Tokens a call used, as the provider reported them.

    ``cached_input_tokens`` (of the input, served from the provider's
    prompt cache) and ``reasoning_tokens`` (of the output, spent thinking)
    are ``None`` when the provider does not say.
    """

    input_tokens: int
    output_tokens: int = 0
    cached_input_tokens: int | None = attrs.field(default=None, kw_only=True)
    reasoning_tokens: int | None = attrs.field(default=None, kw_only=True)

    @property
    def total(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


@message(name="openai.TopLogprob")
class TopLogprob:
    """One of the likeliest tokens at a position, with its log probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None


@message(name="openai.TokenLogprob")
class TokenLogprob:
    """A token of the reply, its log probability, and the likeliest alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()


@message(name="openai.Logprobs")
class Logprobs:
    """The log probabilities of a choice's content and refusal tokens (``logprobs=True``)."""

    content: tuple[TokenLogprob, ...] = ()
    refusal: tuple[TokenLogprob, ...] = ()


@message(name="openai.Choice")
class Choice:
    """One of the reply's choices (``n`` of them): the message, and why it ended."""

    index: int
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: Logprobs | None = attrs.field(default=None, kw_only=True)

    @property
    def content(self) -> str:
        """The message's text (its text parts joined; ``""`` when it has none)."""
        return self.message.text

    @property
    def refusal(self) -> str | None:
        """The model's refusal, if it refused (also when sent as refusal parts)."""
        if self.message.refusal is not None:
            return self.message.refusal
        content = self.message.content
        if isinstance(content, tuple):
            refusals = [p.refusal for p in content if isinstance(p, RefusalPart)]
            if refusals:
                return "".join(refusals)
        return None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls the model asks for."""
        return self.message.tool_calls


@message(name="openai.ChatReply")
class ChatReply:
    """The reply to a :class:`ChatRequest`: every choice, and what the server says of it.

    ``content``, ``message``, ``refusal``, ``tool_calls`` and
    ``finish_reason`` are the first choice's, for the usual ``n=1``.
    ``usage`` is ``None`` when the server does not report it. ``parsed`` is
    the content parsed into the request's ``response_model``.
    """

    choices: tuple[Choice, ...]
    model: str
    id: str | None = attrs.field(default=None, kw_only=True)
    created: int | None = attrs.field(default=None, kw_only=True)
    system_fingerprint: str | None = attrs.field(default=None, kw_only=True)
    service_tier: str | None = attrs.field(default=None, kw_only=True)
    usage: TokenUsage | None = attrs.field(default=None, kw_only=True)
    response_model: str | None = attrs.field(default=None, kw_only=True)

    @property
    def message(self) -> ChatMessage | None:
        """The first choice's message (``None`` when there is no choice)."""
        return self.choices[0].message if self.choices else None

    @property
    def content(self) -> str:
        """The first choice's text (``""`` when it has none, e.g. only tool calls)."""
        return self.choices[0].content if self.choices else ""

    @property
    def refusal(self) -> str | None:
        """The first choice's refusal, if the model refused."""
        return self.choices[0].refusal if self.choices else None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The first choice's tool calls."""
        return self.choices[0].tool_calls if self.choices else ()

    @property
    def finish_reason(self) -> str | None:
        """Why the first choice ended (``stop``, ``length``, ``tool_calls``...)."""
        return self.choices[0].finish_reason if self.choices else None

    @property
    def parsed(self) -> Any:
        """The first choice's content parsed into the request's ``response_model``.

        ``None`` when the request had none, or when the model refused or
        sent no content. Parsed on each access (keep the result).

        Raises:
            InvalidResponse: The content is not JSON, or does not fit the
                class; the message names the field path (``$.items[2].price``).
        """
        if self.response_model is None or not self.choices:
            return None
        choice = self.choices[0]
        if choice.message.content is None or choice.refusal is not None:
            return None
        return self.parse(_structured.model_class(self.response_model), choice.index)

    def parse(self, model: type, choice: int = 0) -> Any:
        """The content of choice *choice* parsed into the attrs class *model*.

        Raises:
            InvalidResponse: As :attr:`parsed`.
        """
        return _structured.parse(model, self.choices[choice].content)


@message(name="openai.ToolCallDelta")
class ToolCallDelta:
    """A piece of a tool call in a streamed reply; ``index`` says which call it extends."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@message(name="openai.ChatChunk")
class ChatChunk:
    """One piece of a streamed chat reply (:meth:`corral.ActorRef.stream`).

    ``content`` and ``refusal`` are the new text of choice ``index``;
    ``tool_calls`` the new pieces of its tool calls; ``finish_reason`` is
    set on the chunk that ends the choice. The stream's last chunk carries
    ``reply``: the whole reply, assembled (every choice's text, refusal and
    complete tool calls, the finish reasons, usage, id and model).
    """

    content: str = ""
    finish_reason: str | None = None
    index: int = attrs.field(default=0, kw_only=True)
    role: str | None = attrs.field(default=None, kw_only=True)
    refusal: str = attrs.field(default="", kw_only=True)
    tool_calls: tuple[ToolCallDelta, ...] = attrs.field(default=(), kw_only=True)
    logprobs: Logprobs | None = attrs.field(default=None, kw_only=True)
    reply: ChatReply | None = attrs.field(default=None, kw_only=True)


@message(name="openai.EmbeddingsReply")
class EmbeddingsReply:
    """One vector per input, in the order of the inputs; ``usage`` when the server says."""

    vectors: tuple[tuple[float, ...], ...]
    model: str
    usage: TokenUsage | None = None
