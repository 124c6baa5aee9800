"""Server-sent events decoded as the HTML standard's event stream interpretation says."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral._services._sse import SSEDecoder, SSEEvent, aiter_sse

from .loopback_http import Canned, canned_server

pytestmark = pytest.mark.anyio


def split_lines(text: str) -> list[str]:
    """What a transport's line splitter gives: lines split on CRLF, CR or LF, without them."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":  # the terminator of the last line ends no new line
        lines.pop()
    return lines


def decode(text: str) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [e for line in split_lines(text) if (e := decoder.decode(line)) is not None]


def test_the_standards_stock_example_joins_data_lines_with_newlines() -> None:
    """The standard's first example: three data lines make one message event."""
    assert decode("data: YHOO\ndata: +2\ndata: 10\n\n") == [SSEEvent(data="YHOO\n+2\n10")]


def test_the_standards_id_example_keeps_the_last_id_and_resets_it_with_an_empty_one() -> None:
    """The standard's second example: comments ignored, ids carried over and reset by `id`."""
    text = (
        ": test stream\n\n"
        "data: first event\nid: 1\n\n"
        "data:second event\nid\n\n"
        "data:  third event\n\n"
    )
    assert decode(text) == [
        SSEEvent(data="first event", id="1"),
        SSEEvent(data="second event", id=""),
        SSEEvent(data=" third event", id=""),
    ]


def test_the_standards_empty_data_example_and_its_unterminated_last_block() -> None:
    """The standard's third example: `data` alone is empty data, a last block without blank line
    is discarded."""
    assert decode("data\n\ndata\ndata\n\ndata:") == [SSEEvent(data=""), SSEEvent(data="\n")]


def test_the_standards_space_example_strips_one_space_after_the_colon() -> None:
    """The standard's fourth example: `data:test` and `data: test` are the same event."""
    assert decode("data:test\n\ndata: test\n\n") == [SSEEvent(data="test"), SSEEvent(data="test")]


def test_event_sets_the_type_and_the_type_resets_after_each_event() -> None:
    """`event:` names the event's type; the next event without one is a "message" again."""
    assert decode("event: delta\ndata: 1\n\ndata: 2\n\nevent\ndata: 3\n\n") == [
        SSEEvent(event="delta", data="1"),
        SSEEvent(data="2"),
        SSEEvent(data="3"),
    ]


def test_a_block_without_data_is_not_dispatched_but_its_id_and_retry_stay() -> None:
    """An event with no data field is dropped; the id and retry it set apply to what follows."""
    assert decode("event: ping\nid: 7\nretry: 250\n\ndata: x\n\n") == [
        SSEEvent(data="x", id="7", retry=250)
    ]


def test_an_id_containing_nul_is_ignored() -> None:
    """An `id` with U+0000 in it leaves the last event id as it was."""
    assert decode("id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n") == [
        SSEEvent(data="a", id="1"),
        SSEEvent(data="b", id="1"),
    ]


@pytest.mark.parametrize("value", ["10a", "-1", "  5", "1.5", "", "\u0661\u0660", "\u00b2"])
def test_retry_counts_only_when_all_ascii_digits(value: str) -> None:
    """`retry` values with anything but ASCII digits are ignored (Arabic-Indic digits too)."""
    assert decode(f"retry: 100\ndata: a\n\nretry:{value}\ndata: b\n\n") == [
        SSEEvent(data="a", retry=100),
        SSEEvent(data="b", retry=100),
    ]


def test_comments_unknown_fields_and_a_colonless_unknown_field_are_ignored() -> None:
    """Lines starting with `:`, fields the standard does not name, with or without a colon."""
    assert decode(":comment\n: another\nfoo: bar\nbaz\ndata: kept\n:\n\n") == [
        SSEEvent(data="kept")
    ]


def test_only_one_space_after_the_colon_is_stripped_and_further_colons_are_data() -> None:
    """`data:  x: y` has the value ` x: y`."""
    assert decode("data:  x: y\n\n") == [SSEEvent(data=" x: y")]


