"""Every async test runs on asyncio and on trio (anyio's pytest plugin).

Each test module that has async tests sets ``pytestmark = pytest.mark.anyio``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(
    params=[
        # asyncio in debug mode (as anyio's own tests run): a coroutine never
        # awaited, a callback from another thread, a slow step are reported.
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Run each async test once per anyio backend."""
    name, options = request.param
    return name, dict(options)


@pytest.fixture
def caplog_corral(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the ``corral`` logger at DEBUG."""
    with caplog.at_level("DEBUG", logger="corral"):
        yield caplog
