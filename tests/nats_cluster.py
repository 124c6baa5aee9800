"""Real nats-server processes for the cluster tests (corral's own local launcher).

A test that cannot start the server fails; it never skips.
"""

from __future__ import annotations

from corral._cluster._local import LocalNats as NatsCluster
from corral._cluster._local import nats_server_binary

__all__ = ["NatsCluster", "nats_server_binary"]
