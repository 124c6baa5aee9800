"""OpenTelemetry tracing and metrics for corral.

With OpenTelemetry configured globally (by :func:`configure`, or by your own
setup), every :class:`corral.Runtime` traces its calls and supervision
events and records metrics, with no further setup. Without it, nothing is
traced and calls pay nothing.
"""

from ._delivery import ExportStatistics as ExportStatistics
from ._instrument import DEFAULT_FLUSH_TIMEOUT as DEFAULT_FLUSH_TIMEOUT
from ._instrument import OpenTelemetry as OpenTelemetry
from ._otlp_json import OTLPJsonFileExporter as OTLPJsonFileExporter
from ._otlp_json import SpanRecord as SpanRecord
from ._otlp_json import TraceFileError as TraceFileError
from ._otlp_json import read_otlp_json as read_otlp_json
from ._otlp_json import to_jaeger as to_jaeger
from ._propagation import inject as inject
from ._setup import DEFAULT_OTLP_ENDPOINT as DEFAULT_OTLP_ENDPOINT
from ._setup import Telemetry as Telemetry
from ._setup import configure as configure

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_OTLP_ENDPOINT",
    "ExportStatistics",
    "OTLPJsonFileExporter",
    "OpenTelemetry",
    "SpanRecord",
    "Telemetry",
    "TraceFileError",
    "configure",
    "inject",
    "read_otlp_json",
    "to_jaeger",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("corral.telemetry._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
