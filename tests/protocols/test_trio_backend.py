"""The trio network backend under the HTTP providers' pools: real loopback sockets (and
TLS with a throwaway CA), httpcore and httpcore2 alike."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import httpcore
import httpcore2
import pytest
import trio
import trio.testing
import trustme

from protocols._trio_backend import _HOLD_MAX, _JOIN_MAX, TrioNetworkBackend, _TrioNetworkStream

CORES = [pytest.param(httpcore2, id="httpcore2"), pytest.param(httpcore, id="httpcore")]

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


async def listen(nursery: trio.Nursery, handler: Handler) -> int:
    """Serve ``handler`` for each connection on an ephemeral loopback port; the port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handler, listeners)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def echo(stream: trio.abc.Stream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


@pytest.mark.parametrize("core", CORES)
async def test_reads_what_the_peer_sent_and_reports_the_connection(
    nursery: trio.Nursery, core: ModuleType
) -> None:
    port = await listen(nursery, echo)
    stream = await TrioNetworkBackend(core).connect_tcp("127.0.0.1", port)
    await stream.write(b"ping")
    assert await stream.read(100) == b"ping"
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
    assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
    assert isinstance(stream.get_extra_info("socket"), trio.socket.SocketType)
    assert stream.get_extra_info("ssl_object") is None  # plain TCP
    assert stream.get_extra_info("no such thing") is None
    await stream.aclose()


@pytest.mark.parametrize("core", CORES)
async def test_an_idle_connection_turns_readable_when_the_peer_closes_it(
    nursery: trio.Nursery, core: ModuleType
) -> None:
    # The pool asks this of every idle connection before reusing it: a server that closed
    # a kept-alive connection makes it readable (at EOF), and the pool drops it.
    peer_close = trio.Event()

    async def close_on_cue(stream: trio.abc.Stream) -> None:
        await peer_close.wait()
        await stream.aclose()

    port = await listen(nursery, close_on_cue)
    stream = await TrioNetworkBackend(core).connect_tcp("127.0.0.1", port)
    assert stream.get_extra_info("is_readable") is False
    peer_close.set()
    await trio.lowlevel.wait_readable(stream.get_extra_info("socket"))
    assert stream.get_extra_info("is_readable") is True
    assert await stream.read(100) == b""  # EOF, as httpcore expects
    await stream.aclose()


@pytest.mark.parametrize("core", CORES)
async def test_a_timeout_given_to_read_or_write_raises_the_cores_timeout(
    nursery: trio.Nursery, core: ModuleType, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent(stream: trio.abc.Stream) -> None:
        await trio.sleep_forever()

    port = await listen(nursery, silent)
    stream = await TrioNetworkBackend(core).connect_tcp("127.0.0.1", port)
    started = trio.current_time()
    with pytest.raises(core.ReadTimeout):
        await stream.read(100, timeout=5.0)
    assert trio.current_time() - started == pytest.approx(5.0)
    # A peer that never reads: the send buffers fill and the write times out.
    with pytest.raises(core.WriteTimeout):
        for _ in range(10_000):
            await stream.write(b"x" * 65536, timeout=5.0)
    await stream.aclose()


@pytest.mark.parametrize("core", CORES)
async def test_io_on_a_closed_or_reset_connection_raises_the_cores_errors(
    nursery: trio.Nursery, core: ModuleType
) -> None:
    port = await listen(nursery, echo)
    backend = TrioNetworkBackend(core)
    stream = await backend.connect_tcp("127.0.0.1", port)
    await stream.aclose()
    with pytest.raises(core.ReadError):
        await stream.read(100)
    with pytest.raises(core.WriteError):
        await stream.write(b"ping")
    await stream.write(b"")  # nothing to send: nothing happens

    async def reset(peer: trio.abc.Stream) -> None:
        assert isinstance(peer, trio.SocketStream)
        peer.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        await peer.aclose()  # linger 0: the close is a reset

    port = await listen(nursery, reset)
    stream = await backend.connect_tcp("127.0.0.1", port)
    await trio.lowlevel.wait_readable(stream.get_extra_info("socket"))
    with pytest.raises(core.ReadError):
        await stream.read(100)
    await stream.aclose()


@pytest.mark.parametrize("core", CORES)
async def test_a_refused_connection_is_the_cores_connect_error(core: ModuleType) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but never listening: connecting is refused
        with pytest.raises(core.ConnectError):
            await TrioNetworkBackend(core).connect_tcp("127.0.0.1", port)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    context.set_alpn_protocols(["http/1.1"])
    return context


def client_context(ca: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    return context


@pytest.mark.parametrize("core", CORES)
async def test_tls_upgrades_the_connection_and_reports_the_protocol(
    nursery: trio.Nursery, core: ModuleType, ca: trustme.CA
) -> None:
    async def tls_echo(stream: trio.abc.Stream) -> None:
        await echo(trio.SSLStream(stream, server_context(ca), server_side=True))

    port = await listen(nursery, tls_echo)
    plain = await TrioNetworkBackend(core).connect_tcp("127.0.0.1", port)
    stream = await plain.start_tls(client_context(ca), server_hostname="localhost", timeout=10)
    await stream.write(b"over tls")
    assert await stream.read(100) == b"over tls"
    assert stream.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
    assert stream.get_extra_info("is_readable") is False  # asked of the socket beneath
    assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
    await stream.aclose()


@pytest.mark.parametrize("core", CORES)
async def test_a_certificate_not_trusted_fails_the_handshake_as_a_connect_error(
    nursery: trio.Nursery, core: ModuleType, ca: trustme.CA
) -> None:
    async def tls_echo(stream: trio.abc.Stream) -> None:
        with trio.move_on_after(5):
            await echo(trio.SSLStream(stream, server_context(ca), server_side=True))

    port = await listen(nursery, tls_echo)
    plain = await TrioNetworkBackend(core).connect_tcp("127.0.0.1", port)
    with pytest.raises(core.ConnectError):
        await plain.start_tls(client_context(None), server_hostname="localhost")
    with pytest.raises(core.WriteError):  # and the connection is closed
        await plain.write(b"anyone?")


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b"hello over " + scope["scheme"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("core", CORES)
async def test_a_pool_on_the_backend_speaks_https_to_a_real_server(
    serve_app: Callable[..., Awaitable[str]], core: ModuleType, ca: trustme.CA, tmp_path: Any
) -> None:
    pem = str(tmp_path / "server.pem")
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(pem)
    url = await serve_app(hello_app, pem=pem)
    assert url.startswith("https://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    pool = core.AsyncConnectionPool(
        ssl_context=client_context(ca), network_backend=TrioNetworkBackend(core)
    )
    async with pool:
        for _ in range(3):  # the second and third reuse the connection
            response = await pool.request("GET", f"https://localhost:{port}/")
            assert response.status == 200 and response.content == b"hello over https"
        assert len(pool.connections) == 1


@pytest.mark.parametrize("core", CORES)
def test_outside_trio_the_pool_falls_back_to_the_librarys_own_backend(core: ModuleType) -> None:
    async def main() -> bytes:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nasyncio")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = core.AsyncConnectionPool(network_backend=TrioNetworkBackend(core))
        async with server, pool:
            response = await pool.request("GET", f"http://127.0.0.1:{port}/")
            return response.content  # type: ignore[no-any-return]

    assert asyncio.run(main()) == b"asyncio"


class RecordingStream(trio.abc.Stream):
    """A stream that remembers each ``send_all`` it was given."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.sends: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def recorded_connection() -> tuple[Any, RecordingStream, trio.abc.Stream]:
    """(the backend's stream over an in-memory connection, its record of sends, the peer)."""
    client, peer = trio.testing.memory_stream_pair()
    recording = RecordingStream(client)
    return _TrioNetworkStream(httpcore2, recording, socket=None), recording, peer


async def test_a_request_head_goes_out_with_its_body_in_one_send() -> None:
    stream, recording, peer = recorded_connection()
    await stream.write(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n")
    assert recording.sends == []  # held for the body
    await stream.write(b"ping")
    assert recording.sends == [b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nping"]
    await stream.write(b"more body")  # not a head: straight out
    assert recording.sends[1:] == [b"more body"]
    await peer.send_all(b"HTTP/1.1 200 OK\r\n\r\n")
    assert await stream.read(100) == b"HTTP/1.1 200 OK\r\n\r\n"
    # The next request on the connection: its head is held again.
    await stream.write(b"GET / HTTP/1.1\r\n\r\n")
    assert len(recording.sends) == 2


async def test_a_head_with_no_body_goes_out_when_the_answer_is_read() -> None:
    stream, recording, peer = recorded_connection()
    await stream.write(b"GET / HTTP/1.1\r\n\r\n")

    async def answer() -> None:
        assert await peer.receive_some(100) == b"GET / HTTP/1.1\r\n\r\n"
        await peer.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        assert await stream.read(100) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert recording.sends == [b"GET / HTTP/1.1\r\n\r\n"]


async def test_large_heads_and_bodies_are_not_held_or_joined_but_keep_their_order() -> None:
    stream, recording, _ = recorded_connection()
    big_head = b"h" * (_HOLD_MAX + 1)
    await stream.write(big_head)
    assert recording.sends == [big_head]
    stream, recording, _ = recorded_connection()
    await stream.write(b"head")
    big_body = b"b" * _JOIN_MAX
    await stream.write(big_body)
    assert recording.sends == [b"head", big_body]


async def test_a_held_head_that_cannot_be_sent_fails_the_read_as_the_cores_read_error() -> None:
    stream, _, peer = recorded_connection()
    await stream.write(b"GET / HTTP/1.1\r\n\r\n")
    await peer.aclose()
    with pytest.raises(httpcore2.ReadError):
        await stream.read(100)
