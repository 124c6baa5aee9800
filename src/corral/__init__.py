"""corral: an actor-style supervisor runtime on anyio for calling AI and other HTTP services.

The public API is what this module exports; everything else is private.
"""

from ._core._actor import Actor as Actor
from ._core._actor import handles as handles
from ._core._cell import DEFAULT_SHUTDOWN as DEFAULT_SHUTDOWN
from ._core._exceptions import ActorCrashed as ActorCrashed
from ._core._exceptions import ActorNotFound as ActorNotFound
from ._core._exceptions import ActorStopped as ActorStopped
from ._core._exceptions import CallCancelled as CallCancelled
from ._core._exceptions import CorralError as CorralError
from ._core._exceptions import Crash as Crash
from ._core._exceptions import DeadlineExceeded as DeadlineExceeded
from ._core._exceptions import InvalidStateError as InvalidStateError
from ._core._exceptions import MailboxFull as MailboxFull
from ._core._exceptions import NameTaken as NameTaken
from ._core._exceptions import ProtocolError as ProtocolError
from ._core._exceptions import UnhandledMessage as UnhandledMessage
from ._core._future import Future as Future
from ._core._instrument import Instrument as Instrument
from ._core._mailbox import DEFAULT_MAILBOX_CAPACITY as DEFAULT_MAILBOX_CAPACITY
from ._core._messages import UNSET as UNSET
from ._core._messages import Envelope as Envelope
from ._core._messages import GetStatus as GetStatus
from ._core._messages import Kind as Kind
from ._core._messages import Ping as Ping
from ._core._messages import Pong as Pong
from ._core._messages import Stop as Stop
from ._core._messages import message as message
from ._core._pile import DEFAULT_HISTORY as DEFAULT_HISTORY
from ._core._pile import ActorState as ActorState
from ._core._pile import ActorStatus as ActorStatus
from ._core._pile import Call as Call
from ._core._pile import CallInfo as CallInfo
from ._core._pile import CallStatus as CallStatus
from ._core._ref import ActorRef as ActorRef
from ._core._runtime import Runtime as Runtime
from ._protocol import Protocol as Protocol
from ._version import __version__ as __version__

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_MAILBOX_CAPACITY",
    "DEFAULT_SHUTDOWN",
    "UNSET",
    "Actor",
    "ActorCrashed",
    "ActorNotFound",
    "ActorRef",
    "ActorState",
    "ActorStatus",
    "ActorStopped",
    "Call",
    "CallCancelled",
    "CallInfo",
    "CallStatus",
    "CorralError",
    "Crash",
    "DeadlineExceeded",
    "Envelope",
    "Future",
    "GetStatus",
    "Instrument",
    "InvalidStateError",
    "Kind",
    "MailboxFull",
    "NameTaken",
    "Ping",
    "Pong",
    "Protocol",
    "ProtocolError",
    "Runtime",
    "Stop",
    "UnhandledMessage",
    "__version__",
    "handles",
    "message",
]


def _fix_module_names() -> None:
    # Tracebacks, reprs and docs should say corral.Runtime, not
    # corral._core._runtime.Runtime. Annotations of attrs classes are resolved
    # first, while their defining module is still known (cattrs needs them).
    import attrs

    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) and attrs.has(obj):
            attrs.resolve_types(obj)
        if getattr(obj, "__module__", "").startswith("corral._"):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # instances such as constants
                pass


_fix_module_names()
del _fix_module_names
