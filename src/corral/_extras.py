"""What the optional extras bring, and the one-line error when one is missing.

A plain ``pip install corral`` brings what the library itself needs (anyio,
attrs, cattrs, httpx, aiohttp, opentelemetry-api). The OpenTelemetry SDK and
its OTLP exporter come with the ``otel`` extra; rich (for the demo's live
view) with ``cli``, which includes ``otel``.
"""

from __future__ import annotations

import importlib

__all__ = ["need"]


def need(module: str, extra: str, who: str) -> None:
    """Import *module*, or raise a ``ModuleNotFoundError`` naming the extra that brings it.

    *who* says what needs it (``"corral.telemetry.configure()"``), for the message.
    """
    try:
        importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(
            f"{who} needs {module}, which corral's {extra!r} extra installs: "
            f"pip install 'corral[{extra}]'",
            name=module,
        ) from None
