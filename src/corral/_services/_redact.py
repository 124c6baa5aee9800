"""Keeping an HTTP actor's secrets out of what corral keeps of the outside world.

A provider may quote the credentials it refused in its error body (OpenAI
writes ``Incorrect API key provided: sk-abc1*****wxyz``; some gateways
quote the key whole), and a URL may carry a password or a signed query.
Corral keeps such text in errors, status views, logs and spans, so it is
scrubbed once, where it is kept (the response excerpt, the URLs), by a
:class:`Redactor` that knows the actor's secret values. It takes out:

* every occurrence of a secret, as it is or percent- or JSON-escaped;
* every run of :data:`MIN_SECRET_RUN` or more characters of a secret (a
  quote of part of it);
* a masked quote: an ellipsis or asterisks (``...``, ``…``, ``***``) with
  how a secret begins on its left and how it ends on its right, showing
  :data:`MIN_MASKED_SHOWN` or more of its characters together
  (``sk-...wxyz``, ``sk-ab***wxyz``, ``****wxyz``);
* the user and password of any URL in the text, which become
  ``REDACTED:REDACTED``, and the values of query parameters named in
  :data:`SENSITIVE_QUERY_PARAMETERS`, which become ``REDACTED`` (the key
  stays: ``q=1&sig=REDACTED``), as the OpenTelemetry HTTP conventions ask.

Each secret, or piece of one, becomes :data:`REDACTED`. A secret is
replaced wherever it occurs, however short: a four-letter password makes
messages harder to read, never leaks.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_SECRET_HEADERS",
    "MIN_MASKED_SHOWN",
    "MIN_SECRET_RUN",
    "REDACTED",
    "REDACTED_VALUE",
    "SENSITIVE_QUERY_PARAMETERS",
    "Redactor",
    "header_secrets",
    "is_secret_header",
    "redact_unparsed_url",
]

#: What a secret, or a piece of one, is replaced with.
REDACTED: Final = "[REDACTED]"
#: What a sensitive query value, and a URL's user and password, become (OpenTelemetry's).
REDACTED_VALUE: Final = "REDACTED"
#: A run of this many characters of a secret is a quote of it.
MIN_SECRET_RUN: Final = 8
#: A masked quote showing this many characters of a secret (beginning and end together).
MIN_MASKED_SHOWN: Final = 4

#: Headers whose values are secrets, always (names compared case-insensitively).
DEFAULT_SECRET_HEADERS: Final = frozenset(
    {
        "api-key",
        "authorization",
        "cookie",
        "ocp-apim-subscription-key",
        "proxy-authorization",
        "x-api-key",
        "x-auth-token",
        "x-goog-api-key",
    }
)

#: Query parameters whose values are redacted (names compared case-insensitively):
#: the OpenTelemetry HTTP conventions' defaults, the rest of the signed-URL
#: parameters, and the usual names of API keys and tokens.
SENSITIVE_QUERY_PARAMETERS: Final = frozenset(
    {
        "awsaccesskeyid",
        "signature",
        "sig",
        "x-goog-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
        "x-goog-credential",
        "access_token",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "client_secret",
        "id_token",
        "key",
        "password",
        "refresh_token",
        "secret",
        "token",
    }
)

_REPEATED: Final = re.compile(f"(?:{re.escape(REDACTED)}){{2,}}")
_MASK: Final = re.compile(r"\.{2,}|\u2026|\*+")
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@\"'<>]*@")
_QUERY_VALUE: Final = re.compile(
    r"(?P<key>[?&;](?:"
    + "|".join(re.escape(name) for name in sorted(SENSITIVE_QUERY_PARAMETERS, key=len)[::-1])
    + r")=)[^&#\s\"'<>]*",
    re.IGNORECASE,
)


def is_secret_header(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether a header's value is secret: a default secret header or one named in *extra*."""
    lowered = name.lower()
    return lowered in DEFAULT_SECRET_HEADERS or any(lowered == e.lower() for e in extra)


