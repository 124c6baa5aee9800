"""docs/reference.md documents every public name as the code has it; jaeger.md every span event.

What counts as documenting a name in reference.md: a *definition* of it,
which is a bold code span (**`Name`**, **`Name(...)`**, **`corral.testing.Name`**)
or a code span in the first cell of a table row. A name merely mentioned in
running text is not documented. Names of ``corral.telemetry`` and
``corral.testing`` may be written with or without their module.

A definition with parentheses is a signature, and is checked against
``inspect.signature``: the same parameters in the same order, of the same
kind (after ``*``: keyword-only), with the same defaults. A default written
``...`` is not compared (the page says what it is); any other default is
evaluated among the public names and must equal the code's. A signature in
the first cell of a table row belongs to the class defined last before the
table (a method, with ``self`` left out). A ``@decorator(...)`` signature
leaves out the decorated object (the positional-only parameters).
"""

from __future__ import annotations

import ast
import builtins
import enum
import inspect
import random
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import corral
import corral.telemetry
import corral.testing
from corral import BreakerState

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
JAEGER = ROOT / "docs" / "jaeger.md"
MODULES: tuple[ModuleType, ...] = (corral, corral.telemetry, corral.testing)

_CODE = re.compile(r"`([^`]+)`")
_BOLD_CODE = re.compile(r"\*\*`([^`]+)`\*\*")
_PREFIX = re.compile(r"^(?:await |async with |async |with |@)+")
_HEAD = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?P<sub>\[[^\]]*\])?")


@attrs.frozen
class Definition:
    """One definition on the page: its code, its line, and the class it is under."""

    code: str
    line: int
    in_table: bool
    owner: str | None  # for a table row: the class defined last before it


def public_names() -> dict[str, Any]:
    """Every public name of the three modules, by its shortest qualified spelling."""
    names: dict[str, Any] = {}
    for module in MODULES:
        for name in module.__all__:
            names[name] = getattr(module, name)
    return names


def resolve(name: str) -> Any | None:
    """The public object a name on the page means, or ``None``."""
    for prefix in ("corral.telemetry.", "corral.testing.", "corral."):
        if name.startswith(prefix):
            module = {
                "corral.telemetry.": corral.telemetry,
                "corral.testing.": corral.testing,
                "corral.": corral,
            }[prefix]
            rest = name[len(prefix) :]
            if rest in module.__all__:
                return getattr(module, rest)
            if "." in rest:  # corral.Class.member
                head, _, member = rest.partition(".")
                if head in module.__all__:
                    return getattr(getattr(module, head), member, None)
            return None
    names = public_names()
    head, _, member = name.partition(".")
    if head not in names:
        return None
    obj = names[head]
    return getattr(obj, member, None) if member else obj


