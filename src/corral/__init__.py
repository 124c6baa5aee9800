"""corral: an actor-style supervisor runtime on anyio for calling AI and other HTTP services.

The public API is what this module exports; everything else is private.
"""

from . import telemetry as telemetry  # corral.telemetry as an attribute (it registers nothing)
from ._cluster._exceptions import ClusterConflict as ClusterConflict
from ._cluster._exceptions import ClusterUnavailable as ClusterUnavailable
from ._cluster._exceptions import NodeLost as NodeLost
from ._cluster._exceptions import RemoteError as RemoteError
from ._cluster._remote import RemoteRef as RemoteRef
from ._cluster._remote import RemoteStream as RemoteStream
from ._cluster._spec import Cluster as Cluster
from ._core._actor import Actor as Actor
from ._core._actor import handles as handles
from ._core._actor import streams as streams
from ._core._backoff import Backoff as Backoff
from ._core._calls import Call as Call
from ._core._calls import current_call as current_call
from ._core._cell import DEFAULT_SHUTDOWN as DEFAULT_SHUTDOWN
from ._core._clock import Clock as Clock
from ._core._clock import LoopClock as LoopClock
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
from ._core._exceptions import NotFound as NotFound
from ._core._exceptions import ProtocolError as ProtocolError
from ._core._exceptions import SupervisorGaveUp as SupervisorGaveUp
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
from ._core._pile import CallInfo as CallInfo
from ._core._pile import CallStatus as CallStatus
from ._core._policy import CallPolicy as CallPolicy
from ._core._ref import ActorRef as ActorRef
from ._core._ref import Stream as Stream
from ._core._ref import SupervisorRef as SupervisorRef
from ._core._runtime import Runtime as Runtime
from ._core._specs import ONE_FOR_ALL as ONE_FOR_ALL
from ._core._specs import ONE_FOR_ONE as ONE_FOR_ONE
from ._core._specs import PERMANENT as PERMANENT
from ._core._specs import REST_FOR_ONE as REST_FOR_ONE
from ._core._specs import TEMPORARY as TEMPORARY
from ._core._specs import TRANSIENT as TRANSIENT
from ._core._specs import ChildInfo as ChildInfo
from ._core._specs import ChildSpec as ChildSpec
from ._core._specs import ChildState as ChildState
from ._core._specs import Restart as Restart
from ._core._specs import Strategy as Strategy
from ._core._specs import Supervisor as Supervisor
from ._core._specs import SupervisorEvent as SupervisorEvent
from ._core._specs import SupervisorEventKind as SupervisorEventKind
from ._core._specs import child as child
from ._protocol import Protocol as Protocol
from ._services._breaker import BreakerState as BreakerState
from ._services._breaker import BreakerStatus as BreakerStatus
from ._services._breaker import CircuitBreaker as CircuitBreaker
from ._services._exceptions import AuthenticationError as AuthenticationError
from ._services._exceptions import CircuitOpen as CircuitOpen
from ._services._exceptions import HttpStatusError as HttpStatusError
from ._services._exceptions import InvalidResponse as InvalidResponse
from ._services._exceptions import ProviderError as ProviderError
from ._services._exceptions import RateLimitRefused as RateLimitRefused
from ._services._exceptions import ServiceError as ServiceError
from ._services._exceptions import TransportError as TransportError
from ._services._http import HttpService as HttpService
from ._services._openai import OpenAIChat as OpenAIChat
from ._services._openai import OpenAIEmbeddings as OpenAIEmbeddings
from ._services._openai_types import ChatChunk as ChatChunk
from ._services._openai_types import ChatMessage as ChatMessage
from ._services._openai_types import ChatReply as ChatReply
from ._services._openai_types import ChatRequest as ChatRequest
from ._services._openai_types import Choice as Choice
from ._services._openai_types import EmbeddingsReply as EmbeddingsReply
from ._services._openai_types import EmbeddingsRequest as EmbeddingsRequest
from ._services._openai_types import ImagePart as ImagePart
from ._services._openai_types import Logprobs as Logprobs
from ._services._openai_types import RawPart as RawPart
from ._services._openai_types import RefusalPart as RefusalPart
from ._services._openai_types import ResponseFormat as ResponseFormat
from ._services._openai_types import TextPart as TextPart
from ._services._openai_types import TokenLogprob as TokenLogprob
from ._services._openai_types import TokenUsage as TokenUsage
from ._services._openai_types import Tool as Tool
from ._services._openai_types import ToolCall as ToolCall
from ._services._openai_types import ToolCallDelta as ToolCallDelta
from ._services._openai_types import ToolChoice as ToolChoice
from ._services._openai_types import TopLogprob as TopLogprob
from ._services._policy import ServicePolicy as ServicePolicy
from ._services._ratelimit import RateLimiter as RateLimiter
from ._services._ratelimit import RateLimiterStatus as RateLimiterStatus
from ._services._retry import DEFAULT_NEVER_RETRY_CODES as DEFAULT_NEVER_RETRY_CODES
from ._services._retry import DEFAULT_RETRY_CODES as DEFAULT_RETRY_CODES
from ._services._retry import RetryPolicy as RetryPolicy
from ._services._structured import json_schema as json_schema
from ._services._transport import HttpResponse as HttpResponse
from ._tree import TreeFileError as TreeFileError
from ._tree import load_tree as load_tree
from ._version import __version__ as __version__

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_MAILBOX_CAPACITY",
    "DEFAULT_NEVER_RETRY_CODES",
    "DEFAULT_RETRY_CODES",
    "DEFAULT_SHUTDOWN",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "TEMPORARY",
    "TRANSIENT",
    "UNSET",
    "Actor",
    "ActorCrashed",
    "ActorNotFound",
    "ActorRef",
    "ActorState",
    "ActorStatus",
    "ActorStopped",
    "AuthenticationError",
    "Backoff",
    "BreakerState",
    "BreakerStatus",
    "Call",
    "CallCancelled",
    "CallInfo",
    "CallPolicy",
    "CallStatus",
    "ChatChunk",
    "ChatMessage",
    "ChatReply",
    "ChatRequest",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "Choice",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "Cluster",
    "ClusterConflict",
    "ClusterUnavailable",
    "CorralError",
    "Crash",
    "DeadlineExceeded",
    "EmbeddingsReply",
    "EmbeddingsRequest",
    "Envelope",
    "Future",
    "GetStatus",
    "HttpResponse",
    "HttpService",
    "HttpStatusError",
    "ImagePart",
    "Instrument",
    "InvalidResponse",
    "InvalidStateError",
    "Kind",
    "Logprobs",
    "LoopClock",
    "MailboxFull",
    "NameTaken",
    "NodeLost",
    "NotFound",
    "OpenAIChat",
    "OpenAIEmbeddings",
    "Ping",
    "Pong",
    "Protocol",
    "ProtocolError",
    "ProviderError",
    "RateLimitRefused",
    "RateLimiter",
    "RateLimiterStatus",
    "RawPart",
    "RefusalPart",
    "RemoteError",
    "RemoteRef",
    "RemoteStream",
    "ResponseFormat",
    "Restart",
    "RetryPolicy",
    "Runtime",
    "ServiceError",
    "ServicePolicy",
    "Stop",
    "Strategy",
    "Stream",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorEventKind",
    "SupervisorGaveUp",
    "SupervisorRef",
    "TextPart",
    "TokenLogprob",
    "TokenUsage",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "TopLogprob",
    "TransportError",
    "TreeFileError",
    "UnhandledMessage",
    "__version__",
    "child",
    "current_call",
    "handles",
    "json_schema",
    "load_tree",
    "message",
    "streams",
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
