"""A trio network backend for httpcore's connection pools (httpcore and httpcore2 alike).

httpcore's own trio backend wraps every read and every write in an exception-mapping
context manager and a ``fail_after`` cancel scope, with an infinite deadline when no
timeout is given. For a small request that is several context managers and cancel scopes,
about a tenth of a request's CPU (``bench/``). This backend maps errors with ``try`` and
opens a cancel scope only for a timeout actually given. Switchyard gives none: its
deadlines are the caller's cancel scopes.

A request's head is held back until its body (or, with no body, its first read) and goes
out with it in one send: one system call, one TLS record and one trip through the scheduler
instead of two, about 5% of a small request's CPU. That fits HTTP/1.1, where a request is
written whole before its answer is read; the backend serves HTTP/1.1 pools only (HTTP/2
interleaves reads and writes of many requests on one connection, where a held frame could
wait for a read that another task is already blocked in).

It implements httpcore's ``AsyncNetworkBackend`` and ``AsyncNetworkStream`` interfaces
(duck-typed: the same code serves both libraries, whose exception types it is given).
Outside trio (a pool used under asyncio) it hands connecting to the library's own backend.
"""

# The ``timeout`` parameters are httpcore's interface (ASYNC109 prefers cancel scopes).
# ruff: noqa: ASYNC109

from __future__ import annotations

import functools
import math
import ssl
from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import Any, final

import sniffio
import trio

__all__ = ["TrioNetworkBackend"]


# A head larger than this is sent at once (a head is a few hundred bytes; a body of up to
# _JOIN_MAX more is copied once to join it).
_HOLD_MAX = 16 * 1024
_JOIN_MAX = 256 * 1024


def _limit(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


@final
class _TrioNetworkStream:
    """One connection: a trio ``SocketStream``, or an ``SSLStream`` over one.

    The first write after the connection opens or after a read (a request's head) is held,
    not sent; the next write sends it joined to its own bytes, and a read sends it first.
    Errors sending it surface there: as a write error, or as a read error (the answer that
    read waited for will not come).
    """

    __slots__ = ("_closed", "_core", "_held", "_next_is_head", "_socket", "_stream")

    def __init__(self, core: ModuleType, stream: trio.abc.Stream, socket: Any) -> None:
        self._core = core
        self._stream = stream
        self._socket = socket
        self._held = b""
        self._next_is_head = True
        self._closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes | bytearray:
        self._next_is_head = True
        try:
            if timeout is None:
                if self._held:
                    await self._send_held()
                return await self._stream.receive_some(max_bytes)
            with trio.fail_after(timeout):
                if self._held:
                    await self._send_held()
                return await self._stream.receive_some(max_bytes)
        except trio.TooSlowError:
            raise self._core.ReadTimeout(f"no data within {timeout} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._core.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._closed:
            raise self._core.WriteError("the connection is closed")
        if self._next_is_head:
            self._next_is_head = False
            if len(buffer) <= _HOLD_MAX:
                self._held = bytes(buffer)
                return
        try:
            if timeout is None:
                await self._send(buffer)
                return
            with trio.fail_after(timeout):
                await self._send(buffer)
        except trio.TooSlowError:
            raise self._core.WriteTimeout(f"not sent within {timeout} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._core.WriteError(str(exc) or type(exc).__name__) from exc

    async def _send_held(self) -> None:
        held, self._held = self._held, b""
        await self._stream.send_all(held)

    async def _send(self, buffer: bytes) -> None:
        if self._held:
            if len(self._held) + len(buffer) > _JOIN_MAX:
                await self._send_held()
            else:
                buffer, self._held = self._held + buffer, b""
        await self._stream.send_all(buffer)

    async def aclose(self) -> None:
        self._closed = True
        self._held = b""
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> _TrioNetworkStream:
        tls = trio.SSLStream(
            self._stream,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            https_compatible=True,
        )
        try:
            with trio.fail_after(_limit(timeout)):
                await tls.do_handshake()
        except trio.TooSlowError:
            await self.aclose()
            raise self._core.ConnectTimeout(f"TLS handshake took over {timeout} s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await self.aclose()
            raise self._core.ConnectError(str(exc) or type(exc).__name__) from exc
        return _TrioNetworkStream(self._core, tls, self._socket)

    def get_extra_info(self, info: str) -> Any:
        match info:
            case "is_readable":  # asked of every idle pooled connection before reuse
                return self._socket.is_readable()
            case "ssl_object":
                # The SSLStream forwards what callers ask of an SSLObject
                # (``selected_alpn_protocol()``, ``getpeercert()``...).
                return self._stream if isinstance(self._stream, trio.SSLStream) else None
            case "socket":
                return self._socket
            case "client_addr":
                return self._socket.getsockname()
            case "server_addr":
                return self._socket.getpeername()
            case _:
                return None


@final
class TrioNetworkBackend:
    """Connections for an httpcore pool; ``core`` is ``httpcore`` or ``httpcore2``, whose
    exception types it raises."""

    def __init__(self, core: ModuleType) -> None:
        self._core = core
        self._fallback = core.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        if sniffio.current_async_library() != "trio":
            return await self._fallback.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        opening = functools.partial(trio.open_tcp_stream, host, port, local_address=local_address)
        return await self._connected(opening, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        if sniffio.current_async_library() != "trio":
            return await self._fallback.connect_unix_socket(path, timeout, socket_options)
        opening = functools.partial(trio.open_unix_socket, path)
        return await self._connected(opening, timeout, socket_options)

    async def _connected(
        self,
        opening: Callable[[], Awaitable[trio.SocketStream]],
        timeout: float | None,
        socket_options: Iterable[Any] | None,
    ) -> _TrioNetworkStream:
        """``opening`` awaited within ``timeout``, its errors the core's, options set."""
        try:
            with trio.fail_after(_limit(timeout)):
                stream = await opening()
        except trio.TooSlowError:
            raise self._core.ConnectTimeout(f"no connection within {timeout} s") from None
        except OSError as exc:
            raise self._core.ConnectError(str(exc) or type(exc).__name__) from exc
        for option in socket_options or ():
            stream.setsockopt(*option)
        return _TrioNetworkStream(self._core, stream, stream.socket)

    async def sleep(self, seconds: float) -> None:
        if sniffio.current_async_library() != "trio":
            await self._fallback.sleep(seconds)
            return
        await trio.sleep(seconds)
