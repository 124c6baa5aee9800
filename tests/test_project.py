"""The project's promises to a newcomer: exports, the README's commands, the example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import corral
import corral.telemetry
import corral.testing

ROOT = Path(__file__).resolve().parent.parent


def _isort_order(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions (and dunders).
    return (0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2, name)


PUBLIC_MODULES = (corral, corral.telemetry, corral.testing)


def test_every_public_all_is_sorted() -> None:
    """Each public module's __all__ is in one order: constants, classes, functions."""
    for module in PUBLIC_MODULES:
        names = list(module.__all__)
        assert names == sorted(names, key=_isort_order), module.__name__


def test_each_public_name_has_exactly_one_home() -> None:
    """A name is exported by exactly one of corral, corral.telemetry and corral.testing."""
    homes: dict[str, list[str]] = {}
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            homes.setdefault(name, []).append(module.__name__)
    twice = {name: where for name, where in homes.items() if len(where) > 1}
    assert not twice


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted (constants, classes, functions) and every name in it exists."""
    names = list(corral.__all__)
    assert names == sorted(names, key=_isort_order)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(corral, name), name
    public = {n for n in vars(corral) if not n.startswith("_")} - {"testing", "telemetry"}
    assert public == set(names) - {"__version__"}


def test_public_names_live_in_corral() -> None:
    """Every public class and function says corral.X in tracebacks and docs."""
    for name in corral.__all__:
        obj = getattr(corral, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__module__ == "corral", f"{name} says {obj.__module__}"
            assert obj.__doc__, f"{name} has no docstring"


def test_exceptions_share_one_base() -> None:
    """Every corral exception derives from CorralError."""
    for name in corral.__all__:
        obj = getattr(corral, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, corral.CorralError), name


def _quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```console\n(.+?)\n```", section)


def test_readme_quickstart_has_two_commands_and_ci_runs_the_second() -> None:
    """README's Quickstart is exactly two commands; .ci/run runs the second verbatim."""
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert "pytest" in commands[1]
    assert commands[0].endswith("corral demo")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def test_quickstart_example_runs_and_accounts_for_every_call() -> None:
    """The example of the first Quickstart command runs and reports no lost call."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--calls", "60"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "isolated failure" in out.stdout
    assert "60 requests: 59 succeeded, 1 failed, none lost" in out.stdout


def _without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    # A plain install, as far as Python can tell: these modules cannot be imported.
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{hide}{code}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


EXTRAS = ["opentelemetry.sdk", "opentelemetry.exporter", "rich"]


def test_a_plain_install_needs_no_sdk_exporter_or_rich() -> None:
    """Without the extras, corral imports and serves calls, loading none of them."""
    code = """
import anyio, corral

@corral.message
class Ping2:
    pass

class A(corral.Actor[Ping2, int]):
    async def handle(self, msg):
        return 1

async def main():
    async with corral.Runtime() as rt:
        ref = await rt.spawn(A, name="a")
        assert await ref.ask(Ping2()) == 1

anyio.run(main)
loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk", "rich")) and sys.modules[m]]
print("loaded:", loaded)
"""
    result = _without(EXTRAS, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded: []"


def test_a_missing_extra_is_one_line_naming_it() -> None:
    """configure() without the SDK, and corral demo without rich, say which extra to install."""
    result = _without(EXTRAS, "import corral.telemetry\ncorral.telemetry.configure()")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: corral.telemetry.configure() needs opentelemetry.sdk, which "
        "corral's 'otel' extra installs: pip install 'corral[otel]'"
    )
    demo = "from corral._cli import main\nraise SystemExit(main(['demo', '--calls', '1']))"
    result = _without(["rich"], demo)
    assert result.returncode == 2
    assert result.stderr == (
        "corral demo: error: corral demo needs rich, which corral's 'cli' extra installs: "
        "pip install 'corral[cli]'\n"
    )


def test_the_extras_are_declared() -> None:
    """The plain dependencies hold no SDK, exporter or rich; otel and cli bring them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    plain = " ".join(project["dependencies"])
    for name in ("opentelemetry-sdk", "opentelemetry-exporter", "rich"):
        assert name not in plain
    extras = project["optional-dependencies"]
    assert any(d.startswith("opentelemetry-sdk") for d in extras["otel"])
    assert "corral[otel]" in extras["cli"] and any(d.startswith("rich") for d in extras["cli"])


def test_importing_corral_registers_no_instrument() -> None:
    """The default instruments are import paths looked up when a runtime starts, not a
    registry that importing a module appends to."""
    import importlib

    from corral._core import _instrument

    assert isinstance(_instrument.DEFAULT_INSTRUMENTS, tuple)
    for path in _instrument.DEFAULT_INSTRUMENTS:
        module, _, name = path.partition(":")
        assert callable(getattr(importlib.import_module(module), name))
    from opentelemetry.sdk.trace import TracerProvider

    from corral.telemetry import OpenTelemetry

    # Whatever is configured globally: at most the OpenTelemetry instrument,
    # and none beside one the runtime was given.
    assert all(isinstance(i, OpenTelemetry) for i in _instrument.default_instruments([]))
    given = OpenTelemetry(tracer_provider=TracerProvider())
    assert _instrument.default_instruments([given]) == []