def test_a_byte_order_mark_at_the_start_is_ignored_but_not_later() -> None:
    """One U+FEFF before the first line is not part of it; one later makes an unknown field."""
    assert decode("\ufeffdata: a\n\n\ufeffdata: b\n\n") == [SSEEvent(data="a")]


def test_a_line_with_its_terminator_is_refused() -> None:
    """Lines must come split: one that still holds CR or LF is a caller's mistake, named."""
    decoder = SSEDecoder()
    for line in ("data: x\n", "data: x\r", "data: a\r\ndata: b"):
        with pytest.raises(ValueError, match="split on CR, LF or CRLF"):
            decoder.decode(line)


def test_pending_says_an_event_was_cut_short() -> None:
    """After data with no blank line yet the decoder is pending; the blank line clears it."""
    decoder = SSEDecoder()
    seen = [decoder.pending]
    assert decoder.decode("data: partial") is None
    seen.append(decoder.pending)
    assert decoder.decode("") == SSEEvent(data="partial")
    seen.append(decoder.pending)
    assert decoder.decode("id: 3") is None
    seen.append(decoder.pending)  # an id alone makes no event
    assert seen == [False, True, False, False]
    assert decoder.last_event_id == "3"


async def lines_of(items: Iterable[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_aiter_sse_discards_an_event_not_followed_by_a_blank_line() -> None:
    """At the end of the lines an unterminated event is dropped, as the standard says."""
    events = [e async for e in aiter_sse(lines_of(["data: 1", "", "data: 2"]))]
    assert events == [SSEEvent(data="1")]


async def test_events_over_http_with_crlf_cr_and_lf_line_endings() -> None:
    """Through httpx's aiter_lines, CRLF, CR and LF all end lines (the splitter's job)."""
    body = b"data: a\r\ndata: b\r\n\r\nevent: e\rdata: c\r\rid: 9\ndata: d\n\n"
    canned = Canned(body=body, content_type="text/event-stream")
    async with canned_server(canned) as server, httpx.AsyncClient() as client:
        async with client.stream("GET", server.base_url + "/events") as response:
            events = [e async for e in aiter_sse(response.aiter_lines())]
    assert events == [
        SSEEvent(data="a\nb"),
        SSEEvent(event="e", data="c"),
        SSEEvent(data="d", id="9"),
    ]


# Text a field value may hold: anything but CR, LF (and, for ids, NUL).
_value = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))
_event = st.fixed_dictionaries(
    {
        "event": st.one_of(st.none(), _value.filter(bool)),
        "data": st.lists(_value, min_size=1, max_size=4).map("\n".join),
        "id": st.one_of(st.none(), _value.filter(lambda v: "\0" not in v)),
        "retry": st.one_of(st.none(), st.integers(min_value=0, max_value=10**12)),
        "end": st.sampled_from(["\n", "\r", "\r\n"]),
        "comment": st.one_of(st.none(), _value),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=6))
def test_encoded_events_decode_to_themselves(specs: list[dict[str, object]]) -> None:
    """Any events, written as a server would (any line ending, comments), decode back."""
    text = ""
    expected: list[SSEEvent] = []
    last_id: str | None = None
    retry: int | None = None
    for spec in specs:
        end = str(spec["end"])
        fields: list[str] = []
        if spec["comment"] is not None:
            fields.append(f":{spec['comment']}")
        if spec["event"] is not None:
            fields.append(f"event: {spec['event']}")
        fields += [f"data: {line}" for line in str(spec["data"]).split("\n")]
        if spec["id"] is not None:
            last_id = str(spec["id"])
            fields.append(f"id: {last_id}")
        if spec["retry"] is not None:
            retry = int(str(spec["retry"]))
            fields.append(f"retry: {retry}")
        text += "".join(f + end for f in fields) + end
        expected.append(
            SSEEvent(
                event=str(spec["event"] or "message"),
                data=str(spec["data"]),
                id=last_id,
                retry=retry,
            )
        )
    assert decode(text) == expected
