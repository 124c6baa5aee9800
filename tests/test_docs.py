"""Every program in README.md and docs/*.md runs, and prints what the page says it prints.

How a page marks its code blocks (HTML comments, which a rendered page hides):

* A ```python block is a complete program. It is run with this interpreter
  (``python -``, in an empty temporary directory) and must exit with status 0
  within ``TIMEOUT`` seconds. A new block that does not run fails this test.
* ``<!-- fragment -->`` on the line right before the fence marks a piece of a
  program (an excerpt, one step of the tutorial). A fragment is compiled
  (dedented, with top-level ``await`` and ``async with`` allowed) but not run.
* ``<!-- output -->`` on the line right before a fence marks that block as
  what the program before it prints on its standard output. Lines are compared
  without trailing space; a line that is just ``...`` stands for any number
  of lines (none included).

The programs are what users run, so they run as users run them: in a process
of their own, under ``anyio.run``'s default backend. A process each costs a
fraction of a second of interpreter start and imports, and buys isolation:
programs set global OpenTelemetry providers, environment variables and event
loops, which must not leak into each other or into this test process.

Nothing reaches the internet. A program that would call a provider reads
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` with OpenAI as the default, as a
user would write it; here they name a ``corral.testing.FakeLLMServer`` on
loopback that insists on that key. ``OTEL_EXPORTER_OTLP_ENDPOINT`` names an
OTLP receiver on loopback, ``NATS_URL`` a nats-server with JetStream. Every
proxy variable points at a closed loopback port (loopback itself excepted),
so a request for anywhere else fails at once.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import attrs
import pytest

from corral.testing import FakeLLMServer

from .helpers import closed_port
from .nats_cluster import NatsCluster
from .otlp_receiver import otlp_receiver

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Seconds a program may run; they take well under one.
TIMEOUT = 30.0
FAKE_API_KEY = "sk-corral-docs-test"

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^\s*<!--\s*(?P<word>[\w-]+)\s*-->\s*$")
_MARKERS = ("fragment", "output")
_PYTHON = ("python", "py", "python3")


@attrs.frozen
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence, from 1
    info: str
    marker: str | None
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_python(self) -> bool:
        return self.info.lower() in _PYTHON


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of *page*, each with the marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        before = _MARKER.match(lines[i - 1]) if i > 0 else None
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        assert j < len(lines), f"{page.name}:{i + 1}: the fence is never closed"
        marker = before["word"] if before is not None else None
        found.append(Block(page, i + 1, opening["info"], marker, "\n".join(body) + "\n"))
        i = j + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PROGRAMS = [b for b in ALL_BLOCKS if b.is_python and b.marker is None]
FRAGMENTS = [b for b in ALL_BLOCKS if b.is_python and b.marker == "fragment"]


def expected_output(program: Block) -> str | None:
    """The ``<!-- output -->`` block that follows *program*, if there is one."""
    blocks = [b for b in ALL_BLOCKS if b.page == program.page]
    index = blocks.index(program)
    if index + 1 < len(blocks) and blocks[index + 1].marker == "output":
        return blocks[index + 1].code
    return None


def output_matches(expected: str, actual: str) -> bool:
    """Whether *actual* has the lines of *expected*, a ``...`` line matching any lines."""
    want = [line.rstrip() for line in expected.rstrip("\n").splitlines()]
    got = [line.rstrip() for line in actual.rstrip("\n").splitlines()]

    def match(w: int, g: int) -> bool:
        if w == len(want):
            return g == len(got)
        if want[w] == "...":
            return any(match(w + 1, k) for k in range(g, len(got) + 1))
        return g < len(got) and want[w] == got[g] and match(w + 1, g + 1)

    return match(0, 0)


@pytest.fixture(scope="module")
def program_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a doc program: a fake provider, an OTLP receiver, NATS, no internet."""
    nats = NatsCluster(tmp_path_factory.mktemp("docs-nats"), size=1)
    with (
        _running(nats),
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(FakeLLMServer(api_key=FAKE_API_KEY)) as server,
        otlp_receiver() as receiver,
    ):
        proxies = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OPENAI_", "OTEL_")) and key.lower() not in proxies
        }
        dead = f"http://127.0.0.1:{closed_port()}"
        env.update(
            {
                # The SDK's convention, and corral's: the prefix, ending with /v1.
                "OPENAI_BASE_URL": server.base_url,
                "OPENAI_API_KEY": FAKE_API_KEY,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "NATS_URL": nats.urls[0],
                "HTTP_PROXY": dead,
                "HTTPS_PROXY": dead,
                "ALL_PROXY": dead,
                "NO_PROXY": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
            }
        )
        yield env


