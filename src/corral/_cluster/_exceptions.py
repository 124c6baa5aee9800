"""The errors of calls that cross processes."""

from __future__ import annotations

from .._core._exceptions import ActorStopped, CorralError

__all__ = ["ClusterConflict", "ClusterUnavailable", "NodeLost", "RemoteError"]


class RemoteError(CorralError):
    """An exception raised by a handler in another process, which is not one of corral's.

    It carries the remote exception's qualified type name, its message and
    the remote traceback as text; nothing is unpickled.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        #: ``module.QualName`` of the exception raised remotely.
        self.type_name = type_name
        #: Its message.
        self.remote_message = message
        #: The traceback where it was raised, as text.
        self.remote_traceback = remote_traceback


class NodeLost(ActorStopped):
    """Every delivery of a call ended without an answer: the nodes serving it died.

    Raised when a call was delivered as many times as the cluster's
    ``attempts`` allow and none answered (an answer that is an error is an
    answer).
    """


class ClusterUnavailable(CorralError, ConnectionError):
    """The NATS servers could not be reached, or did not answer in time."""


class ClusterConflict(CorralError):
    """Joining would contradict a live node: its name is taken, or it serves an actor otherwise.

    Raised at ``Runtime`` entry when a live node already has this node's
    name, or serves an exported actor of the same name with other message
    types (other names or fields). Nothing was served; the caller fixes the
    name or the code.
    """
