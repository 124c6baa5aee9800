"""Actors and messages shared by the tests."""

from __future__ import annotations

import socket

import anyio

import corral


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@corral.message
class Add:
    a: int
    b: int


@corral.message
class Echo:
    text: str


@corral.message
class Block:
    """Ask a Gate actor to wait on its gate (an anyio.Event) before replying."""

    key: str


@corral.message
class Boom:
    kind: str = "value"


class Calculator(corral.Actor[Add, int]):
    async def handle(self, msg: Add) -> int:
        return msg.a + msg.b


class Witness(corral.Actor[Add, int]):
    """A calculator that keeps each call it served (:func:`corral.current_call`)."""

    def __init__(self) -> None:
        self.served: list[corral.Call] = []

    async def handle(self, msg: Add) -> int:
        call = corral.current_call()
        assert call is not None
        self.served.append(call)
        return msg.a + msg.b


class CallLog(corral.Instrument):
    """Keeps every call its runtime accepted, in order: a test's way to a call's envelope."""

    def __init__(self) -> None:
        self.accepted: list[corral.Call] = []

    def call_submitted(self, call: corral.Call) -> None:
        self.accepted.append(call)


class Gate(corral.Actor[Block | Echo | Boom, str]):
    """Blocks each Block call until the test opens its gate; records the order of calls."""

    fatal = (KeyError,)

    def __init__(self, gates: dict[str, anyio.Event] | None = None) -> None:
        self.gates = gates if gates is not None else {}
        self.started: list[str] = []
        self.entered: dict[str, anyio.Event] = {}

    def entered_event(self, key: str) -> anyio.Event:
        return self.entered.setdefault(key, anyio.Event())

    async def handle(self, msg: Block | Echo | Boom) -> str:
        if isinstance(msg, Echo):
            self.started.append(msg.text)
            return msg.text
        if isinstance(msg, Boom):
            self.started.append(f"boom:{msg.kind}")
            if msg.kind == "fatal":
                raise KeyError("fatal boom")
            if msg.kind == "crash":
                raise corral.Crash("asked to crash")
            raise ValueError("boom")
        self.started.append(msg.key)
        self.entered_event(msg.key).set()
        gate = self.gates.setdefault(msg.key, anyio.Event())
        await gate.wait()
        return msg.key