@contextlib.contextmanager
def _running(nats: NatsCluster) -> Iterator[NatsCluster]:
    try:
        nats.start()
        yield nats
    finally:
        nats.stop()


def run_program(
    code: str | Path, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run *code* (a program's text, or its file) with this interpreter."""
    return subprocess.run(
        [sys.executable, str(code) if isinstance(code, Path) else "-"],
        input=None if isinstance(code, Path) else code,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=TIMEOUT,
        check=False,
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


@pytest.mark.parametrize("block", PROGRAMS, ids=[b.where for b in PROGRAMS])
def test_program_runs(block: Block, program_env: dict[str, str], tmp_path: Path) -> None:
    """A complete program of the docs exits with 0 and prints the output the page shows."""
    result = run_program(block.code, program_env, tmp_path)
    assert result.returncode == 0, f"{block.where} exited with {result.returncode}\n" + _report(
        result
    )
    expected = expected_output(block)
    if expected is not None:
        assert output_matches(expected, result.stdout), (
            f"{block.where} printed something else than the page shows:\n"
            f"--- the page ---\n{expected}\n" + _report(result)
        )


@pytest.mark.parametrize("block", FRAGMENTS, ids=[b.where for b in FRAGMENTS])
def test_fragment_compiles(block: Block) -> None:
    """A fragment of the docs is valid Python (as an excerpt of an async function)."""
    compile(
        textwrap.dedent(block.code),
        block.where,
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )


def test_markers_are_known_and_placed() -> None:
    """Every marker is one this test knows, and an output block follows a program."""
    for block in ALL_BLOCKS:
        assert block.marker in (None, *_MARKERS), f"{block.where}: unknown marker {block.marker!r}"
        if block.marker == "fragment":
            assert block.is_python, f"{block.where}: only Python blocks are fragments"
        if block.marker == "output":
            blocks = [b for b in ALL_BLOCKS if b.page == block.page]
            before = blocks[blocks.index(block) - 1]
            assert before in PROGRAMS, f"{block.where}: an output block must follow a program"


def test_the_tutorial_ends_with_a_program_and_each_howto_has_one() -> None:
    """The tutorial's last code block is a complete program; every how-to has one."""
    tutorial = [b for b in ALL_BLOCKS if b.page.name == "tutorial.md" and b.is_python]
    assert tutorial, "docs/tutorial.md has no Python block"
    assert tutorial[-1] in PROGRAMS, f"{tutorial[-1].where}: the tutorial ends with a fragment"
    for page in sorted((ROOT / "docs").glob("howto-*.md")):
        assert any(b.page == page for b in PROGRAMS), f"{page.name} has no complete program"


def test_output_matching() -> None:
    """A '...' line matches any number of lines; other lines match exactly, in order."""
    assert output_matches("a\n...\nd\n", "a\nb\nc\nd\n")
    assert output_matches("a\n...\nb\n", "a\nb\n")
    assert output_matches("a  \nb\n", "a\nb  \n")
    assert not output_matches("a\nb\n", "a\nb\nc\n")
    assert not output_matches("a\n...\nd\n", "a\nb\nc\n")


def _run_elsewhere(example: Path) -> bool:
    # An example another test module runs already (by its path).
    needle = re.compile(rf"""["']examples["'].*["']{re.escape(example.name)}["']""")
    return any(
        needle.search(test.read_text(encoding="utf-8"))
        for test in (ROOT / "tests").glob("test_*.py")
        if test.name != Path(__file__).name
    )


def test_examples_run(program_env: dict[str, str], tmp_path: Path) -> None:
    """Every program in examples/ exits with 0 (here, unless another test runs it)."""
    examples = sorted((ROOT / "examples").glob("*.py"))
    assert examples
    for example in examples:
        if _run_elsewhere(example):
            continue
        result = run_program(example, program_env, tmp_path)
        assert result.returncode == 0, f"examples/{example.name} failed\n" + _report(result)
