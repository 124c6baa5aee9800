"""What a provider says of an error, read from the JSON it sends in the usual shapes.

OpenAI sends ``{"error": {"message", "type", "param", "code"}}``; others
send ``{"error": "text"}`` (Ollama, TGI), ``{"message": ..., "type": ...,
"code": 400}`` (vLLM), ``{"detail": ...}`` (FastAPI servers, with a list of
``{"loc", "msg", "type"}`` for validation errors), or a list of any of
these (Gemini's OpenAI endpoint). :func:`parse_error` reads them all into
one :class:`ErrorDetail`; :func:`provider_error` makes the error for one
that came inside a successful response.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Final

import attrs

from ._exceptions import ProviderError

__all__ = ["FIELD_LIMIT", "ErrorDetail", "parse_error", "provider_error"]

#: Characters kept of each field (after redaction, so no cut leaves a piece of a secret).
FIELD_LIMIT: Final = 500
# Lists and nested "error"/"detail" values are followed this deep, no deeper.
_MAX_DEPTH = 4


@attrs.frozen(kw_only=True)
class ErrorDetail:
    """The provider's account of an error; each field ``None`` when it does not say.

    A numeric ``code`` is kept as a string (``"429"``). Made by
    :func:`parse_error`; the text is as the provider sent it until
    :meth:`redacted`.
    """

    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None

    def redacted(self, redact: Callable[[str], str]) -> ErrorDetail:
        """This detail with *redact* applied to each field, each then cut to :data:`FIELD_LIMIT`."""

        def clean(value: str | None) -> str | None:
            return None if value is None else redact(value)[:FIELD_LIMIT]

        return ErrorDetail(
            message=clean(self.message),
            type=clean(self.type),
            code=clean(self.code),
            param=clean(self.param),
        )

    def describe(self) -> str:
        """One line for an error message: ``guardrail tripped (code content_filter, param x)``."""
        said = [
            f"{name} {value}"
            for name, value in (
                ("code", self.code),
                ("type", None if self.type == self.code else self.type),
                ("param", self.param),
            )
            if value is not None
        ]
        text = self.message if self.message is not None else "no message"
        return f"{text} ({', '.join(said)})" if said else text


def _text(value: object) -> str | None:
    # A field as text: strings as they are (empty means "not said"), numbers
    # and booleans as JSON writes them, anything else as compact JSON.
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _param(fields: Mapping[str, object]) -> str | None:
    if "param" in fields:
        return _text(fields["param"])
    loc = fields.get("loc")  # FastAPI: ["body", "messages", 0, "content"]
    if isinstance(loc, list) and loc:
        return ".".join(str(part) for part in loc)
    return None


def _fields(fields: Mapping[str, object], message: object) -> ErrorDetail:
    # Google's status ("INVALID_ARGUMENT") and TGI's error_type are types by another name.
    kind = fields.get("type")
    if kind is None and isinstance(fields.get("status"), str):
        kind = fields["status"]
    if kind is None:
        kind = fields.get("error_type")
    return ErrorDetail(
        message=_text(message),
        type=_text(kind),
        code=_text(fields.get("code")),
        param=_param(fields),
    )


def _parse(data: object, depth: int) -> ErrorDetail | None:
    if depth > _MAX_DEPTH:
        return None
    if isinstance(data, list):
        for item in data:
            found = _parse(item, depth + 1)
            if found is not None:
                return found
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message", error.get("msg"))
        if message is None and ("error" in error or "detail" in error):
            nested = _parse(error, depth + 1)
            if nested is not None:
                return nested
        return _fields(error, message)
    if isinstance(error, list) and error:
        return _parse(error, depth + 1)
    if isinstance(error, str) and error:
        return _fields(data, error)
    for key in ("message", "msg"):
        if isinstance(data.get(key), str) and data[key]:
            return _fields(data, data[key])
    detail = data.get("detail")
    if isinstance(detail, str) and detail:
        return _fields(data, detail)
    if isinstance(detail, (dict, list)):
        return _parse(detail, depth + 1)
    return None


def parse_error(data: object) -> ErrorDetail | None:
    """The provider's error in *data* (decoded JSON), or ``None`` if it holds none.

    Reads, in this order: ``{"error": {...}}`` (the ``message`` — or
    ``msg`` — ``type``, ``param`` and ``code`` of the inner object; an
    inner object with none of them gives an :class:`ErrorDetail` of
    ``None`` fields, since an ``error`` object is still an error);
    ``{"error": "text", "type"?: ..., "code"?: ...}``;
    ``{"message": "text", "type"?: ..., "param"?: ..., "code"?: ...}``;
    ``{"detail": "text"}`` and ``{"detail": <any of these>}``; a list, of
    which the first item that holds an error counts. Where ``type`` is
    missing, a string ``status`` (Google) or ``error_type`` (TGI) stands
    in; where ``param`` is, FastAPI's ``loc`` joined with dots. Codes and
    other non-string values become text (``400`` → ``"400"``). An
    ``"error"`` of ``null``, ``false`` or ``""`` is no error.

    The text is not redacted: see :meth:`ErrorDetail.redacted`.

    A successful reply may well carry a top-level ``message`` or
    ``detail`` of its own; to tell whether a 200 body is an error, look
    for its ``"error"`` member first and parse only then.
    """
    return _parse(data, 0)


def provider_error(
    detail: ErrorDetail,
    where: str,
    *,
    redact: Callable[[str], str],
    request_id: str | None = None,
) -> ProviderError:
    """The :class:`corral.ProviderError` for an error reported inside a successful response.

    Args:
        detail: What the provider said, as :func:`parse_error` read it (not
            yet redacted).
        where: What was happening, first in the message:
            ``"POST /v1/chat/completions: the stream carried an error after
            3 chunks"`` gives ``"POST /v1/chat/completions: the stream
            carried an error after 3 chunks: guardrail tripped mid-stream
            (code content_filter)"``.
        redact: Takes the actor's secrets out of text (an HTTP actor's
            :meth:`corral.HttpService.redact`). Applied here to the whole
            message, to each field of *detail* and to *request_id*, so
            callers pass what they read, unredacted.
        request_id: The provider's request id, if the response had one.

    Returns:
        The error, to raise (``raise provider_error(...)``, or ``from`` the
        error that revealed it).
    """
    clean = detail.redacted(redact)
    return ProviderError(
        redact(f"{where}: {clean.describe()}"),
        code=clean.code,
        type=clean.type,
        param=clean.param,
        message=clean.message,
        request_id=None if request_id is None else redact(request_id)[:FIELD_LIMIT],
    )