def definitions() -> Iterator[Definition]:
    owner: str | None = None
    for number, line in enumerate(REFERENCE.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#"):
            owner = None
            for code in _CODE.findall(line):
                yield Definition(code, number, False, None)
            continue
        cells = re.split(r"(?<!\\)\|", line)
        if line.startswith("|") and len(cells) > 2:
            first = cells[1]
            if set(first.strip()) <= {"-", ":", " "}:
                continue
            for code in _CODE.findall(first):
                yield Definition(code.replace("\\|", "|"), number, True, owner)
            continue
        for code in _BOLD_CODE.findall(line):
            yield Definition(code, number, False, None)
            head = _HEAD.match(_PREFIX.sub("", code))
            if head is not None and isinstance(resolve(head["name"]), type):
                owner = head["name"]


def defined_name(code: str) -> str | None:
    head = _HEAD.match(_PREFIX.sub("", code))
    return head["name"] if head is not None else None


def test_every_public_name_is_documented() -> None:
    """Each name in the __all__ of corral, corral.telemetry and corral.testing is defined."""
    spellings = {defined_name(d.code) for d in definitions()}
    missing = []
    for module in MODULES:
        for name in module.__all__:
            qualified = f"{module.__name__}.{name}"
            if not ({name, qualified} & spellings):
                missing.append(qualified)
    assert not missing, f"docs/reference.md has no definition of: {', '.join(missing)}"


def test_public_names_are_unique_across_modules() -> None:
    """An unqualified name on the page means one object (the three __all__ do not overlap)."""
    seen: dict[str, str] = {}
    for module in MODULES:
        for name in module.__all__:
            assert name not in seen, f"{name} is public in {seen[name]} and {module.__name__}"
            seen[name] = module.__name__


def test_enum_members_are_documented() -> None:
    """Every member of a public enum appears in backticks in the reference."""
    text = REFERENCE.read_text(encoding="utf-8")
    spans = set(_CODE.findall(text))
    for name, obj in public_names().items():
        if isinstance(obj, type) and issubclass(obj, enum.Enum):
            missing = [m.name for m in obj if m.name not in spans]
            assert not missing, f"{name} members missing from docs/reference.md: {missing}"


# --- signatures ---------------------------------------------------------------------------


def _split_call(code: str) -> tuple[str, str] | None:
    """``(name, "(params)")`` of a signature on the page, or ``None`` if it has none."""
    text = _PREFIX.sub("", code)
    head = _HEAD.match(text)
    if head is None or not text[head.end() :].startswith("("):
        return None
    depth = 0
    for index in range(head.end(), len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return head["name"], text[head.end() : index + 1]
    raise AssertionError(f"unbalanced parentheses in `{code}`")


def _documented_parameters(params: str) -> list[inspect.Parameter]:
    tree = ast.parse(f"def _{params}: pass")
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    args = function.args
    found: list[inspect.Parameter] = []
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += list(args.defaults)
    kinds = [inspect.Parameter.POSITIONAL_ONLY] * len(args.posonlyargs)
    kinds += [inspect.Parameter.POSITIONAL_OR_KEYWORD] * len(args.args)
    for arg, default, kind in zip(positional, defaults, kinds, strict=True):
        found.append(_parameter(arg.arg, kind, default))
    if args.vararg is not None:
        found.append(_parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, None))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        found.append(_parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY, kw_default))
    if args.kwarg is not None:
        found.append(_parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, None))
    return found


def _parameter(name: str, kind: Any, default: ast.expr | None) -> inspect.Parameter:
    # The default is kept as its source text; "..." means "not compared".
    value = inspect.Parameter.empty if default is None else ast.unparse(default)
    return inspect.Parameter(name, kind, default=value)


def _namespace() -> dict[str, Any]:
    return {**public_names(), "corral": corral, "random": random, "__builtins__": builtins}


def _real_default(obj: Any, parameter: inspect.Parameter) -> Any:
    default = parameter.default
    if default is attrs.NOTHING and isinstance(obj, type) and attrs.has(obj):
        field = attrs.fields_dict(obj)[parameter.name].default
        if isinstance(field, attrs.Factory):  # type: ignore[arg-type]
            return field.factory()
    return default


def _real_parameters(obj: Any, decorator: bool) -> list[inspect.Parameter]:
    parameters = list(inspect.signature(obj).parameters.values())
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    if decorator:
        parameters = [p for p in parameters if p.kind is not p.POSITIONAL_ONLY]
    return parameters


def _vararg(documented: list[inspect.Parameter]) -> str:
    # A *args name is not part of the API: take the page's.
    return next(p.name for p in documented if p.kind is p.VAR_POSITIONAL)


def signatures() -> list[tuple[Definition, str, str]]:
    found = []
    for definition in definitions():
        split = _split_call(definition.code)
        if split is not None:
            found.append((definition, *split))
    return found


SIGNATURES = signatures()


def _owned(definition: Definition, name: str) -> Any | None:
    if definition.in_table and definition.owner is not None:
        owner = resolve(definition.owner)
        member = inspect.getattr_static(owner, name, None)
        if member is not None:
            if isinstance(member, (classmethod, staticmethod)):
                return getattr(owner, name)
            return member
    return resolve(name)


@pytest.mark.parametrize(
    ("definition", "name", "params"),
    SIGNATURES,
    ids=[f"{d.line}:{name}" for d, name, _ in SIGNATURES],
)
def test_signature_matches_the_code(definition: Definition, name: str, params: str) -> None:
    """A signature on the page has the code's parameters, kinds and defaults."""
    where = f"docs/reference.md:{definition.line}: `{definition.code}`"
    obj = _owned(definition, name)
    assert obj is not None, f"{where}: no such public name or member of {definition.owner}"
    real = _real_parameters(obj, definition.code.startswith("@"))
    documented = _documented_parameters(params)
    assert [(p.name, p.kind) for p in documented] == [
        (_vararg(documented) if p.kind is p.VAR_POSITIONAL else p.name, p.kind) for p in real
    ], f"{where}: the code has ({', '.join(str(p) for p in real)})"
    for page, code in zip(documented, real, strict=True):
        real_default = _real_default(obj, code)
        if page.default is inspect.Parameter.empty:
            assert real_default is inspect.Parameter.empty, (
                f"{where}: {code.name} has the default {real_default!r} in the code"
            )
            continue
        assert real_default is not inspect.Parameter.empty, (
            f"{where}: {code.name} has no default in the code"
        )
        if page.default == "...":
            continue
        value = eval(page.default, _namespace())
        assert value == real_default, (
            f"{where}: {code.name}={page.default} on the page, {real_default!r} in the code"
        )


