"""W3C trace context in envelopes that cross a process boundary."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from opentelemetry import propagate, trace

from .._core._messages import EMPTY_TRACE_CONTEXT, Envelope

__all__ = ["current_carrier", "inject"]


def current_carrier() -> Mapping[str, str]:
    """The W3C headers of the current span, or the shared empty carrier when there is none.

    Costs one context lookup when nothing is traced: no carrier is made.
    """
    if not trace.get_current_span().get_span_context().is_valid:
        return EMPTY_TRACE_CONTEXT
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or EMPTY_TRACE_CONTEXT


def inject(envelope: Envelope) -> Envelope:
    """Return *envelope* carrying the current span's W3C trace context.

    Call it before :meth:`corral.Protocol.dumps` (which never reads the
    ambient span itself) so that an envelope sent from inside a traced
    handler continues that trace on the other side, where
    :meth:`corral.Runtime.deliver` reads it back. An envelope that already
    has a trace context, or a call outside any span, is returned as it is.
    """
    if envelope.trace_context:
        return envelope
    carrier = current_carrier()
    if not carrier:
        return envelope
    return attrs.evolve(envelope, trace_context=carrier)
