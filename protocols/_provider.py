"""The provider interface: what the runtime needs from anything that can answer a request.

A provider is a *transport*: it turns one ``Request`` into one ``Response`` or one stream of
events, and raises typed ``SwitchyardError``s. It owns no policy. Retries, limits, breakers
and failover belong to the actor that runs it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable

from ._ratelimit import RateLimitInfo
from ._types import Request, Response, StreamEvent

__all__ = ["LLMProvider"]


class LLMProvider(ABC):
    """Base class for providers; subclass it to plug your own into the runtime.

    ``name`` must be unique within a runtime; it names the provider's actor.

    Contract:

    * ``complete`` returns a ``Response`` whose ``provider`` is ``self.name``, or raises a
      ``SwitchyardError``. Any other exception is a bug: it crashes the provider's actor, and
      the supervisor restarts it (the request fails over).
    * ``stream`` is an async generator of ``StreamEvent``s (plain ``str`` chunks are taken as
      text deltas) that ends with exactly one ``Finish``. A stream that ends without one is
      reported as a broken stream, never as a short answer. It may raise like ``complete``.
    * Both must stop promptly when cancelled; the runtime cancels them when the caller goes
      away or the deadline passes.
    """

    name: str
    model: str = "default"
    kind: str = "custom"
    """The API family, for price lookup: "openai", "anthropic", "gemini", or your own."""
    _rate_limit_listener: Callable[[RateLimitInfo], None] | None = None

    @abstractmethod
    async def complete(self, request: Request) -> Response:
        """Answer ``request`` in one piece."""

    @abstractmethod
    def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        """Answer ``request`` as a stream of events (an async generator)."""

    def listen_rate_limits(self, listener: Callable[[RateLimitInfo], None] | None) -> None:
        """The runtime passes its limiter here; a provider that learns its remaining
        budget (from rate-limit headers) reports it with ``self._rate_limit_listener``."""
        self._rate_limit_listener = listener

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release connections; called once when the runtime shuts down."""

    def __repr__(self) -> str:
        # Subclasses hold API keys; a repr names the provider and nothing else.
        return f"<{type(self).__name__} {self.name!r}>"
