"""What the fake server says, worded as OpenAI words it: replies, chunks and errors.

Pure functions of a request's JSON (and of an id source and a clock value the
server passes in), so that the server module keeps only HTTP, faults and
counters. Where a real model would think, the fake follows fixed rules:

- **Text.** ``fake reply to: <the last message's text, cut at 60 characters>``;
  choice *i* of ``n`` (from 0) says ``fake reply <i + 1> to: ...`` when *i* > 0.
  A token is four characters (at least one per choice). ``max_completion_tokens``
  (else ``max_tokens``) cuts the text at that many tokens, with
  ``finish_reason: "length"``; the first ``stop`` sequence found cuts it before.
- **Tools.** When the request offers function ``tools``, ``tool_choice`` is not
  ``"none"`` and the last message is not a ``tool`` result, every choice calls
  the first tool (the one ``tool_choice`` names; each tool in turn under
  ``parallel_tool_calls: true``), ``finish_reason: "tool_calls"``. The
  arguments are the minimal instance of the tool's ``parameters`` schema.
  After a tool result the reply is text again: ``fake reply to: <the result>``.
- **JSON.** ``response_format`` ``json_object`` answers ``{"reply": "<the text>"}``;
  ``json_schema`` answers the minimal instance of its schema (``_fake_schema``):
  the required properties only, each the smallest value its type and bounds allow.
- **Checks.** What OpenAI refuses with a 400, the fake refuses with OpenAI's
  body (``param`` naming the field): no ``model`` or ``messages``, an unknown
  role, a ``tool`` message without ``tool_call_id`` or answering no call, tool
  calls left unanswered, ``n``/``max_tokens``/``dimensions`` out of range,
  ``json_object`` without the word "json" in the messages, and ``max_tokens``
  for the ``o1``/``o3``/``o4`` models (they take ``max_completion_tokens``).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import struct
from base64 import b64encode
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

import attrs

from ._fake_schema import instance

__all__ = [
    "OUTCOME_ERRORS",
    "STREAM_ERROR",
    "Chat",
    "Ids",
    "RequestError",
    "embeddings_reply",
    "error_body",
    "model_object",
    "model_of",
    "plan_chat",
]

SYSTEM_FINGERPRINT: Final = "fp_corral_fake"
#: The ``created`` time of every model the fake lists.
MODEL_CREATED: Final = 1_700_000_000
#: Vector length when a request names no ``dimensions``.
DEFAULT_DIMENSIONS: Final = 8
REFUSAL: Final = "I'm sorry, but I can't help with that request."
_ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
#: Models that refuse ``max_tokens`` (they take ``max_completion_tokens``), as OpenAI's do.
_REASONING_PREFIXES: Final = ("o1", "o3", "o4")
_ARGUMENT_PIECE: Final = 8  # characters of a tool call's arguments per streamed delta


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class RequestError(Exception):
    """A request OpenAI would refuse: the status and error body it answers with."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type=type, param=param, code=code)


#: The status and body of each error outcome a script or the faults pick.
OUTCOME_ERRORS: Final[Mapping[str, tuple[int, dict[str, Any]]]] = {
    "429": (
        429,
        error_body(
            "Rate limit reached for requests (fake server). Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
        ),
    ),
    "quota": (
        429,
        error_body(
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        ),
    ),
    "401": (
        401,
        error_body(
            "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key"
        ),
    ),
    "500": (
        500,
        error_body(
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        ),
    ),
    "503": (503, error_body("The server is overloaded or not ready yet.", type="server_error")),
    "context_length": (
        400,
        error_body(
            "This model's maximum context length is 8192 tokens. However, your messages "
            "resulted in more tokens. Please reduce the length of the messages.",
            type="invalid_request_error",
            param="messages",
            code="context_length_exceeded",
        ),
    ),
}

#: What a 200 carries for the ``error_200`` outcome: its body, or an event of its stream.
STREAM_ERROR: Final = error_body(
    "The server had an error while processing your request (fake, scripted).",
    type="server_error",
)


class Ids:
    """Unique ids for one server's replies (``chatcmpl-...``) and tool calls (``call_...``)."""

    def __init__(self) -> None:
        # itertools.count is atomic under the GIL: no lock needed.
        self._next = itertools.count(1)

    def reply(self) -> str:
        return f"chatcmpl-fake{next(self._next):012d}"

    def call(self) -> str:
        return f"call_fake{next(self._next):012d}"


# --- reading requests ------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "null"


