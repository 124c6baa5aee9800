"""The provider's account of an error: parsed, redacted, retried or not by its code, and timed."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx
import pytest

import corral
from corral import HttpStatusError, ProviderError, RetryPolicy
from corral._services._errors import ErrorDetail, parse_error, provider_error
from corral._services._http import REQUEST_ID_HEADERS, request_id
from corral._services._redact import REDACTED
from corral._services._retry import (
    DEFAULT_NEVER_RETRY_CODES,
    DEFAULT_RETRY_CODES,
    parse_retry_after_ms,
    retry_after_from_headers,
)

from .loopback_http import Canned, Seen, canned_server

pytestmark = pytest.mark.anyio

KEY = "sk-proj-Zq8vB3nT5wXy2mK9pL4rH7dF1gJ6"
NO_WAIT = RetryPolicy(max_attempts=3, min_delay=0.0, max_delay=0.0, max_retry_after=0.0)


@corral.message
class Post:
    path: str = "/v1/chat/completions"


class Poster(corral.HttpService[Post, str]):
    async def handle(self, msg: Post) -> str:
        return (await self.request("POST", msg.path, json={"model": "m"})).text


def openai_body(**error: Any) -> bytes:
    return json.dumps({"error": error}).encode()


async def fail_with(
    canned: Canned | list[Canned],
    *,
    retry: RetryPolicy | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[HttpStatusError, int]:
    """The error a Poster call ends with, against *canned* (one answer, or one per request),
    and how many requests the server saw."""
    answers = canned if isinstance(canned, list) else [canned]
    env = None
    if monkeypatch is not None:
        monkeypatch.setenv("CORRAL_TEST_KEY", KEY)
        env = "CORRAL_TEST_KEY"
    served: list[Seen] = []

    def answer(seen: Seen) -> Canned:
        served.append(seen)
        return answers[min(len(served), len(answers)) - 1]

    async with canned_server(answer) as server:
        async with corral.Runtime() as rt:
            ref = await rt.spawn(
                lambda: Poster(base_url=server.base_url, api_key_env=env),
                name="poster",
                policy=corral.ServicePolicy(retry=retry),
            )
            with pytest.raises(HttpStatusError) as info:
                await ref.ask(Post(), timeout=10)
        return info.value, len(server.requests)


# --- parsing the usual shapes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            },
            ErrorDetail(
                message="You exceeded your current quota",
                type="insufficient_quota",
                code="insufficient_quota",
            ),
            id="openai",
        ),
        pytest.param(
            {"error": {"message": "bad", "type": "invalid_request_error", "param": "messages"}},
            ErrorDetail(message="bad", type="invalid_request_error", param="messages"),
            id="openai-param",
        ),
        pytest.param(
            {"error": "model 'llama9' not found"},
            ErrorDetail(message="model 'llama9' not found"),
            id="error-text-ollama",
        ),
        pytest.param(
            {"error": "Input validation error", "error_type": "validation"},
            ErrorDetail(message="Input validation error", type="validation"),
            id="error-text-tgi",
        ),
        pytest.param(
            {"object": "error", "message": "too long", "type": "BadRequestError", "code": 400},
            ErrorDetail(message="too long", type="BadRequestError", code="400"),
            id="message-vllm-int-code",
        ),
        pytest.param({"detail": "Not Found"}, ErrorDetail(message="Not Found"), id="detail-text"),
        pytest.param(
            {
                "detail": [
                    {
                        "loc": ["body", "messages", 0, "content"],
                        "msg": "field required",
                        "type": "value_error.missing",
                    }
                ]
            },
            ErrorDetail(
                message="field required",
                type="value_error.missing",
                param="body.messages.0.content",
            ),
            id="detail-fastapi-validation",
        ),
        pytest.param(
            [{"error": {"code": 400, "message": "bad key", "status": "INVALID_ARGUMENT"}}],
            ErrorDetail(message="bad key", type="INVALID_ARGUMENT", code="400"),
            id="list-gemini",
        ),
        pytest.param(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ErrorDetail(message="Overloaded", type="overloaded_error"),
            id="anthropic",
        ),
        pytest.param({"error": {}}, ErrorDetail(), id="empty-error-object-is-still-an-error"),
        pytest.param(
            {"error": {"message": {"text": "x"}, "code": True}},
            ErrorDetail(message='{"text":"x"}', code="true"),
            id="non-string-values-as-json",
        ),
    ],
)
def test_parse_error_reads_the_usual_shapes(data: object, expected: ErrorDetail) -> None:
    """OpenAI's error object, error text, message, detail and lists of them become one shape."""
    assert parse_error(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"error": None},
        {"error": ""},
        {"error": False},
        {"choices": []},
        {"detail": 3},
        [],
        "an error",
        42,
        None,
    ],
)
def test_parse_error_finds_no_error_where_there_is_none(data: object) -> None:
    """Bodies without an error (or with `error: null`) give None."""
    assert parse_error(data) is None


