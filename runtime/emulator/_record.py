"""What reached the emulator: recorded requests with API keys redacted."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from ._faults import FaultSpec

REDACTED: Final = "[REDACTED]"
SECRET_HEADERS: Final = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization"}
)
_KEY_PARAM = re.compile(r"(^|&)(key=)[^&]*")


class RecordedRequest(msgspec.Struct, kw_only=True):
    """One request as received.

    ``headers`` are lower-cased with secret values replaced by ``[REDACTED]``
    (also ``key=`` in ``query``); ``api_key_sha256`` is :func:`key_fingerprint`
    of the key the provider would read, so tests can tell keys apart.
    ``body`` is the parsed JSON (None if absent, the raw text if not JSON).
    ``status`` is the HTTP status sent (0 until decided) and ``fault`` the
    fault applied, if any.
    """

    provider: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    received_at: float
    api_key_sha256: str | None = None
    status: int = 0
    fault: FaultSpec | None = None


def key_fingerprint(key: str) -> str:
    """First 16 hex digits of the SHA-256 of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def redact_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Decode ASGI headers, hiding secret values."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        out[key] = REDACTED if key in SECRET_HEADERS else value.decode("latin-1")
    return out


def redact_query(query: str) -> str:
    """Hide a ``key=`` query parameter's value."""
    return _KEY_PARAM.sub(r"\1\2" + REDACTED, query) if "key=" in query else query
