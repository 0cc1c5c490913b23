"""The interface each provider's wire format implements."""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from ._config import Provider
from ._limits import LimitStatus
from ._model import Prompt, Reply

Headers = list[tuple[bytes, bytes]]

encode = msgspec.json.Encoder().encode

_counter = itertools.count(1)
_process_tag = os.urandom(3).hex()


def new_id(prefix: str) -> str:
    """A unique (not deterministic) response id, as real APIs give."""
    return f"{prefix}{_process_tag}{next(_counter):012x}"


@dataclass(slots=True)
class StreamPlan:
    """SSE frames of a streamed reply.

    ``first_content`` is the index of the first frame carrying output (where
    a slow first token waits); the last ``n_term`` frames are what marks the
    stream complete (dropped by the ``truncate`` fault).
    """

    frames: list[bytes]
    first_content: int
    n_term: int


@dataclass(slots=True)
class ErrorInfo:
    """Context for an error body."""

    model: str = ""
    message: str | None = None
    param: str | None = None
    api_key: str | None = None
    tokens: int = 0
    limit: int = 0
    limits: LimitStatus | None = None
    retry_after: float | None = None


class ProviderApi(ABC):
    """One provider: auth, request parsing, response/stream/error rendering."""

    name: ClassVar[Provider]
    default_models: ClassVar[tuple[str, ...]]
    json_headers: ClassVar[Headers] = [(b"content-type", b"application/json")]
    sse_headers: ClassVar[Headers] = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
    ]

    @abstractmethod
    def api_key(self, headers: Mapping[str, str], query: str) -> str | None:
        """The API key as the real provider reads it, or None."""

    @abstractmethod
    def parse(self, body: Any, model: str | None) -> Prompt:
        """Normalise a request body (``model`` from the path, for Gemini)."""

    @abstractmethod
    def render(self, p: Prompt, r: Reply) -> bytes:
        """The non-streamed response body."""

    @abstractmethod
    def stream(self, p: Prompt, r: Reply) -> StreamPlan:
        """The streamed response, as SSE frames."""

    @abstractmethod
    def status_for(self, kind: str) -> int:
        """The HTTP status the real API uses for a named error kind."""

    @abstractmethod
    def error(self, kind: str, status: int, info: ErrorInfo) -> tuple[bytes, Headers]:
        """Error body (and any extra headers) in the provider's real shape."""

    @abstractmethod
    def stream_error(self, kind: str, status: int, info: ErrorInfo) -> bytes:
        """An SSE frame reporting an error mid-stream."""

    def limit_headers(self, st: LimitStatus) -> Headers:
        """Rate-limit headers the real API attaches (none by default)."""
        return []

    def request_id_headers(self) -> Headers:
        """Per-response id headers."""
        return []

    def models(self, configured: tuple[str, ...] | None) -> bytes:
        """The model-list response body."""
        return encode({"data": list(configured or self.default_models)})