def _int(payload: Mapping[str, Any], name: str, *, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(
            400,
            f"Invalid type for '{name}': expected an integer, but got {_type_name(value)} instead.",
            param=name,
            code="invalid_type",
        )
    if value < low:
        raise RequestError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > high:
        raise RequestError(
            400,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
            f"but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def model_of(payload: Mapping[str, Any], served: Collection[str]) -> str:
    """The request's model; a 400 without one, a 404 for one not *served* (if any are)."""
    model = payload.get("model")
    if not model:
        raise RequestError(400, "you must provide a model parameter")
    if not isinstance(model, str):
        raise RequestError(
            400,
            f"Invalid type for 'model': expected a string, but got {_type_name(model)} instead.",
            param="model",
            code="invalid_type",
        )
    if served and model not in served:
        raise RequestError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    return model


def _text(content: Any) -> str:
    # A message's text: the string, or its text parts joined (images have none).
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _messages(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    # The messages, checked as OpenAI checks them (roles; tool results answer tool calls).
    messages = payload.get("messages")
    if messages is None:
        raise RequestError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise RequestError(
            400,
            "Invalid type for 'messages': expected an array of objects, but got "
            f"{_type_name(messages)} instead.",
            param="messages",
            code="invalid_type",
        )
    if not messages:
        raise RequestError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    pending: set[str] = set()  # tool call ids still waiting for their tool message
    for index, message in enumerate(messages):
        where = f"messages.[{index}]"
        if not isinstance(message, dict):
            raise RequestError(
                400,
                f"Invalid type for '{where}': expected an object, but got "
                f"{_type_name(message)} instead.",
                param=where,
                code="invalid_type",
            )
        role = message.get("role")
        if role not in _ROLES:
            raise RequestError(
                400,
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not call_id:
                raise RequestError(
                    400,
                    "Missing parameter 'tool_call_id': messages with role 'tool' must have "
                    "a 'tool_call_id'.",
                    param=f"{where}.tool_call_id",
                    code="missing_required_parameter",
                )
            if call_id not in pending:
                raise RequestError(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"{where}.role",
                )
            pending.discard(call_id)
            continue
        if pending:
            _unanswered(pending, where)
        if role == "assistant" and message.get("tool_calls"):
            calls = message["tool_calls"]
            pending = {str(c.get("id")) for c in calls if isinstance(c, dict)}
    if pending:
        _unanswered(pending, f"messages.[{len(messages)}]")
    return messages


def _unanswered(pending: set[str], where: str) -> None:
    raise RequestError(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(sorted(pending)),
        param=f"{where}.role",
    )


def _stops(payload: Mapping[str, Any]) -> tuple[str, ...]:
    stop = payload.get("stop")
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
        raise RequestError(
            400, "Invalid type for 'stop': expected a string or an array of strings.", param="stop"
        )
    if len(stops) > 4:
        raise RequestError(
            400,
            f"Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(stops)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    return tuple(s for s in stops if s)


def _tools(payload: Mapping[str, Any]) -> list[tuple[str, Any]]:
    # The function tools the reply calls: (name, parameters schema), [] for text.
    tools = payload.get("tools")
    choice = payload.get("tool_choice")
    if not tools:
        if choice is not None:
            raise RequestError(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
            )
        return []
    if not isinstance(tools, list):
        raise RequestError(400, "Invalid type for 'tools': expected an array.", param="tools")
    offered: list[tuple[str, Any]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue  # other kinds of tools (custom, hosted) the fake never calls
        function = tool.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise RequestError(
                400,
                f"Missing required parameter: 'tools[{index}].function.name'.",
                param=f"tools[{index}].function.name",
                code="missing_required_parameter",
            )
        assert isinstance(function, dict)
        offered.append((name, function.get("parameters") or {"type": "object"}))
    if choice == "none" or not offered:
        return []
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        named = [tool for tool in offered if tool[0] == name]
        if not named:
            raise RequestError(
                400,
                f"Invalid value for 'tool_choice': function {name!r} is not among the tools.",
                param="tool_choice",
            )
        return named
    return offered if payload.get("parallel_tool_calls") is True else offered[:1]


# --- chat ------------------------------------------------------------------------------


@attrs.frozen
class Choice:
    """What one choice of a chat reply says."""

    content: str | None
    refusal: str | None = None
    tool_calls: tuple[tuple[str, str, str], ...] = ()  # (id, function name, arguments)
    finish_reason: str = "stop"
    tokens: int = 1

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.content,
            "refusal": self.refusal,
            "annotations": [],
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": id, "type": "function", "function": {"name": name, "arguments": args}}
                for id, name, args in self.tool_calls
            ]
        return message

    def pieces(self) -> list[str]:
        """The text in the pieces a stream sends: one word each, spaces kept."""
        text = self.content if self.content is not None else self.refusal
        if not text:
            return []
        words = text.split(" ")
        return [words[0], *(" " + word for word in words[1:])]

    def deltas(self) -> list[dict[str, Any]]:
        """The deltas of this choice in a stream; the first carries the role."""
        if self.tool_calls:
            deltas: list[dict[str, Any]] = []
            for index, (id, name, args) in enumerate(self.tool_calls):
                deltas.append(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": id,
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
                deltas.extend(
                    {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    for piece in _chop(args, _ARGUMENT_PIECE)
                )
            deltas[0] = {"role": "assistant", "content": None, "refusal": None, **deltas[0]}
            return deltas
        field = "content" if self.content is not None else "refusal"
        first = (
            {"role": "assistant", "content": "", "refusal": None}
            if field == "content"
            else {"role": "assistant", "content": None, "refusal": ""}
        )
        return [first, *({field: piece} for piece in self.pieces())]


def _chop(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _logprob(token: str, top: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"token": token, "logprob": -0.25, "bytes": list(token.encode())}
    alternatives = [
        {"token": f" alt{k}", "logprob": -1.0 - k, "bytes": list(f" alt{k}".encode())}
        for k in range(1, top)
    ]
    top_logprobs = [dict(entry), *alternatives][:top]
    return {**entry, "top_logprobs": top_logprobs}


@attrs.frozen
class Chat:
    """One chat reply planned from its request, to send whole or streamed."""

    id: str
    created: int
    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    top_logprobs: int | None  # None: no logprobs were asked for
    include_usage: bool
    service_tier: str

    def usage(self) -> dict[str, Any]:
        completion = sum(c.tokens for c in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _logprobs(self, pieces: list[str]) -> dict[str, Any] | None:
        if self.top_logprobs is None:
            return None
        return {"content": [_logprob(p, self.top_logprobs) for p in pieces], "refusal": None}

    def reply(self) -> dict[str, Any]:
        """The ``chat.completion`` body."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": index,
                    "message": choice.message(),
                    "logprobs": self._logprobs(choice.pieces() if choice.content else []),
                    "finish_reason": choice.finish_reason,
                }
                for index, choice in enumerate(self.choices)
            ],
            "usage": self.usage(),
            "service_tier": self.service_tier,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": self.service_tier,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def chunks(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The ``chat.completion.chunk`` events: those carrying deltas, then the closing ones.

        The deltas of several choices interleave, as OpenAI sends them; the
        closing chunks carry each choice's finish reason, then the usage
        (``choices: []``) when the request asked for it.
        """
        per_choice = [choice.deltas() for choice in self.choices]
        with_logprobs = self.top_logprobs is not None
        deltas = []
        for step in range(max(len(d) for d in per_choice)):
            for index, choice_deltas in enumerate(per_choice):
                if step < len(choice_deltas):
                    delta = choice_deltas[step]
                    piece = delta.get("content")
                    logprobs = self._logprobs([piece]) if with_logprobs and piece else None
                    deltas.append(
                        self._chunk(
                            [
                                {
                                    "index": index,
                                    "delta": delta,
                                    "logprobs": logprobs,
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
        closing = [
            self._chunk(
                [{"index": i, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason}]
            )
            for i, c in enumerate(self.choices)
        ]
        if self.include_usage:
            closing.append({**self._chunk([]), "usage": self.usage()})
        return deltas, closing


def plan_chat(
    payload: Mapping[str, Any],
    *,
    ids: Ids,
    created: int,
    served: Collection[str] = (),
    refuse: bool = False,
) -> Chat:
    """Plan the reply to a chat request by the rules in this module's docstring.

    Raises:
        RequestError: The request is one OpenAI refuses (400), or names a model
            not among *served* (404).
    """
    model = model_of(payload, served)
    messages = _messages(payload)
    n = _int(payload, "n", low=1, high=128) or 1
    if "max_tokens" in payload and model.startswith(_REASONING_PREFIXES):
        raise RequestError(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    limit = _int(payload, "max_completion_tokens", low=1, high=1 << 20)
    if limit is None:
        limit = _int(payload, "max_tokens", low=1, high=1 << 20)
    stops = _stops(payload)
    tools = _tools(payload) if messages[-1].get("role") != "tool" else []
    top_logprobs: int | None = None
    if payload.get("logprobs") is True:
        top_logprobs = _int(payload, "top_logprobs", low=0, high=20) or 0
    last = _text(messages[-1].get("content"))[:60]
    schema = _json_format(payload, messages)
    choices = []
    for index in range(n):
        if refuse:
            choices.append(Choice(None, refusal=REFUSAL, tokens=max(1, len(REFUSAL) // 4)))
        elif tools:
            calls = tuple((ids.call(), name, json.dumps(_arguments(name, p))) for name, p in tools)
            size = sum(len(name) + len(args) for _, name, args in calls)
            choices.append(
                Choice(None, tool_calls=calls, finish_reason="tool_calls", tokens=max(1, size // 4))
            )
        else:
            text = f"fake reply {index + 1} to: {last}" if index else f"fake reply to: {last}"
            choices.append(_text_choice(_json_text(schema, text), stops, limit))
    options = payload.get("stream_options")
    return Chat(
        id=ids.reply(),
        created=created,
        model=model,
        choices=tuple(choices),
        prompt_tokens=max(1, sum(len(_text(m.get("content"))) for m in messages) // 4),
        top_logprobs=top_logprobs,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        service_tier=str(payload.get("service_tier") or "default"),
    )


def _text_choice(text: str, stops: Iterable[str], limit: int | None) -> Choice:
    finish = "stop"
    cuts = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = max(1, len(text) // 4)
    if limit is not None and tokens > limit:
        text, tokens, finish = text[: limit * 4], limit, "length"
    return Choice(text, finish_reason=finish, tokens=tokens)


def _arguments(name: str, parameters: Any) -> Any:
    try:
        return instance(parameters)
    except ValueError as exc:
        raise RequestError(400, f"Invalid schema for function '{name}': {exc}.") from None


_NOT_JSON: Final = object()  # the reply is plain text


def _json_format(payload: Mapping[str, Any], messages: list[dict[str, Any]]) -> Any:
    # The schema the reply must be an instance of; None for json_object, _NOT_JSON for text.
    response_format = payload.get("response_format")
    if response_format is None:
        return _NOT_JSON
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return _NOT_JSON
    if kind == "json_object":
        if not any("json" in _text(m.get("content")).lower() for m in messages):
            raise RequestError(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        return None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not spec.get("name"):
            raise RequestError(
                400,
                "Missing required parameter: 'response_format.json_schema.name'.",
                param="response_format.json_schema.name",
                code="missing_required_parameter",
            )
        schema = spec.get("schema") or {"type": "object"}
        try:
            instance(schema)  # check once here, where the error can name the parameter
        except ValueError as exc:
            raise RequestError(
                400,
                f"Invalid schema for response_format '{spec['name']}': {exc}.",
                param="response_format",
            ) from None
        return schema
    raise RequestError(
        400,
        f"Invalid value: {kind!r}. Supported values are: 'json_object', 'json_schema', and 'text'.",
        param="response_format.type",
        code="invalid_value",
    )


def _json_text(schema: Any, text: str) -> str:
    if schema is _NOT_JSON:
        return text
    if schema is None:
        return json.dumps({"reply": text})
    return json.dumps(instance(schema))


# --- embeddings and models -------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _vector(length: int, dimensions: int) -> tuple[float, ...]:
    # Vectors depend on the input's length only: cheap, and the same on every run.
    return tuple(round(math.sin(length + i), 6) for i in range(dimensions))


@functools.lru_cache(maxsize=1024)
def _vector_base64(length: int, dimensions: int) -> str:
    # As OpenAI encodes them: little-endian float32, base64.
    vector = _vector(length, dimensions)
    return b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")


def embeddings_reply(payload: Mapping[str, Any], *, served: Collection[str] = ()) -> dict[str, Any]:
    """The ``POST /v1/embeddings`` body: one vector per input, by ``index``.

    A string is one input; so is a list of token ids. ``dimensions`` sets the
    vectors' length (default :data:`DEFAULT_DIMENSIONS`), ``encoding_format``
    ``"base64"`` packs them as OpenAI does.

    Raises:
        RequestError: As OpenAI refuses the request (400), or a model not *served* (404).
    """
    model = model_of(payload, served)
    raw = payload.get("input")
    if raw is None:
        raise RequestError(
            400,
            "Missing required parameter: 'input'.",
            param="input",
            code="missing_required_parameter",
        )
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(type(t) is int for t in raw)):
        inputs: list[Any] = [raw]
    elif isinstance(raw, list):
        inputs = raw
    else:
        inputs = []
    lengths = []
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            lengths.append(len(item))
        elif isinstance(item, list) and item and all(type(t) is int for t in item):
            lengths.append(4 * len(item))  # token ids: four characters a token
        else:
            raise RequestError(400, f"'$.input[{index}]' is invalid.", param="input")
    if not inputs or not all(inputs):
        raise RequestError(400, "'$.input' is invalid: an input must not be empty.", param="input")
    dimensions = _int(payload, "dimensions", low=1, high=1 << 16) or DEFAULT_DIMENSIONS
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError(
            400,
            f"Invalid value: {encoding!r}. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    encode = _vector_base64 if encoding == "base64" else _vector
    tokens = max(1, sum(lengths) // 4)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(length, dimensions)}
            for index, length in enumerate(lengths)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_object(model: str) -> dict[str, Any]:
    """A ``model`` object of ``GET /v1/models``."""
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "corral"}