def test_parse_error_stops_at_a_depth_instead_of_recursing_without_end() -> None:
    """A body of lists nested a thousand deep is no error, and no RecursionError."""
    data: object = {"error": "deep"}
    for _ in range(1000):
        data = [data]
    assert parse_error(data) is None


def test_redacted_applies_to_every_field_and_cuts_after_redacting() -> None:
    """Each field goes through the redactor, then is cut to 500 characters."""
    detail = ErrorDetail(message="m" * 600 + KEY, type=KEY, code="c", param=None)
    clean = detail.redacted(lambda text: text.replace(KEY, REDACTED))
    assert clean == ErrorDetail(message="m" * 500, type=REDACTED, code="c", param=None)


# --- on HttpStatusError, from a real response ------------------------------------------------


async def test_a_status_error_carries_the_providers_code_type_param_and_message() -> None:
    """Regression: HttpStatusError had no parsed code/type/param/message (issue 15, item 8)."""
    body = openai_body(
        message="This model's maximum context length is 8192 tokens",
        type="invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    )
    error, _ = await fail_with(Canned(status=400, body=body))
    assert (error.code, error.type, error.param) == (
        "context_length_exceeded",
        "invalid_request_error",
        "messages",
    )
    assert error.message == "This model's maximum context length is 8192 tokens"
    assert str(error).endswith(
        "answered 400: This model's maximum context length is 8192 tokens "
        "(code context_length_exceeded, type invalid_request_error, param messages)"
    )


async def test_a_numeric_code_is_kept_as_text() -> None:
    """A gateway's `"code": 429` becomes `"429"`, and a 401 is an AuthenticationError still."""
    error, _ = await fail_with(
        Canned(status=401, body=json.dumps({"message": "no", "code": 401}).encode())
    )
    assert isinstance(error, corral.AuthenticationError)
    assert (error.code, error.message) == ("401", "no")


async def test_a_body_that_is_not_json_leaves_the_fields_none() -> None:
    """An HTML error page: no fields, and the message quotes the body as before."""
    error, _ = await fail_with(
        Canned(status=502, body=b"<html>Bad Gateway</html>", content_type="text/html")
    )
    assert (error.code, error.type, error.param, error.message) == (None, None, None, None)
    assert str(error).endswith("answered 502: <html>Bad Gateway</html>")


async def test_the_providers_fields_are_redacted_like_the_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key quoted in the message, type, param or code is taken out of each, and of the text."""
    body = openai_body(
        message=f"Incorrect API key provided: {KEY[:6]}...{KEY[-4:]} (full {KEY})",
        type=f"type-{KEY}",
        param=f"param={KEY[8:30]}",
        code=f"code-{KEY}",
    )
    error, _ = await fail_with(Canned(status=401, body=body), monkeypatch=monkeypatch)
    assert error.message == f"Incorrect API key provided: {REDACTED} (full {REDACTED})"
    assert (error.type, error.param, error.code) == (
        f"type-{REDACTED}",
        f"param={REDACTED}",
        f"code-{REDACTED}",
    )
    for text in (str(error), repr(error), error.body):
        assert KEY[-4:] not in text and KEY[3:11] not in text


# --- which provider codes are retried ------------------------------------------------------


def status(http: int, *, code: str | None = None, type: str | None = None) -> HttpStatusError:
    return HttpStatusError(f"status {http}", status=http, code=code, type=type)


@pytest.mark.parametrize("never", sorted(DEFAULT_NEVER_RETRY_CODES))
@pytest.mark.parametrize("http", [429, 408, 409, 500, 503])
def test_a_code_that_cannot_succeed_is_not_retried_under_any_status(http: int, never: str) -> None:
    """Each default never-retry code, as code or as type, stops retries of a retryable status."""
    policy = RetryPolicy()
    assert policy.should_retry(status(http))
    assert not policy.should_retry(status(http, code=never))
    assert not policy.should_retry(status(http, type=never))


def test_a_retryable_status_with_another_code_is_retried() -> None:
    """A 429 rate_limit_exceeded (type tokens) is retried as every 429."""
    assert RetryPolicy().should_retry(status(429, code="rate_limit_exceeded", type="tokens"))


def test_never_retry_codes_is_configurable() -> None:
    """An empty set retries a 429 insufficient_quota; a custom code stops a 503."""
    quota = status(429, code="insufficient_quota")
    assert RetryPolicy(never_retry_codes=frozenset()).should_retry(quota)
    custom = RetryPolicy(never_retry_codes=frozenset({"deployment_gone"}))
    assert custom.should_retry(quota)
    assert not custom.should_retry(status(503, code="deployment_gone"))


@pytest.mark.parametrize("code", sorted(DEFAULT_RETRY_CODES))
def test_a_provider_error_of_a_passing_condition_is_retried(code: str) -> None:
    """A ProviderError whose code or type names a transient condition is retried."""
    policy = RetryPolicy()
    assert policy.should_retry(ProviderError("x", code=code))
    assert policy.should_retry(ProviderError("x", type=code))


def test_other_provider_errors_are_not_retried_unless_listed_in_retry_on() -> None:
    """No code, or a code of lasting trouble: not retried; retry_on retries all but never-codes."""
    policy = RetryPolicy()
    assert not policy.should_retry(ProviderError("x"))
    assert not policy.should_retry(ProviderError("x", code="content_filter"))
    everything = RetryPolicy(retry_on=(corral.TransportError, ProviderError))
    assert everything.should_retry(ProviderError("x", code="content_filter"))
    assert not everything.should_retry(ProviderError("x", code="insufficient_quota"))
    assert not RetryPolicy(retry_codes=frozenset()).should_retry(
        ProviderError("x", code="server_error")
    )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"never_retry_codes": {"a"}}, TypeError, "never_retry_codes must be a frozenset"),
        ({"never_retry_codes": frozenset({""})}, TypeError, "non-empty strings"),
        ({"retry_codes": frozenset({429})}, TypeError, "retry_codes must be a frozenset"),
        ({"retry_codes": "server_error"}, TypeError, "got 'server_error'"),
        (
            {"retry_codes": frozenset({"server_error", "insufficient_quota"})},
            ValueError,
            r"must not contain \['insufficient_quota'\]",
        ),
    ],
)
def test_code_settings_are_validated(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Code sets must be frozensets of non-empty strings, and no code both retried and not."""
    with pytest.raises(error, match=match):
        RetryPolicy(**options)


async def test_a_429_insufficient_quota_is_not_retried() -> None:
    """Regression: a 429 insufficient_quota was retried although it cannot succeed."""
    quota = Canned(
        status=429,
        body=openai_body(message="quota", type="insufficient_quota", code="insufficient_quota"),
    )
    error, requests = await fail_with([quota, Canned()], retry=NO_WAIT)
    assert (error.status, error.code, requests) == (429, "insufficient_quota", 1)


async def test_a_429_rate_limit_exceeded_is_still_retried() -> None:
    """A 429 that is a passing rate limit is retried until the attempts run out."""
    limited = Canned(status=429, body=openai_body(message="slow down", code="rate_limit_exceeded"))
    error, requests = await fail_with(limited, retry=NO_WAIT)
    assert (error.code, requests) == ("rate_limit_exceeded", 3)


# --- ProviderError, for errors inside a successful response ------------------------------


def test_provider_error_names_where_and_what_the_provider_said() -> None:
    """The message is `where: message (code ...)`; the fields are the detail's."""
    detail = parse_error(
        {"error": {"message": "guardrail tripped mid-stream", "code": "content_filter"}}
    )
    assert detail is not None
    error = provider_error(
        detail,
        "POST /v1/chat/completions: the stream carried an error after 3 chunks",
        redact=lambda text: text,
        request_id="req-1",
    )
    assert isinstance(error, corral.ServiceError)
    assert str(error) == (
        "POST /v1/chat/completions: the stream carried an error after 3 chunks: "
        "guardrail tripped mid-stream (code content_filter)"
    )
    assert (error.message, error.code, error.type, error.param, error.request_id) == (
        "guardrail tripped mid-stream",
        "content_filter",
        None,
        None,
        "req-1",
    )


def test_provider_error_redacts_the_text_the_fields_and_the_request_id() -> None:
    """Everything given to provider_error goes through its redact function."""
    error = provider_error(
        ErrorDetail(message=f"bad key {KEY}", type=KEY, code=KEY, param=KEY),
        f"POST /v1/chat/completions?key={KEY}",
        redact=lambda text: text.replace(KEY, REDACTED),
        request_id=f"req-{KEY}",
    )
    assert KEY not in str(error)
    assert error.message == f"bad key {REDACTED}"
    assert error.type == error.code == error.param == REDACTED
    assert error.request_id == f"req-{REDACTED}"


def test_provider_error_without_a_message_says_so() -> None:
    """An empty error object still makes a readable message."""
    error = provider_error(ErrorDetail(), "POST /v1/embeddings: the reply", redact=str)
    assert str(error) == "POST /v1/embeddings: the reply: no message"


# --- how long to wait ----------------------------------------------------------------------


def test_retry_after_ms_is_milliseconds_and_comes_before_retry_after() -> None:
    """`retry-after-ms` (float ms) wins over `Retry-After`; unreadable, it is passed over."""
    now = time.time()
    both = httpx.Headers({"Retry-After-Ms": "1500.5", "Retry-After": "7"})
    assert retry_after_from_headers(both, now) == pytest.approx(1.5005)
    bad = httpx.Headers({"retry-after-ms": "soon", "retry-after": "7"})
    assert retry_after_from_headers(bad, now) == 7.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_from_headers(httpx.Headers({"retry-after": date}), now) == pytest.approx(
        30, abs=1
    )
    assert retry_after_from_headers(httpx.Headers(), now) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250", 0.25), (" 0.5 ", 0.0005), ("0", 0.0), ("-3", 0.0), ("nan", None), ("inf", None)],
)
def test_parse_retry_after_ms(value: str, seconds: float | None) -> None:
    """Milliseconds to seconds, never negative; NaN and infinity are unreadable."""
    assert parse_retry_after_ms(value) == seconds


