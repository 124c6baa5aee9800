"""Every async test runs on asyncio and on trio (anyio's pytest plugin).

Each test module that has async tests sets ``pytestmark = pytest.mark.anyio``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per anyio backend."""
    return str(request.param)


@pytest.fixture
def caplog_corral(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the ``corral`` logger at DEBUG."""
    with caplog.at_level("DEBUG", logger="corral"):
        yield caplog
