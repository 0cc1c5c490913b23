"""Serving the emulator with uvicorn (httptools parser, uvloop event loop), for benchmarks.

The app is backend-neutral (anyio), so the same :class:`Emulator` that hypercorn's
trio worker serves by default runs here on asyncio, for a fraction of the CPU time
per request, which keeps the emulator from being what a benchmark measures.
uvicorn, uvloop and httptools come with the project's ``bench`` extra; the command
line imports this module only for ``python -m runtime.emulator --server uvicorn``,
after checking that they are installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._app import Emulator
from ._config import EmulatorConfig
from ._server import SHUTDOWN_GRACE, http_url

KEEP_ALIVE = 30
"""Seconds an idle keep-alive connection stays open. Above hypercorn's 5 s, so
that pooled client connections idling between benchmark rounds (the benchmark
clients expire theirs after 4 s) are never closed under them."""


def serve_uvicorn(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: bool = False,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve an emulator with uvicorn until SIGINT/SIGTERM (blocks; main thread).

    ``on_listening`` gets ``http://HOST:PORT`` once the socket listens (port 0 binds an
    ephemeral port). In-flight requests get ``SHUTDOWN_GRACE`` seconds on a signal, as
    with the hypercorn server.
    """
    settings = uvicorn.Config(
        Emulator(config),
        host=host,
        port=port,
        loop="uvloop",
        http=_Protocol,
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=access_log,
        log_level="info" if access_log else "warning",
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=round(SHUTDOWN_GRACE),
        backlog=1024,
    )
    # The disconnect faults end a response early on purpose: not an error here.
    logging.getLogger("uvicorn.error").addFilter(_quiet_aborts)
    _Server(settings, on_listening).run()


def _quiet_aborts(record: logging.LogRecord) -> bool:
    return record.msg != "ASGI callable returned without completing response."


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_listening: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._on_listening is not None:
            bound = self.servers[0].sockets[0].getsockname()[1]
            self._on_listening(http_url(self.config.host, bound))

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own re-raises the signal after its graceful shutdown, so the
        # process would die of SIGTERM; as with the hypercorn server, a signal is
        # the ordinary way to stop here, and the exit status is 0.
        def stop(sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl+C: do not wait for requests
            self.should_exit = True

        originals = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`_CorkedTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CorkedTransport(transport))


class _CorkedTransport(asyncio.Transport):
    """A transport whose writes made in one event-loop turn leave in one send.

    uvicorn writes a response's status line and headers, then its body, with a
    send system call each; so a small response took two calls and reached the
    client as two TCP segments, two wake-ups and reads for it. Held until the
    turn ends (or the transport is closed), they go out together: the same bytes
    in the same order, no later than the next loop turn. That roughly doubles
    the loopback request rate and lowers both sides' CPU time per request.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()