async def test_a_status_error_takes_its_wait_from_retry_after_ms() -> None:
    """Regression: `retry-after-ms` was ignored; the error's retry_after is its seconds."""
    error, _ = await fail_with(
        Canned(status=429, body=b"{}", headers=(("retry-after-ms", "20"), ("retry-after", "1")))
    )
    assert error.retry_after == pytest.approx(0.02)


# --- request ids ---------------------------------------------------------------------------


def test_request_id_headers_are_looked_up_in_their_documented_order() -> None:
    """With all present the first wins; without it, the next one does, and so on."""
    assert REQUEST_ID_HEADERS == (
        "x-request-id",
        "request-id",
        "x-litellm-call-id",
        "apim-request-id",
        "x-ms-request-id",
        "x-amzn-requestid",
        "cf-ray",
        "x-correlation-id",
    )
    for start, name in enumerate(REQUEST_ID_HEADERS):
        headers = httpx.Headers({n.upper(): f"id-{n}" for n in REQUEST_ID_HEADERS[start:]})
        assert request_id(headers) == f"id-{name}"
    assert request_id(httpx.Headers({"x-request-id": "", "cf-ray": "ray"})) == "ray"
    assert request_id(httpx.Headers()) is None


async def test_a_gateways_request_id_is_picked_up() -> None:
    """Regression: `x-litellm-call-id` (and the like) were not picked up as the request id."""
    error, _ = await fail_with(
        Canned(status=500, body=b"{}", headers=(("x-litellm-call-id", "call-7"),))
    )
    assert error.request_id == "call-7"
