"""Typed errors: every failure a caller can see, as data that policy code can read.

Policy code never parses messages. It reads two class-level flags:

* ``retryable``: trying the *same* provider again, after a back-off, may succeed.
* ``failover``: trying *another* provider may succeed.

An error with neither flag (an invalid request, say) ends the request at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, final

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "AuthenticationError",
    "ContentFiltered",
    "ContextLengthExceeded",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PermissionDenied",
    "ProviderUnavailable",
    "RateLimited",
    "RuntimeClosed",
    "ServerError",
    "StreamInterrupted",
    "SwitchyardError",
    "Timeout",
    "TransportError",
]


class SwitchyardError(Exception):
    """Base class of every error the runtime raises or reports.

    ``provider`` names the provider that produced the error, when there is one.
    ``status`` is the upstream HTTP status, when there is one.
    """

    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False
    kind: ClassVar[str] = "error"

    def __init__(
        self, message: str, *, provider: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    def __repr__(self) -> str:
        where = f", provider={self.provider!r}" if self.provider else ""
        return f"{type(self).__name__}({self.message!r}{where})"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (used by health output and the gateway)."""
        return {
            "type": self.kind,
            "message": self.message,
            "provider": self.provider,
            "status": self.status,
            "retryable": self.retryable,
            "failover": self.failover,
        }


class RateLimited(SwitchyardError):
    """The provider (or our own limiter for it) refused for now. ``retry_after`` in seconds."""

    retryable = True
    failover = True
    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        status: int | None = 429,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class Overloaded(SwitchyardError):
    """The provider is overloaded (Anthropic 529, a full mailbox, no free slot)."""

    retryable = True
    failover = True
    kind = "overloaded"


class Timeout(SwitchyardError):
    """A deadline passed: the whole request's, or one upstream call's."""

    retryable = True
    failover = True
    kind = "timeout"


class TransportError(SwitchyardError):
    """Connection refused or reset, a broken stream, bytes that are not the wire format."""

    retryable = True
    failover = True
    kind = "transport"


class ServerError(SwitchyardError):
    """The provider answered 5xx."""

    retryable = True
    failover = True
    kind = "server_error"


class ProviderUnavailable(SwitchyardError):
    """The provider cannot take the request now: breaker open, actor crashed or failed."""

    retryable = False
    failover = True
    kind = "provider_unavailable"


class AuthenticationError(SwitchyardError):
    """The API key was refused. Another provider has its own key, so failover may help."""

    retryable = False
    failover = True
    kind = "authentication"


class PermissionDenied(SwitchyardError):
    """The key is valid but may not use this resource."""

    retryable = False
    failover = True
    kind = "permission"


class NotFound(SwitchyardError):
    """The model or endpoint does not exist at this provider."""

    retryable = False
    failover = True
    kind = "not_found"


class ContextLengthExceeded(SwitchyardError):
    """The prompt is longer than this provider's model accepts; a larger one may take it."""

    retryable = False
    failover = True
    kind = "context_length_exceeded"


class ContentFiltered(SwitchyardError):
    """The provider refused the content. Another provider's policy may differ."""

    retryable = False
    failover = True
    kind = "content_filtered"


class InvalidRequest(SwitchyardError):
    """The request itself is wrong. Neither retried nor failed over.

    ``field`` names the offending field path, for example ``messages[2].role``.
    """

    kind = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        provider: str | None = None,
        status: int | None = 400,
    ) -> None:
        text = f"{field}: {message}" if field else message
        super().__init__(text, provider=provider, status=status)
        self.field = field


@final
class RuntimeClosed(SwitchyardError):
    """The runtime is shutting down or closed and accepts no new requests."""

    kind = "runtime_closed"


@final
class StreamInterrupted(SwitchyardError):
    """A stream failed after content had reached the caller; ``delivered_text`` is what arrived.

    It is never retried: the caller has seen part of an answer.
    """

    kind = "stream_interrupted"

    def __init__(self, cause: SwitchyardError, *, delivered_text: str) -> None:
        super().__init__(
            f"stream interrupted after {len(delivered_text)} characters: {cause.message}",
            provider=cause.provider,
            status=cause.status,
        )
        self.cause = cause
        self.delivered_text = delivered_text

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "cause": self.cause.to_dict(),
            "delivered_text": self.delivered_text,
        }


@final
class Attempt:
    """One try of one request at one provider, and how it ended."""

    __slots__ = ("error", "latency", "provider")

    def __init__(self, provider: str, error: SwitchyardError | None, latency: float) -> None:
        self.provider = provider
        self.error = error
        self.latency = latency

    def __repr__(self) -> str:
        outcome = "ok" if self.error is None else type(self.error).__name__
        return f"Attempt({self.provider!r}, {outcome}, {self.latency * 1000:.1f}ms)"

    def to_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "error": None if self.error is None else self.error.to_dict(),
            "latency_s": self.latency,
        }


@final
class AllProvidersFailed(SwitchyardError):
    """No provider could serve the request. ``attempts`` holds every try, in order."""

    kind = "all_providers_failed"

    def __init__(self, attempts: Sequence[Attempt], *, reason: str | None = None) -> None:
        tried = ", ".join(
            f"{a.provider}: {type(a.error).__name__}" for a in attempts if a.error is not None
        )
        message = reason or "every provider failed"
        if tried:
            message = f"{message} ({tried})"
        super().__init__(message, status=_status_for(attempts))
        self.attempts = tuple(attempts)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "attempts": [a.to_dict() for a in self.attempts]}


def _status_for(attempts: Sequence[Attempt]) -> int:
    # The gateway maps this to an HTTP status: 429 if everything was rate limited, else 503.
    errors = [a.error for a in attempts if a.error is not None]
    if errors and all(isinstance(e, RateLimited) for e in errors):
        return 429
    return 503
