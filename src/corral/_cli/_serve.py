"""``corral serve``: run one cluster node until a signal drains it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._extras import need
from . import CommandError

if TYPE_CHECKING:
    import corral

__all__ = ["load_target", "serve"]

logger = logging.getLogger("corral.serve")


def load_target(target: str) -> corral.Supervisor:
    """The tree *target* names: a TOML tree file, or ``package.module:attr``.

    *attr* is a :class:`corral.Supervisor` or a callable returning one. The
    current directory is importable, as it is for ``python -m``.

    Raises:
        CommandError: The target cannot be read or is not a tree.
    """
    import corral
    from corral._tree import import_object

    if target.endswith(".toml") or (":" not in target and Path(target).exists()):
        try:
            return corral.load_tree(target)
        except corral.TreeFileError as exc:
            raise CommandError(str(exc)) from None
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise CommandError(
            f"TARGET is a tree file (.toml) or 'package.module:attr', got {target!r}"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = import_object(target)
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    if not isinstance(obj, (corral.Supervisor, type)) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise CommandError(f"{target} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, corral.Supervisor):
        raise CommandError(
            f"{target} is not a corral.Supervisor (or a callable returning one), but {obj!r}"
        )
    return obj


class _OneLine(logging.Formatter):
    """A record on one line: the error's own text already names it; tracebacks with --debug."""

    def __init__(self, node: str, debug: bool) -> None:
        super().__init__(f"%(asctime)s {node} %(levelname)s %(name)s: %(message)s")
        self._debug = debug

    def formatException(self, ei: Any) -> str:
        return super().formatException(ei) if self._debug else ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if self._debug else text.rstrip("\n")


def _log_to_stderr(node: str, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine(node, debug))
    root = logging.getLogger("corral")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


def _starts_and_stops() -> corral.Instrument:
    import corral

    kinds = corral.SupervisorEventKind

    class Lines(corral.Instrument):
        """A line per child started or stopped later (the supervisor logs crashes, restarts)."""

        def supervisor_event(self, event: corral.SupervisorEvent) -> None:
            if event.kind is kinds.CHILD_STARTED:
                logger.info("started %r (supervisor %r)", event.child, event.supervisor)
            elif event.kind is kinds.CHILD_STOPPED:
                logger.info("stopped %r (supervisor %r)", event.child, event.supervisor)

    return Lines()


def serve(args: argparse.Namespace) -> int:
    """Run the node ``corral serve`` describes; see ``corral serve --help``."""
    need("nats", "cluster", "corral serve")
    import corral
    from corral._cluster._spec import default_node_name
    from corral._core._specs import exported_children

    tree = load_target(args.target)
    exported = [spec.name for spec in exported_children(tree)]
    if not exported:
        raise CommandError(
            f"{args.target} exports no actor: mark the ones to serve with "
            "corral.child(..., export=True) (export = true in a tree file)"
        )
    node = args.name or default_node_name()
    settings: dict[str, Any] = {}
    for option in ("ack_wait", "heartbeat", "attempts", "mailbox", "connect_timeout"):
        value = getattr(args, option)
        if value is not None:
            settings[option] = value
    try:
        cluster = corral.Cluster(servers=args.nats, name=args.cluster, node=node, **settings)
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    _log_to_stderr(node, args.debug)
    endpoint = args.otlp or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    telemetry = None
    if endpoint:
        from corral import telemetry as corral_telemetry

        telemetry = corral_telemetry.configure(
            service_name=args.cluster, service_instance_id=node, endpoint=endpoint
        )
    try:
        return anyio.run(_run, tree, cluster, exported, backend="asyncio")
    finally:
        if telemetry is not None:
            telemetry.shutdown()


async def _run(tree: corral.Supervisor, cluster: corral.Cluster, exported: list[str]) -> int:
    import corral
    from corral._services._redact import redact_unparsed_url

    stop = anyio.Event()
    at_once = False
    failure: BaseException | None = None

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal at_once
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not stop.is_set():
                    logger.info("%s: draining (a second signal stops at once)", name)
                    stop.set()
                else:
                    logger.warning("%s again: stopping at once", name)
                    at_once = True
                    scope.cancel()
                    return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        try:
            runtime = corral.Runtime(tree, cluster=cluster, instruments=[_starts_and_stops()])
            async with runtime:
                for ref in runtime.refs():
                    served = " (served to the cluster)" if ref.name in exported else ""
                    logger.info("started %r: %s%s", ref.name, ref.actor_class.__qualname__, served)
                logger.info(
                    "serving %s to cluster %r as node %r (NATS %s)",
                    ", ".join(repr(name) for name in exported),
                    cluster.name,
                    cluster.node,
                    ", ".join(redact_unparsed_url(url) for url in cluster.servers),
                )
                await stop.wait()
            logger.info("drained: every running call finished, every unstarted one handed back")
        except corral.CorralError as exc:
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if at_once:
        return 1
    if failure is not None:
        raise CommandError(str(failure))
    return 0