def test_signature_check_catches_a_wrong_default() -> None:
    """The signature check sees a default that differs from the code's."""
    documented = _documented_parameters("(*, min, max, jitter=0.3, reset_after=None)")
    real = _real_parameters(corral.Backoff, decorator=False)
    assert [p.name for p in documented] == [p.name for p in real]
    page = next(p for p in documented if p.name == "jitter")
    code = next(p for p in real if p.name == "jitter")
    assert eval(page.default, _namespace()) != _real_default(corral.Backoff, code)


# --- span events and attributes (docs/jaeger.md) -----------------------------------------

_TELEMETRY_SOURCES = (
    ROOT / "src" / "corral" / "telemetry" / "_instrument.py",
    *sorted((ROOT / "src" / "corral" / "_services").glob("*.py")),
)


def _source_trees() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted((ROOT / "src" / "corral").rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _calls(tree: ast.AST, method: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
        ):
            yield node


def _names_of(node: ast.expr, where: str, scope: ast.AST) -> set[str]:
    """The event names an ``add_event`` argument can take (in the function *scope*)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _names_of(node.body, where, scope) | _names_of(node.orelse, where, scope)
    if isinstance(node, ast.Name):
        # A variable: whatever the function assigns to it.
        values = [
            assign.value
            for assign in ast.walk(scope)
            if isinstance(assign, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == node.id for t in assign.targets)
        ]
        assert values, f"{where}: {node.id} is never assigned in its function"
        return set().union(*(_names_of(value, where, scope) for value in values))
    source = ast.unparse(node)
    # f-strings: the values each one's placeholder takes, read from the code.
    if source == "f'{reason} wait'":
        return {f"{reason} wait" for reason in _waited_reasons()}
    if source == "f'circuit {new.value}'":
        return {f"circuit {state.value}" for state in BreakerState}
    raise AssertionError(f"{where}: teach this test the event names of {source}")


def _waited_reasons() -> set[str]:
    reasons = set()
    for path, tree in _source_trees():
        for call in _calls(tree, "waited"):
            argument = call.args[0]
            assert isinstance(argument, ast.Constant), f"{path}: a waited() reason not literal"
            reasons.add(argument.value)
    assert reasons
    return reasons


def emitted_events() -> set[str]:
    """Every span event name corral's code adds."""
    names = set()
    for path, tree in _source_trees():
        if "_bench" in path.parts:  # the benchmarks imitate the instrument's spans
            continue
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for call in _calls(function, "add_event"):
                    names |= _names_of(call.args[0], f"{path}:{call.lineno}", function)
        if any(True for _ in _calls(tree, "record_exception")):
            names.add("exception")  # OpenTelemetry's own event for an exception
    return names


def documented_events() -> set[str]:
    """The event names in the first column of the table under "## Events" in jaeger.md."""
    text = JAEGER.read_text(encoding="utf-8")
    section = text.split("\n## Events\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            names.update(_CODE.findall(cells[1]))
    return names


def test_every_span_event_is_documented_and_nothing_else() -> None:
    """jaeger.md's table of events lists exactly the event names corral adds to spans."""
    emitted, documented = emitted_events(), documented_events()
    assert emitted - documented == set(), "add these events to docs/jaeger.md"
    assert documented - emitted == set(), "docs/jaeger.md lists events corral never adds"


def test_every_span_attribute_and_metric_name_is_in_jaeger_md() -> None:
    """Each attribute or metric name the instrumentation code spells out is on the page."""
    pattern = re.compile(r"^(?:messaging|corral|gen_ai|http|server|url|error)\.[a-z_.]+$")
    text = JAEGER.read_text(encoding="utf-8")
    missing = set()
    for path in _TELEMETRY_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                named = pattern.match(value) and not value.startswith("corral._")
                if named and f"`{value}`" not in text:
                    missing.add(value)
    assert not missing, f"docs/jaeger.md does not name: {sorted(missing)}"
