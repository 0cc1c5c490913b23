"""Providers' rate-limit headers, read into one shape the limiter understands."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from datetime import datetime

from msgspec import Struct

__all__ = ["RateLimitInfo", "parse_duration", "parse_rate_limit_headers", "parse_retry_after"]


class RateLimitInfo(Struct, frozen=True, kw_only=True):
    """What the provider says is left, and seconds until each budget resets."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None

    @property
    def empty(self) -> bool:
        return self.remaining_requests is None and self.remaining_tokens is None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _until(value: str | None, *, now: float) -> float | None:
    # Anthropic gives RFC 3339 instants.
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return parse_duration(value)
    return max(0.0, instant.timestamp() - now)


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo:
    """Read OpenAI's ``x-ratelimit-*`` or Anthropic's ``anthropic-ratelimit-*`` headers.

    ``headers`` must be case-insensitive (httpx's are) or lower-case.
    """
    wall = time.time() if now is None else now
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        reset_requests = headers.get("x-ratelimit-reset-requests")
        reset_tokens = headers.get("x-ratelimit-reset-tokens")
        return RateLimitInfo(
            remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
            remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
            reset_requests_s=parse_duration(reset_requests) if reset_requests else None,
            reset_tokens_s=parse_duration(reset_tokens) if reset_tokens else None,
        )
    if "anthropic-ratelimit-requests-remaining" in headers or (
        "anthropic-ratelimit-tokens-remaining" in headers
    ):
        return RateLimitInfo(
            remaining_requests=_int(headers.get("anthropic-ratelimit-requests-remaining")),
            remaining_tokens=_int(headers.get("anthropic-ratelimit-tokens-remaining")),
            reset_requests_s=_until(headers.get("anthropic-ratelimit-requests-reset"), now=wall),
            reset_tokens_s=_until(headers.get("anthropic-ratelimit-tokens-reset"), now=wall),
        )
    return RateLimitInfo()


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, or ``Retry-After`` as seconds or HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    wall = time.time() if now is None else now
    return max(0.0, when.timestamp() - wall)