def redact_unparsed_url(url: str) -> str:
    """A URL that may not even parse, for a message: all between ``://`` and its last
    ``@`` becomes ``REDACTED:REDACTED`` (a password there may hold any character)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        rest = f"{REDACTED_VALUE}:{REDACTED_VALUE}@{rest.rpartition('@')[2]}"
    return f"{scheme}{sep}{rest}"


def header_secrets(value: str) -> list[str]:
    """The secrets in a secret header's value: the value, and for ``<scheme> <credentials>``
    the credentials (and the password of ``Basic``): a provider may quote any of them."""
    found = [value]
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if credentials and scheme.isalpha():
        found.append(credentials)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            _, colon, password = decoded.partition(":")
            if colon and password:
                found.append(password)
    return found


def _forms(secret: str) -> set[str]:
    # The ways a secret may be written in a body or a URL.
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


class Redactor:
    """Takes an actor's secret values out of the text corral keeps (see the module docstring).

    Args:
        secrets: The secret values: API keys, passwords, secret header values.
    """

    __slots__ = ("_grams", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= _forms(secret)
        # Longest first, so a secret goes before any shorter one inside it.
        self._secrets: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))
        self._grams: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
            (s, tuple({s[i : i + MIN_SECRET_RUN] for i in range(len(s) - MIN_SECRET_RUN + 1)}))
            for s in self._secrets
            if len(s) > MIN_SECRET_RUN
        )

    @classmethod
    def for_headers(
        cls,
        headers: Mapping[str, str],
        *,
        secret_headers: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ) -> Redactor:
        """A redactor of *secrets* and of the values of the secret headers in *headers*."""
        extra = tuple(secret_headers)
        values = list(secrets)
        for name, value in headers.items():
            if is_secret_header(name, extra):
                values.extend(header_secrets(value))
        return cls(values)

    def adding(self, secrets: Iterable[str]) -> Redactor:
        """This redactor, or one that also takes out *secrets* if it did not already."""
        more = [s for s in secrets if s and s not in self._secrets]
        return Redactor([*self._secrets, *more]) if more else self

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._secrets)} secret forms>"

    def text(self, text: str) -> str:
        """*text* without the secrets, URL passwords and sensitive query values in it."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for secret, grams in self._grams:
            text = _redact_runs(text, secret, grams)
        if self._secrets and _MASK.search(text):
            text = _redact_masked(text, self._secrets)
        if self._secrets:
            text = _REPEATED.sub(REDACTED, text)
        text = _USERINFO.sub(rf"\g<scheme>{REDACTED_VALUE}:{REDACTED_VALUE}@", text)
        return _QUERY_VALUE.sub(rf"\g<key>{REDACTED_VALUE}", text)

    def url(self, url: httpx.URL | str, *, query: bool = True) -> str:
        """*url* as corral keeps it: no user or password (``REDACTED:REDACTED``), sensitive
        query values ``REDACTED`` (or no query at all when *query* is false), no secrets."""
        url = httpx.URL(url)
        if not query:
            url = url.copy_with(query=None)
        return self.text(str(url))


def _redact_runs(text: str, secret: str, grams: tuple[str, ...]) -> str:
    # Each maximal run of MIN_SECRET_RUN or more characters of the secret.
    # Finding the grams with str.find keeps the usual case (none) at C speed.
    starts: list[int] = []
    for gram in grams:
        at = text.find(gram)
        while at >= 0:
            starts.append(at)
            at = text.find(gram, at + 1)
    if not starts:
        return text
    pieces: list[str] = []
    done = 0
    for start in sorted(starts):
        if start < done:
            continue
        end = start + MIN_SECRET_RUN
        while end < len(text) and text[start : end + 1] in secret:
            end += 1
        pieces += (text[done:start], REDACTED)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _redact_masked(text: str, secrets: tuple[str, ...]) -> str:
    # "sk-ab...wxyz", "sk-ab****wxyz", "…wxyz": how a secret begins, a mask,
    # how it ends, showing MIN_MASKED_SHOWN characters of it or more together.
    # Each mask goes with the secret it shows most of. A side longer than
    # MIN_SECRET_RUN is a run, and taken out already.
    pieces: list[str] = []
    done = 0
    for mask in _MASK.finditer(text):
        start, end = mask.span()
        if start < done:
            continue
        best: tuple[int, int] | None = None
        for secret in secrets:
            most = min(len(secret), MIN_SECRET_RUN)
            before = next(
                (
                    k
                    for k in range(min(most, start - done), 0, -1)
                    if text.endswith(secret[:k], done, start)
                ),
                0,
            )
            after = next((k for k in range(most, 0, -1) if text.startswith(secret[-k:], end)), 0)
            shown = before + after
            if shown >= min(MIN_MASKED_SHOWN, len(secret)) and (best is None or shown > sum(best)):
                best = (before, after)
        if best is not None:
            pieces += (text[done : start - best[0]], REDACTED)
            done = end + best[1]
    pieces.append(text[done:])
    return "".join(pieces)
