"""corral quickstart: two actors, a few hundred calls, one failure that stays isolated.

Run it with ``python examples/quickstart.py`` (add ``--backend trio`` to run on trio).
"""

from __future__ import annotations

import argparse
import random

import anyio

import corral


@corral.message
class Summarise:
    """Ask the summariser to shorten a text."""

    text: str


@corral.message
class Embed:
    """Ask the embedder for a vector."""

    text: str


class Summariser(corral.Actor[Summarise, str]):
    """A stand-in for an LLM call: a little latency, and a provider that fails sometimes."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    async def handle(self, msg: Summarise) -> str:
        await anyio.sleep(self.random.uniform(0.001, 0.005))
        if "poison" in msg.text:
            raise ValueError(f"the provider refused {msg.text!r}")
        return msg.text[:12] + "..."


class Embedder(corral.Actor[Embed, list[float]]):
    """A stand-in for an embeddings service."""

    async def handle(self, msg: Embed) -> list[float]:
        await anyio.sleep(0.001)
        return [len(msg.text) / 100, msg.text.count(" ") / 10]


async def main(calls: int) -> int:
    texts = [f"document number {i} about corral actors" for i in range(calls)]
    texts[calls // 2] = "a poison document"
    outcomes = {"ok": 0, "failed": 0}

    async with corral.Runtime() as rt:
        summariser = await rt.spawn(
            lambda: Summariser(seed=7), name="summariser", max_concurrency=8
        )
        embedder = await rt.spawn(Embedder, name="embedder", max_concurrency=4)

        async def one(text: str) -> None:
            try:
                summary = await summariser.ask(Summarise(text=text), timeout=5)
                await embedder.ask(Embed(text=summary), timeout=5)
            except ValueError as exc:
                outcomes["failed"] += 1
                print(f"isolated failure: {exc} (the other calls carried on)")
            else:
                outcomes["ok"] += 1

        async with anyio.create_task_group() as tg:
            for text in texts:
                tg.start_soon(one, text)

        print()
        print(f"{'actor':<12}{'succeeded':>10}{'failed':>8}{'queued':>8}{'running':>9}")
        for name, status in rt.status().items():
            counts = status.counts
            print(
                f"{name:<12}{counts[corral.CallStatus.SUCCEEDED]:>10}"
                f"{counts[corral.CallStatus.FAILED]:>8}{status.queue_depth:>8}"
                f"{status.in_flight:>9}"
            )
    print()
    print(f"{calls} requests: {outcomes['ok']} succeeded, {outcomes['failed']} failed, none lost")
    return 0 if outcomes["ok"] + outcomes["failed"] == calls else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.calls, backend=args.backend))
