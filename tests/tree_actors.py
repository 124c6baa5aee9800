"""Actors a tree file names by import path (tests.tree_actors:Echo), for test_tree_file."""

from __future__ import annotations

import corral


@corral.message
class Say:
    text: str = ""


class Echo(corral.Actor[Say, str]):
    async def handle(self, msg: Say) -> str:
        return f"echo {msg.text}"


def make_echo() -> Echo:
    """A factory, as a tree file may name instead of a class."""
    return Echo()


NOT_CALLABLE = 42
