"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Feed it bytes as they arrive; it returns complete events. Bytes that are not the format
(an event larger than ``max_event_bytes``, undecodable UTF-8) raise ``TransportError``; it
never crashes and never buffers without bound.
"""

from __future__ import annotations

from typing import final

from msgspec import Struct

from ._errors import TransportError

__all__ = ["SSEDecoder", "ServerSentEvent"]


class ServerSentEvent(Struct, frozen=True):
    event: str
    data: str


@final
class SSEDecoder:
    """``feed(bytes) -> list[ServerSentEvent]``, then ``close()`` at the end of the bytes.

    After ``close()``, ``truncated`` says whether a partial event was left over (dropped,
    as the format requires).
    """

    __slots__ = ("_buffer", "_data", "_event", "_max", "_provider", "_size", "truncated")

    def __init__(self, *, provider: str | None = None, max_event_bytes: int = 1 << 20) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # characters in _data
        self._max = max_event_bytes
        self._provider = provider
        self.truncated = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[ServerSentEvent] = []
        start = 0
        # Lines end in \n, \r\n or \r; a \r at the very end may be half of a \r\n. The
        # next \r is searched for again only once passed: servers that send none would
        # otherwise have the rest of the buffer scanned for one at every line.
        cr = buffer.find(b"\r")
        while True:
            nl = buffer.find(b"\n", start)
            if 0 <= cr < start:
                cr = buffer.find(b"\r", start)
            if cr != -1 and (nl == -1 or cr < nl):
                if cr == len(buffer) - 1:
                    break
                end = cr
                step = 2 if buffer[cr + 1 : cr + 2] == b"\n" else 1
            elif nl != -1:
                end = nl
                step = 1
            else:
                break
            line = buffer[start:end]
            start = end + step
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max:
            raise TransportError(
                f"server-sent event larger than {self._max} bytes", provider=self._provider
            )
        return events

    def close(self) -> list[ServerSentEvent]:
        """Events completed by the end of the stream (a final lone ``\r`` ends a line)."""
        events: list[ServerSentEvent] = []
        if self._buffer.endswith(b"\r"):
            events = self.feed(b"\n")
        self.truncated = bool(self._buffer.strip()) or bool(self._data)
        self._buffer = b""
        self._data = []
        self._size = 0
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data))
            self._event = ""
            self._data = []
            self._size = 0
            return event
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TransportError(
                "server-sent event is not UTF-8", provider=self._provider
            ) from None
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value)
            if self._size > self._max:
                raise TransportError(
                    f"server-sent event larger than {self._max} bytes", provider=self._provider
                )
        elif name == "event":
            self._event = value
        # "id" and "retry" matter only to reconnecting browsers; ignored.
        return None
