"""Server-sent events, decoded as the HTML standard says, from lines of any transport.

The standard's event stream interpretation
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
a blank line dispatches the event built from the fields before it;
``data`` lines are joined with ``"\\n"``; a line starting with ``:`` is a
comment; a line without a colon is a field with an empty value; one space
after the colon is not part of the value; an ``id`` containing NUL is
ignored, and the last id given stays the id of the events after it;
``retry`` counts only when it is all ASCII digits; an event with no
``data`` field is not dispatched; and an event not followed by a blank
line when the stream ends is discarded.

Splitting the stream into lines is the transport's job, so that this
module works the same fed by httpx today or another client later: give
each line without its terminator, split on CR, LF or CRLF, as httpx's
``Response.aiter_lines()`` does. Decoding bytes (UTF-8) is also the
transport's job.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import attrs

__all__ = ["SSEDecoder", "SSEEvent", "aiter_sse"]


@attrs.frozen(kw_only=True)
class SSEEvent:
    """One dispatched server-sent event.

    Attributes:
        event: The event type; ``"message"`` when the stream gave none.
        data: The ``data`` lines, joined with ``"\\n"`` (``""`` for one
            empty ``data`` line).
        id: The last event id the stream set, by this event or an earlier
            one (``""`` once reset by an empty ``id``); ``None`` if it
            never set one.
        retry: The reconnection time, milliseconds, the stream last set
            (by this event or an earlier one, even one not dispatched);
            ``None`` if it never set one.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def _digits(value: str) -> bool:
    # str.isdigit() also takes "²" and "٣"; the standard wants ASCII digits only.
    return bool(value) and value.isascii() and value.isdigit()


class SSEDecoder:
    """Builds server-sent events from the stream's lines, one line at a time.

    One decoder per stream: it keeps the last event id and reconnection
    time across events, as the standard asks.
    """

    __slots__ = ("_data", "_event", "_first", "_id", "_retry")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self._first = True

    @property
    def last_event_id(self) -> str | None:
        """The last event id the stream set, or ``None``."""
        return self._id

    @property
    def retry(self) -> int | None:
        """The reconnection time (milliseconds) the stream last set, or ``None``."""
        return self._retry

    @property
    def pending(self) -> bool:
        """Whether lines of an event not yet dispatched have been read (fields after the
        last blank line): at the end of the stream, an event cut short."""
        return bool(self._data) or bool(self._event)

    def decode(self, line: str) -> SSEEvent | None:
        """Read one *line* (without its terminator); return the event a blank line dispatches.

        Raises:
            ValueError: *line* contains CR or LF (it was not split, or kept
                its terminator).
        """
        if "\n" in line or "\r" in line:
            raise ValueError(
                f"SSE lines must come split on CR, LF or CRLF, without them: got {line[:80]!r}"
            )
        if self._first:
            self._first = False
            if line.startswith("\ufeff"):  # one byte order mark at the start is ignored
                line = line[1:]
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and _digits(value):
            self._retry = int(value)
        # Any other field, an id with NUL and a retry not all digits are ignored.
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(
            event=event or "message", data="\n".join(data), id=self._id, retry=self._retry
        )


async def aiter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SSEEvent]:
    """The events in a stream given as *lines* (each without its terminator).

    An event still open when *lines* end (no blank line after it) is
    discarded, as the standard says: the stream was cut before it was
    complete. Use an :class:`SSEDecoder` directly to see that happen
    (:attr:`SSEDecoder.pending`).

    It is an async generator: a caller that may stop early wraps it in
    ``contextlib.aclosing`` so that it, and *lines*, are closed at once
    rather than by the garbage collector.

    Raises:
        ValueError: a line contains CR or LF.
    """
    decoder = SSEDecoder()
    async for line in lines:
        event = decoder.decode(line)
        if event is not None:
            yield event
