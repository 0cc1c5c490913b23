"""The unified format: messages, request options, responses and stream events.

Everything is a frozen ``msgspec.Struct``. Unions are tagged (``type`` field), so they
serialise to JSON and can be matched with ``match``. Provider field names never appear here;
the codecs in this package translate to and from each provider's wire format.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec
from msgspec import Struct

from ._errors import SwitchyardError

__all__ = [
    "ContentPart",
    "ErrorEvent",
    "Finish",
    "FinishReason",
    "ImagePart",
    "Message",
    "Metadata",
    "NamedToolChoice",
    "Request",
    "RequestOptions",
    "Response",
    "ResponseFormat",
    "Role",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolChoice",
    "ToolResultPart",
    "Usage",
    "UsageEvent",
]

Role = Literal["system", "user", "assistant", "tool"]
RoutingPolicyName = Literal[
    "priority", "round_robin", "weighted", "least_busy", "latency", "cost", "quality", "speed"
]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


# --- content parts -------------------------------------------------------------------------


class TextPart(Struct, frozen=True, tag="text"):
    text: str


class ImagePart(Struct, frozen=True, tag="image"):
    """An image, by ``url`` or as base64 ``data`` with its ``media_type`` (e.g. image/png)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None


class ToolCallPart(Struct, frozen=True, tag="tool_call"):
    """The model asks to call tool ``name`` with ``arguments`` (already parsed JSON)."""

    id: str
    name: str
    arguments: dict[str, Any]


class ToolResultPart(Struct, frozen=True, tag="tool_result"):
    """The result of the tool call ``tool_call_id``, sent back to the model."""

    tool_call_id: str
    content: str
    is_error: bool = False


ContentPart = TextPart | ImagePart | ToolCallPart | ToolResultPart


class Message(Struct, frozen=True):
    """One conversation turn. ``content`` is plain text or a sequence of parts."""

    role: Role
    content: str | tuple[ContentPart, ...]
    name: str | None = None

    @property
    def text(self) -> str:
        """The concatenated text parts."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


# --- request ---------------------------------------------------------------------------------


class Tool(Struct, frozen=True):
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class NamedToolChoice(Struct, frozen=True):
    """Force the model to call the tool ``name``."""

    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class ResponseFormat(Struct, frozen=True):
    """Structured output: the reply must be JSON valid against ``schema``."""

    name: str
    schema: dict[str, Any]
    strict: bool = True


class Metadata(Struct, frozen=True):
    """Who the request is for; used by cost accounting and budgets."""

    tenant: str | None = None
    tags: tuple[str, ...] = ()


class RequestOptions(Struct, frozen=True, kw_only=True):
    """Generation options. ``None`` means "the provider's default".

    ``timeout`` is the request's whole budget in seconds, across every retry and failover;
    the runtime's configured default applies when it is ``None``. ``providers``, when not
    empty, restricts the request to those providers (failover stays among them).

    Routing: ``policy`` overrides the runtime's policy for this request; ``max_cost_usd``,
    ``min_quality`` and ``max_ttft_s`` skip providers that would break them.
    """

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    metadata: Metadata = Metadata()
    timeout: float | None = None
    providers: tuple[str, ...] = ()
    policy: RoutingPolicyName | None = None
    max_cost_usd: float | None = None
    min_quality: float | None = None
    max_ttft_s: float | None = None


class Request(Struct, frozen=True, kw_only=True):
    """A validated request as the actors see it.

    ``deadline`` is absolute, on the trio clock. ``estimated_tokens`` is the limiter's
    pre-flight estimate (prompt plus the most the reply may use).
    """

    id: str
    messages: tuple[Message, ...]
    options: RequestOptions
    deadline: float
    estimated_tokens: int
    stream: bool = False


# --- response --------------------------------------------------------------------------------


class Usage(Struct, frozen=True, kw_only=True):
    """Token usage, normalised.

    ``input_tokens`` counts the whole prompt, cached tokens included; ``cache_read_tokens``
    and ``cache_write_tokens`` say how much of it was read from or written to the cache.
    ``output_tokens`` includes ``reasoning_tokens``. ``total_tokens`` is input plus output.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Response(Struct, frozen=True, kw_only=True):
    """A finished answer, whichever provider gave it.

    ``latency`` and ``ttft`` are seconds for the attempt that answered; ``attempts`` counts
    every try the request took, this one included. ``cost_usd`` is what the answering
    attempt cost (cache and reasoning tokens priced), or None if the model has no known price.
    """

    content: tuple[ContentPart, ...]
    finish_reason: FinishReason
    usage: Usage
    provider: str
    model: str
    latency: float = 0.0
    ttft: float | None = None
    attempts: int = 1
    request_id: str = ""
    cost_usd: Decimal | None = None

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> tuple[ToolCallPart, ...]:
        return tuple(p for p in self.content if isinstance(p, ToolCallPart))


# --- stream events ---------------------------------------------------------------------------


class TextDelta(Struct, frozen=True, tag="text_delta"):
    text: str


class ToolCallDelta(Struct, frozen=True, tag="tool_call_delta"):
    """A piece of tool call ``index``: ``id`` and ``name`` arrive first, then argument JSON."""

    index: int
    arguments_delta: str = ""
    id: str | None = None
    name: str | None = None


class UsageEvent(Struct, frozen=True, tag="usage"):
    usage: Usage


class Finish(Struct, frozen=True, tag="finish"):
    """The stream's end marker. The runtime fills ``response`` with the assembled answer
    and ``cost_usd`` with what the stream cost."""

    reason: FinishReason
    model: str | None = None
    response: Response | None = None
    cost_usd: Decimal | None = None


class ErrorEvent(Struct, frozen=True, tag="error"):
    """The stream failed for good. ``delivered_text`` is what reached the caller before."""

    error: SwitchyardError
    delivered_text: str = ""


StreamEvent = TextDelta | ToolCallDelta | UsageEvent | Finish | ErrorEvent
