"""Drawing traces in the terminal: lists of traces and one trace as a waterfall."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from ..telemetry._otlp_json import SpanRecord

__all__ = ["TraceSummary", "draw_trace", "summarise"]

_BAR = 30


@attrs.frozen(kw_only=True)
class TraceSummary:
    """One trace of a file: its root span, duration and outcome."""

    trace_id: str
    root: str
    start_ns: int
    duration_s: float
    spans: int
    #: ``error`` when any span failed, else ``ok``.
    outcome: str


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
        start = min(s.start_ns for s in members)
        end = max(s.end_ns for s in members)
        out.append(
            TraceSummary(
                trace_id=trace_id,
                root=roots[0].name if roots else members[0].name,
                start_ns=start,
                duration_s=max(0, end - start) / 1e9,
                spans=len(members),
                outcome="error" if any(s.status == "error" for s in members) else "ok",
            )
        )
    return sorted(out, key=lambda t: t.start_ns)


def _ms(ns: float) -> str:
    return f"{ns / 1e6:8.2f} ms"


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


def draw_trace(spans: Sequence[SpanRecord], *, attributes: bool = False) -> list[str]:
    """Lines drawing one trace as an indented waterfall with timings and marked events."""
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
    lines = [f"trace {spans[0].trace_id}  {_ms(total).strip()}  {len(spans)} spans"]
    width = max(len("  " * _depth(s, spans) + s.name) for s in spans) + 2

    def walk(span: SpanRecord, depth: int) -> None:
        offset = (span.start_ns - start) / total
        length = max(1, round((span.end_ns - span.start_ns) / total * _BAR))
        first = min(_BAR - 1, int(offset * _BAR))
        bar = " " * first + "█" * min(length, _BAR - first)
        flag = " ✗" if span.status == "error" else ""
        label = ("  " * depth + span.name).ljust(width)
        lines.append(
            f"{label}|{bar.ljust(_BAR)}| +{_ms(span.start_ns - start).strip():>10} "
            f"{_ms(span.end_ns - span.start_ns)} {span.kind}{flag}"
        )
        indent = "  " * (depth + 1)
        if span.status == "error" and span.status_message:
            lines.append(f"{indent}  status: error: {span.status_message[:100]}")
        for time_ns, name, attrs_ in span.events:
            mark = _MARKS.get(name, "•")
            detail = ", ".join(
                f"{k}={_short(v)}" for k, v in attrs_.items() if k != "exception.stacktrace"
            )
            lines.append(
                f"{indent}  {mark} {name} at +{_ms(time_ns - start).strip()}"
                + (f" ({detail})" if detail else "")
            )
        if attributes:
            for key, value in sorted(span.attributes.items()):
                lines.append(f"{indent}  · {key} = {_short(value)}")
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
