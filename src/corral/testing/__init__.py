"""Helpers for testing code that uses corral: a manual clock and a fake LLM server."""

from .._core._clock import ManualClock as ManualClock
from ._fake_llm import FakeLLMServer as FakeLLMServer
from ._fake_llm import Faults as Faults
from ._fake_llm import ServerStats as ServerStats

__all__ = ["FakeLLMServer", "Faults", "ManualClock", "ServerStats"]

for _obj in (ManualClock, FakeLLMServer, Faults, ServerStats):
    _obj.__module__ = __name__
del _obj
