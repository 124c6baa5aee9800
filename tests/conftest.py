"""Every async test runs on asyncio and on trio (anyio's pytest plugin)."""

from __future__ import annotations

import inspect
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every coroutine test for the anyio plugin, so none is forgotten."""
    for item in items:
        func = getattr(item, "function", None)
        if func is not None and inspect.iscoroutinefunction(func):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture
def caplog_corral(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture the ``corral`` logger at DEBUG."""
    with caplog.at_level("DEBUG", logger="corral"):
        yield caplog
