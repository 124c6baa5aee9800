"""A supervision tree written down: :func:`load_tree` reads a TOML file into a :class:`Supervisor`.

The file's top-level keys describe the root supervisor; ``[[children]]``
tables describe its children in start order: a table with ``actor`` (an
import path, ``package.module:Factory``) is an actor child, one without is a
nested supervisor with children of its own. An actor child's ``[policy]``
holds the settings of its service policy: ``retry``, ``rate_limit`` and
``breaker`` tables, with the keyword arguments of :class:`RetryPolicy`,
:class:`RateLimiter` and :class:`CircuitBreaker`. Unknown keys are refused
(a misspelt setting must not pass unseen), and every error names the file,
the key path and the value.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from ._core._backoff import Backoff
from ._core._exceptions import CorralError
from ._core._specs import ChildSpec, Restart, Strategy, Supervisor, child
from ._services._breaker import CircuitBreaker
from ._services._policy import ServicePolicy
from ._services._ratelimit import RateLimiter
from ._services._retry import RetryPolicy

__all__ = ["TreeFileError", "load_tree"]

#: The value of a ``shutdown`` that waits without limit (TOML has no null).
UNLIMITED = "unlimited"

_SUPERVISOR_KEYS = (
    "name",
    "strategy",
    "max_restarts",
    "within",
    "backoff",
    "restart",
    "shutdown",
    "children",
)
_ACTOR_KEYS = (
    "name",
    "actor",
    "restart",
    "shutdown",
    "mailbox",
    "max_concurrency",
    "policy",
    "export",
    "durable",
)
_BACKOFF_KEYS = ("min", "max", "jitter", "reset_after")
_POLICY_KEYS = ("retry", "rate_limit", "breaker")
_RETRY_KEYS = (
    "max_attempts",
    "min_delay",
    "max_delay",
    "retry_on",
    "retry_statuses",
    "retry_5xx",
    "max_retry_after",
    "never_retry_codes",
    "retry_codes",
)
_RATE_LIMIT_KEYS = (
    "requests",
    "tokens",
    "per",
    "burst",
    "token_burst",
    "max_concurrency",
    "shared",
)
_BREAKER_KEYS = ("failure_threshold", "failure_ratio", "window", "cooldown", "name")


class TreeFileError(CorralError, ValueError):
    """A tree file cannot be read: not TOML, an unknown key, or a bad value.

    The message names the file, the key path (``children[1].policy.retry.max_attempts``)
    and the value. The fault of the file's author.

    Attributes:
        path: The file.
        key: The key path of what is wrong (``""`` for the file as a whole).
    """

    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path = path
        self.key = key


def load_tree(path: str | os.PathLike[str]) -> Supervisor:
    """Read the supervision tree in the TOML file *path* into a :class:`Supervisor` spec.

    ::

        tree = corral.load_tree("tree.toml")
        async with corral.Runtime(tree) as rt:
            ...

    Each load makes new policy objects (rate limiters and breakers are not
    shared with another load). See :doc:`supervision` for the format.

    Raises:
        TreeFileError: The file is missing or not TOML, has an unknown key,
            a value of the wrong type or out of range, or an actor import
            path that does not import; the message names the file, the key
            path and the value.
    """
    where = os.fspath(path)
    try:
        with open(where, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise TreeFileError(where, "", f"cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TreeFileError(where, "", f"is not TOML: {exc}") from None
    return _Reader(where).supervisor(data, "", root=True)


class _Reader:
    """Reads one file's tables, knowing the file's name for the errors."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> TreeFileError:
        return TreeFileError(self.path, key, problem)

    def table(self, value: Any, key: str, known: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"should be a table, got {value!r}")
        unknown = [k for k in value if k not in known]
        if unknown:
            raise self.error(
                _join(key, unknown[0]), f"unknown key (known here: {', '.join(known)})"
            )
        return value

    def build(self, key: str, make: Callable[..., Any], options: Mapping[str, Any]) -> Any:
        # The constructors check ranges and name the setting; the key path is ours.
        try:
            return make(**options)
        except (TypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None

    def enum(self, value: Any, key: str, kind: type[Strategy] | type[Restart]) -> Any:
        names = [member.value for member in kind]
        if not isinstance(value, str) or value not in names:
            raise self.error(key, f"should be one of {', '.join(names)}, got {value!r}")
        return kind(value)

    def shutdown(self, value: Any, key: str) -> float | None:
        if value == UNLIMITED:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"should be seconds or {UNLIMITED!r}, got {value!r}")
        return float(value)

    def supervisor(self, data: Any, key: str, *, root: bool = False) -> Supervisor:
        table = self.table(data, key, _SUPERVISOR_KEYS)
        options: dict[str, Any] = {}
        for name, value in table.items():
            at = _join(key, name)
            if name == "strategy":
                options[name] = self.enum(value, at, Strategy)
            elif name == "restart":
                options[name] = self.enum(value, at, Restart)
            elif name == "shutdown":
                options[name] = self.shutdown(value, at)
            elif name == "backoff":
                options[name] = self.build(at, Backoff, self.table(value, at, _BACKOFF_KEYS))
            elif name == "children":
                options[name] = self.children(value, at)
            else:
                options[name] = value
        if not root and "name" not in options:
            raise self.error(key, "a nested supervisor needs a name (or an actor = ...)")
        return self.build(key, Supervisor, options)  # type: ignore[no-any-return]

    def children(self, value: Any, key: str) -> list[ChildSpec | Supervisor]:
        if not isinstance(value, list):
            raise self.error(key, f"should be an array of tables ([[children]]), got {value!r}")
        specs: list[ChildSpec | Supervisor] = []
        for i, item in enumerate(value):
            at = f"{key}[{i}]"
            if isinstance(item, dict) and "actor" in item:
                specs.append(self.actor(item, at))
            else:
                specs.append(self.supervisor(item, at))
        return specs

    def actor(self, data: Mapping[str, Any], key: str) -> ChildSpec:
        table = self.table(data, key, _ACTOR_KEYS)
        if "name" not in table:
            raise self.error(key, "an actor child needs a name")
        options: dict[str, Any] = {}
        for name, value in table.items():
            at = _join(key, name)
            if name == "actor":
                options["factory"] = self.factory(value, at)
            elif name == "restart":
                options[name] = self.enum(value, at, Restart)
            elif name == "shutdown":
                options[name] = self.shutdown(value, at)
            elif name == "policy":
                options[name] = self.policy(value, at)
            else:
                options[name] = value
        return self.build(key, child, options)  # type: ignore[no-any-return]

    def policy(self, data: Any, key: str) -> ServicePolicy:
        table = self.table(data, key, _POLICY_KEYS)
        options: dict[str, Any] = {}
        if "retry" in table:
            at = _join(key, "retry")
            retry = dict(self.table(table["retry"], at, _RETRY_KEYS))
            for name in ("retry_statuses", "never_retry_codes", "retry_codes"):
                if name in retry:
                    retry[name] = frozenset(self.array(retry[name], _join(at, name)))
            if "retry_on" in retry:
                where = _join(at, "retry_on")
                retry["retry_on"] = tuple(
                    self.exception(path, f"{where}[{i}]")
                    for i, path in enumerate(self.array(retry["retry_on"], where))
                )
            options["retry"] = self.build(at, RetryPolicy, retry)
        if "rate_limit" in table:
            at = _join(key, "rate_limit")
            limits = self.table(table["rate_limit"], at, _RATE_LIMIT_KEYS)
            options["rate_limiter"] = self.build(at, RateLimiter, limits)
        if "breaker" in table:
            at = _join(key, "breaker")
            options["breaker"] = self.build(
                at, CircuitBreaker, self.table(table["breaker"], at, _BREAKER_KEYS)
            )
        return self.build(key, ServicePolicy, options)  # type: ignore[no-any-return]

    def array(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(key, f"should be an array, got {value!r}")
        return value

    def imported(self, value: Any, key: str) -> Any:
        if not isinstance(value, str) or value.count(":") != 1:
            raise self.error(key, f"should be an import path 'package.module:Name', got {value!r}")
        try:
            return import_object(value)
        except LookupError as exc:
            raise self.error(key, str(exc)) from None

    def factory(self, value: Any, key: str) -> Callable[[], Any]:
        obj = self.imported(value, key)
        if not callable(obj):
            raise self.error(key, f"{value!r} is not an Actor class or factory, but {obj!r}")
        return obj  # type: ignore[no-any-return]

    def exception(self, value: Any, key: str) -> type[BaseException]:
        obj = self.imported(value, key)
        if not (isinstance(obj, type) and issubclass(obj, BaseException)):
            raise self.error(key, f"{value!r} is not an exception class, but {obj!r}")
        return obj


def import_object(path: str) -> Any:
    """The object that *path* (``package.module:Name``, dots allowed after the colon) names.

    Raises:
        LookupError: Its module cannot be imported (the error it raised is
            named), or it has no such name.
    """
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own error on import
        raise LookupError(f"cannot import {module_name!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"{module_name!r} has no {attribute!r}") from None
    return obj


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name
