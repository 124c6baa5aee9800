"""The errors of calls that cross processes."""

from __future__ import annotations

from .._core._exceptions import ActorStopped, CorralError

__all__ = ["ClusterUnavailable", "NodeLost", "RemoteError"]


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
