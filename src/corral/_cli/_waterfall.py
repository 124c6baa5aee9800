"""Drawing traces in the terminal: lists of traces and one trace as a waterfall."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

import attrs

from ..telemetry._otlp_json import SpanRecord

__all__ = ["TraceSummary", "draw_trace", "list_traces", "summarise"]

#: Widest and narrowest bar of a waterfall, in columns.
_BAR = 30
_MIN_BAR = 10
#: A span's name is cut to no fewer columns than this to make a row fit.
_MIN_LABEL = 12
#: Trace ids are shortened to no fewer hex digits than this to make a row fit.
_MIN_ID = 12
#: The event corral's instrument marks each retry with.
_RETRY_EVENT = "retry scheduled"


@attrs.frozen(kw_only=True)
class TraceSummary:
    """One trace of a file: its root span, duration and outcome."""

    trace_id: str
    root: str
    start_ns: int
    duration_s: float
    spans: int
    #: The root span's outcome: ``error`` when it failed, else ``ok``. Failed
    #: spans inside a call that succeeded are attempts that were retried.
    outcome: str
    #: Retries scheduled within the trace.
    retries: int
    #: Spans whose status is error, the root's included.
    failed_spans: int

    @property
    def label(self) -> str:
        """The outcome with its retries: ``ok``, ``ok (2 retries)``, ``error (1 retry)``."""
        if not self.retries:
            return self.outcome
        return f"{self.outcome} ({self.retries} {'retry' if self.retries == 1 else 'retries'})"


def _roots(spans: Sequence[SpanRecord]) -> list[SpanRecord]:
    ids = {s.span_id for s in spans}
    return sorted(
        (s for s in spans if not s.parent_id or s.parent_id not in ids), key=lambda s: s.start_ns
    )


def summarise(spans: Iterable[SpanRecord]) -> list[TraceSummary]:
    """One summary per trace, in order of start."""
    traces: dict[str, list[SpanRecord]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    out = []
    for trace_id, members in traces.items():
        roots = _roots(members)
        root = roots[0] if roots else members[0]
        start = min(s.start_ns for s in members)
        end = max(s.end_ns for s in members)
        out.append(
            TraceSummary(
                trace_id=trace_id,
                root=root.name,
                start_ns=start,
                duration_s=max(0, end - start) / 1e9,
                spans=len(members),
                outcome="error" if root.status == "error" else "ok",
                retries=sum(1 for s in members for e in s.events if e[1] == _RETRY_EVENT),
                failed_spans=sum(1 for s in members if s.status == "error"),
            )
        )
    return sorted(out, key=lambda t: t.start_ns)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def list_traces(
    traces: Sequence[TraceSummary], *, limit: int | None = None, width: int | None = None
) -> list[str]:
    """The table of the first *limit* of *traces*, one line each, fitted to *width* columns.

    When a row would not fit, trace ids are shortened to a prefix still
    unique among all *traces* (``corral trace --id`` takes it; a drawn trace
    shows the whole id), then the root span's name is cut.
    """
    ids = [t.trace_id for t in traces]
    more = 0
    if limit is not None and len(traces) > limit:
        traces, more = traces[:limit], len(traces) - limit
    outcome = max([len("outcome"), *(len(t.label) for t in traces)])
    root = max([len("root span"), *(len(t.root) for t in traces)])
    id_w = max([len("trace id"), *(len(i) for i in ids)])
    fixed = 2 + 11 + 2 + 5 + 2 + outcome + 2
    if width is not None and id_w + fixed + root > width:
        id_w = max(_MIN_ID, min(id_w, width - fixed - root))
        while len({i[:id_w] for i in ids}) < len(ids) and id_w < max(map(len, ids)):
            id_w += 1
    room = None if width is None else max(_MIN_LABEL, width - id_w - fixed)
    lines = [
        f"{'trace id':<{id_w}}  {'duration':>11}  {'spans':>5}  {'outcome':<{outcome}}  root span"
    ]
    for t in traces:
        name = t.root if room is None else _fit(t.root, room)
        lines.append(
            f"{t.trace_id[:id_w]:<{id_w}}  {t.duration_s * 1000:>8.2f} ms  {t.spans:>5}  "
            f"{t.label:<{outcome}}  {name}"
        )
    if more:
        lines.append(f"... and {more} more (--limit N)")
    return lines


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms"


_MARKS = {
    "retry scheduled": "↻",
    "exception": "✗",
    "cancelled": "⊘",
    "deadline exceeded": "⏱",
    "restarted": "⟳",
    "restart scheduled": "⟳",
    "rate limit wait": "⧗",
    "escalated": "⇧",
}


def _origins(spans: Sequence[SpanRecord]) -> set[str]:
    """The failed spans whose status message is their own, not a child's passed up.

    A failure is recorded on each span it passes through (the HTTP request,
    the model call, the attempt, the call): its message is shown once, on
    the span it started in; the spans it passed through only get the mark.
    """
    passed_up: set[str] = set()
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        parent = by_id.get(span.parent_id) if span.parent_id else None
        if (
            parent is not None
            and span.status == "error"
            and parent.status == "error"
            and parent.status_message == span.status_message
        ):
            passed_up.add(parent.span_id)
    return {s.span_id for s in spans if s.status == "error" and s.span_id not in passed_up}


def draw_trace(
    spans: Sequence[SpanRecord], *, attributes: bool = False, width: int | None = None
) -> list[str]:
    """Lines drawing one trace as an indented waterfall with timings and marked events.

    With *width*, every line fits in that many columns: the bars narrow, then
    long span names are cut, and event, status and attribute lines wrap.
    Spans of more than one process are each marked ``@<instance>`` (the
    resource's ``service.instance.id``, else its ``service.name``).
    """
    if not spans:
        return []
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(1, end - start)
    children: dict[str | None, list[SpanRecord]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_ns)
    origins = _origins(spans)
    offset_w = max(len(_ms(s.start_ns - start)) for s in spans)
    dur_w = max(len(_ms(s.end_ns - s.start_ns)) for s in spans)

    def timing(span: SpanRecord) -> str:
        flag = " ✗" if span.status == "error" else ""
        offset = _ms(span.start_ns - start)
        duration = _ms(span.end_ns - span.start_ns)
        return f" +{offset:>{offset_w}} {duration:>{dur_w}} {span.kind}{flag}"

    # Spans of several processes: each says whose it is.
    several = len({(s.service, s.instance) for s in spans}) > 1

    def shown(span: SpanRecord) -> str:
        return f"{span.name} @{span.instance or span.service}" if several else span.name

    label_w = max(len("  " * _depth(s, spans) + shown(s)) for s in spans) + 1
    bar_w = _BAR
    if width is not None:
        fixed = max(len(timing(s)) for s in spans) + 2  # and the bar's two edges
        bar_w = max(_MIN_BAR, min(_BAR, width - fixed - label_w))
        label_w = max(_MIN_LABEL, min(label_w, width - fixed - bar_w))

    lines = [f"trace {spans[0].trace_id}  {_ms(total)}  {len(spans)} spans"]

    def note(indent: str, text: str) -> None:
        if width is None or len(indent + text) <= width:
            lines.append(indent + text)
            return
        lines.extend(
            textwrap.wrap(
                text,
                width=max(20, width),
                initial_indent=indent,
                subsequent_indent=indent + "    ",
            )
        )

    def walk(span: SpanRecord, depth: int) -> None:
        offset = (span.start_ns - start) / total
        length = max(1, round((span.end_ns - span.start_ns) / total * bar_w))
        first = min(bar_w - 1, int(offset * bar_w))
        bar = " " * first + "█" * min(length, bar_w - first)
        label = _fit("  " * depth + shown(span), label_w - 1).ljust(label_w)
        lines.append(f"{label}|{bar.ljust(bar_w)}|{timing(span)}")
        indent = "  " * (depth + 2)
        if span.span_id in origins and span.status_message:
            note(indent, f"status: error: {span.status_message[:200]}")
        for time_ns, name, attrs_ in span.events:
            mark = _MARKS.get(name, "•")
            detail = ", ".join(
                f"{k}={_short(v)}"
                for k, v in attrs_.items()
                if k != "exception.stacktrace"
                # The status line says it already (or a child's does).
                and not (k == "exception.message" and v == span.status_message)
            )
            note(
                indent,
                f"{mark} {name} at +{_ms(time_ns - start)}" + (f" ({detail})" if detail else ""),
            )
        if attributes:
            for key, value in sorted(span.attributes.items()):
                note(indent, f"· {key} = {_short(value)}")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return lines


def _short(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _depth(span: SpanRecord, spans: Sequence[SpanRecord]) -> int:
    by_id = {s.span_id: s for s in spans}
    depth = 0
    parent = span.parent_id
    while parent in by_id and depth < 50:
        depth += 1
        parent = by_id[parent].parent_id
    return depth
