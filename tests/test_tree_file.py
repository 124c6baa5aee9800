"""corral.load_tree: a TOML file into the same Supervisor spec, and the errors bad files get."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import corral

from .tree_actors import Echo, Say, make_echo

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

FULL = """
max_restarts = 3
within = 10
strategy = "one_for_all"
shutdown = "unlimited"
backoff = { min = 0.1, max = 2.0, jitter = 0.0 }

[[children]]
name = "chat"
actor = "tests.tree_actors:Echo"
restart = "transient"
shutdown = 2.5
mailbox = 50
max_concurrency = 4

[children.policy.retry]
max_attempts = 4
min_delay = 0.01
max_delay = 0.5
retry_statuses = [429, 503]
retry_on = ["corral:TransportError"]

[children.policy.rate_limit]
requests = 100
per = 1.0
max_concurrency = 4

[children.policy.breaker]
failure_threshold = 3
cooldown = 5

[[children]]
name = "tools"
strategy = "rest_for_one"
restart = "temporary"

[[children.children]]
name = "search"
actor = "tests.tree_actors:make_echo"
"""


def write(tmp_path: Path, text: str, name: str = "tree.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_tree_file_is_the_same_spec_as_one_written_in_python(tmp_path: Path) -> None:
    tree = corral.load_tree(write(tmp_path, FULL))
    assert (tree.name, tree.strategy, tree.max_restarts, tree.within, tree.shutdown) == (
        None,
        corral.ONE_FOR_ALL,
        3,
        10.0,
        None,
    )
    assert tree.backoff == corral.Backoff(min=0.1, max=2.0, jitter=0.0)
    chat, tools = tree.children
    assert isinstance(chat, corral.ChildSpec) and isinstance(tools, corral.Supervisor)
    assert (chat.name, chat.factory, chat.restart, chat.shutdown) == (
        "chat",
        Echo,
        corral.TRANSIENT,
        2.5,
    )
    assert (chat.mailbox, chat.max_concurrency) == (50, 4)
    policy = chat.policy
    assert isinstance(policy, corral.ServicePolicy)
    assert policy.retry == corral.RetryPolicy(
        max_attempts=4,
        min_delay=0.01,
        max_delay=0.5,
        retry_statuses=frozenset({429, 503}),
        retry_on=(corral.TransportError,),
    )
    assert policy.rate_limiter is not None and policy.rate_limiter.max_concurrency == 4
    assert policy.breaker is not None and policy.breaker.failure_threshold == 3
    assert (tools.name, tools.strategy, tools.restart) == (
        "tools",
        corral.REST_FOR_ONE,
        corral.TEMPORARY,
    )
    (search,) = tools.children
    assert isinstance(search, corral.ChildSpec) and search.factory is make_echo
    # Each load makes its own policy objects: limiters and breakers hold state.
    again = corral.load_tree(write(tmp_path, FULL))
    assert isinstance(again.children[0], corral.ChildSpec) and again.children[0].policy is not None
    assert again.children[0].policy.rate_limiter is not policy.rate_limiter


async def test_a_loaded_tree_runs(tmp_path: Path) -> None:
    async with corral.Runtime(corral.load_tree(write(tmp_path, FULL))) as rt:
        assert await rt.ref("chat").ask(Say(text="hi"), timeout=5) == "echo hi"
        assert await rt.ref("search").ask(Say(text="q"), timeout=5) == "echo q"
        assert [c.name for c in rt.supervisor("tools").children()] == ["search"]


BAD = [
    ("max_restarts = -1", r"tree\.toml: max_restarts must be >= 0, got -1"),
    (
        'strategy = "one-for-one"',
        r"tree\.toml: strategy: should be one of one_for_one, .*'one-for-one'",
    ),
    ("max_restart = 3", r"tree\.toml: max_restart: unknown key \(known here: name, strategy"),
    ("within = 0", r"tree\.toml: within must be a finite number of seconds > 0, got 0"),
    ("shutdown = true", r"tree\.toml: shutdown: should be seconds or 'unlimited', got True"),
    ("backoff = { min = 2, max = 1 }", r"tree\.toml: backoff: Backoff min must be <= max"),
    ("backoff = { minimum = 2 }", r"tree\.toml: backoff\.minimum: unknown key"),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\nmailbox = 0',
        r"tree\.toml: children\[0\]: mailbox capacity must be >= 1, got 0",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\nmax_concurrency = "many"',
        r"tree\.toml: children\[0\]: max_concurrency must be an int, got 'many'",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\nstrategy = "one_for_all"',
        r"tree\.toml: children\[0\]\.strategy: unknown key \(known here: name, actor",
    ),
    (
        '[[children]]\nactor = "tests.tree_actors:Echo"',
        r"tree\.toml: children\[0\]: an actor child needs a name",
    ),
    (
        '[[children]]\nstrategy = "one_for_all"',
        r"tree\.toml: children\[0\]: a nested supervisor needs a name",
    ),
    (
        '[[children]]\nname = "a"\nactor = "no_such_module_here:Echo"',
        r"tree\.toml: children\[0\]\.actor: cannot import 'no_such_module_here'",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Missing"',
        r"tree\.toml: children\[0\]\.actor: 'tests\.tree_actors' has no 'Missing'",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors.Echo"',
        r"children\[0\]\.actor: should be an import path 'package\.module:Name', got",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:NOT_CALLABLE"',
        r"children\[0\]\.actor: 'tests\.tree_actors:NOT_CALLABLE' is not an Actor class",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"',
        r"tree\.toml: two children are named 'a'",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        "[children.policy.retry]\nmax_attempts = 0",
        r"children\[0\]\.policy\.retry: max_attempts must be >= 1",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        "[children.policy.retry]\nattempts = 2",
        r"children\[0\]\.policy\.retry\.attempts: unknown key \(known here: max_attempts",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        '[children.policy.retry]\nretry_on = ["tests.tree_actors:Echo"]',
        r"children\[0\]\.policy\.retry\.retry_on\[0\]: 'tests\.tree_actors:Echo' is not an "
        "exception class",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        "[children.policy.rate_limit]\nrequests = -5",
        r"children\[0\]\.policy\.rate_limit: requests must be finite and > 0, got -5",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        "[children.policy.breaker]\nfailure_threshold = 0",
        r"children\[0\]\.policy\.breaker: failure_threshold must be >= 1, got 0",
    ),
    (
        '[[children]]\nname = "a"\nactor = "tests.tree_actors:Echo"\n'
        "[children.policy]\nretries = 3",
        r"children\[0\]\.policy\.retries: unknown key \(known here: retry, rate_limit, breaker\)",
    ),
    ("children = 3", r"tree\.toml: children: should be an array of tables"),
    ("max_restarts = ", r"tree\.toml: is not TOML: "),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[text for text, _ in BAD])
def test_a_bad_file_is_refused_naming_the_file_the_key_and_the_value(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(corral.TreeFileError, match=message) as info:
        corral.load_tree(path)
    assert str(info.value).startswith(str(path))
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nothing.toml"
    with pytest.raises(corral.TreeFileError, match=re.escape(f"{path}: cannot be read")):
        corral.load_tree(path)


def _docs_tree() -> str:
    page = (ROOT / "docs" / "supervision.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", page, re.S)
    assert len(blocks) == 1, "docs/supervision.md shows one tree file"
    return blocks[0]


def test_the_tree_file_in_the_docs_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's example names myapp.actors:...; a stand-in module makes it importable."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "actors.py").write_text(
        "from tests.tree_actors import Echo as Chat, Echo as Search, Echo as Fetch\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tree = corral.load_tree(write(tmp_path, _docs_tree()))
    assert [c.name for c in tree.children] == ["chat", "tools"]
    chat = tree.children[0]
    assert isinstance(chat, corral.ChildSpec) and chat.export and chat.durable


def test_export_and_durable_are_read_and_checked(tmp_path: Path) -> None:
    text = '[[children]]\nname = "e"\nactor = "tests.tree_actors:Echo"\nexport = true\n'
    [spec] = corral.load_tree(write(tmp_path, text + "durable = false\n")).children
    assert isinstance(spec, corral.ChildSpec) and spec.export and not spec.durable
    with pytest.raises(corral.TreeFileError, match=r"children\[0\].*durable=False"):
        corral.load_tree(write(tmp_path, text.replace("true", "false") + "durable = false\n"))
