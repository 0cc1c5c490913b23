"""HTTP status to typed error: the part of error mapping every provider shares.

Each codec reads its own error body (message, type, code) and says whether it describes a
context-length or content-filter failure; this turns that into the typed error.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import (
    AuthenticationError,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    ServerError,
    SwitchyardError,
    Timeout,
)
from ._ratelimit import parse_retry_after

__all__ = ["error_for_status"]


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    retry_after: float | None = None,
    context_length: bool = False,
    content_filter: bool = False,
    overloaded: bool = False,
) -> SwitchyardError:
    """``retry_after`` overrides the headers (Gemini puts it in the body)."""
    text = f"{status}: {message}" if message else f"HTTP {status}"
    if context_length:
        return ContextLengthExceeded(text, provider=provider, status=status)
    if content_filter:
        return ContentFiltered(text, provider=provider, status=status)
    if status == 429:
        wait = retry_after if retry_after is not None else parse_retry_after(headers)
        return RateLimited(text, retry_after=wait, provider=provider, status=status)
    if status == 529 or overloaded:
        return Overloaded(text, provider=provider, status=status)
    if status == 401:
        return AuthenticationError(text, provider=provider, status=status)
    if status == 403:
        return PermissionDenied(text, provider=provider, status=status)
    if status == 404:
        return NotFound(text, provider=provider, status=status)
    if status in (408, 504):
        return Timeout(text, provider=provider, status=status)
    if status >= 500:
        return ServerError(text, provider=provider, status=status)
    return InvalidRequest(text, provider=provider, status=status)
