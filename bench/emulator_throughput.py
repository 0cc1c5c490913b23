"""Loopback throughput of the emulator: ``python bench/emulator_throughput.py``.

Starts ``python -m runtime.emulator --server S`` in a child process for each server
asked for (default: both, ``hypercorn-trio`` then ``uvicorn``), drives it from this
process with N concurrent httpx clients for a fixed number of requests per API and
mode, and reports requests per second and the server's CPU time per request.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx
import trio
from _common import emulator_process, process_cpu_seconds

SERVERS = ("hypercorn-trio", "uvicorn")

BODIES: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "openai": (
        "/v1/chat/completions",
        {"authorization": "Bearer sk-bench"},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "benchmark me"}]},
    ),
    "anthropic": (
        "/v1/messages",
        {"x-api-key": "bench", "anthropic-version": "2023-06-01"},
        {
            "model": "claude-haiku-5-5",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "benchmark me"}],
        },
    ),
    "gemini": (
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"x-goog-api-key": "bench"},
        {"contents": [{"role": "user", "parts": [{"text": "benchmark me"}]}]},
    ),
}


def request(provider: str, stream: bool) -> tuple[str, dict[str, str], bytes]:
    """The path, headers and JSON body of one benchmark request."""
    path, headers, body = BODIES[provider]
    if stream:
        body = {**body, "stream": True}
        if provider == "gemini":
            path = path.replace(":generateContent", ":streamGenerateContent?alt=sse")
    return path, headers, json.dumps(body).encode()


async def drive_httpx(base: str, provider: str, stream: bool, clients: int, total: int) -> float:
    """``total`` requests from ``clients`` httpx clients; returns req/s."""
    path, headers, body = request(provider, stream)
    headers = {**headers, "content-type": "application/json"}
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            while remaining > 0:
                remaining -= 1
                response = await client.post(path, content=body)
                assert response.status_code == 200, response.text

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(worker)
    return total / (time.perf_counter() - start)


async def drive_raw(base: str, provider: str, stream: bool, clients: int, total: int) -> float:
    """Like :func:`drive_httpx` over bare keep-alive sockets: one prepared request,
    and only as much response parsing as finding its end takes (Content-Length or
    the last chunk), so that the client costs little next to the server."""
    path, headers, body = request(provider, stream)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"content-length: {len(body)}")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        sock = await trio.open_tcp_stream(host, int(port))
        buffer = b""
        async with sock:
            while remaining > 0:
                remaining -= 1
                await sock.send_all(wire)
                while (end := buffer.find(b"\r\n\r\n")) < 0:
                    buffer += await _receive(sock)
                head, buffer = buffer[:end].lower(), buffer[end + 4 :]
                assert head.startswith(b"http/1.1 200 "), head
                at = head.find(b"\r\ncontent-length:")
                if at >= 0:
                    size = int(head[at + 17 :].split(b"\r\n", 1)[0])
                    while len(buffer) < size:
                        buffer += await _receive(sock)
                    buffer = buffer[size:]
                else:
                    assert b"\r\ntransfer-encoding: chunked" in head, head
                    while (end := buffer.find(b"\r\n0\r\n\r\n")) < 0:
                        buffer += await _receive(sock)
                    buffer = buffer[end + 7 :]

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(worker)
    return total / (time.perf_counter() - start)


async def _receive(sock: trio.SocketStream) -> bytes:
    data = await sock.receive_some(65536)
    if not data:
        raise ConnectionError("the emulator closed the connection")
    return data


DRIVERS = {"raw": drive_raw, "httpx": drive_httpx}


def measure(
    base: str, pid: int, label: str, clients: int, total: int, client: str = "raw"
) -> list[dict[str, Any]]:
    """Every API in JSON and SSE mode against one running emulator; prints a line each."""
    drive = DRIVERS[client]
    rows = []
    trio.run(drive, base, "openai", False, clients, min(total, 200))  # warm up
    for provider in BODIES:
        for stream in (False, True):
            cpu0, own0 = process_cpu_seconds(pid), time.process_time()
            rate = trio.run(drive, base, provider, stream, clients, total)
            cpu1, own = process_cpu_seconds(pid), (time.process_time() - own0) / total * 1e6
            cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / total * 1e6
            kind = "stream" if stream else "json"
            shown = "?" if cpu is None else f"{cpu:6.0f}"
            print(
                f"{label:15} {provider:10} {kind:6} {rate:8.0f} req/s  "
                f"server CPU {shown} us/req  (client {own:4.0f})",
                flush=True,
            )
            rows.append({"server": label, "api": provider, "mode": kind, "rps": rate, "cpu": cpu})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--server",
        nargs="+",
        choices=SERVERS,
        default=list(SERVERS),
        help="which emulator servers to measure, in order (default: both)",
    )
    parser.add_argument(
        "--client",
        choices=list(DRIVERS),
        default="raw",
        help="raw: bare keep-alive sockets, cheap enough not to cap the rate (default); "
        "httpx: one httpx.AsyncClient per connection",
    )
    parser.add_argument("--clients", type=int, default=64, help="concurrent connections")
    parser.add_argument("--requests", type=int, default=5000, help="per API and mode")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for server in args.server:
        with emulator_process(server) as emulator:
            rows += measure(
                emulator.url, emulator.pid, server, args.clients, args.requests, args.client
            )
    if len(args.server) > 1:
        print("\nmean over APIs and modes:")
        for server in args.server:
            mine = [r for r in rows if r["server"] == server]
            rps = sum(r["rps"] for r in mine) / len(mine)
            cpus = [r["cpu"] for r in mine if r["cpu"] is not None]
            cpu = f"{sum(cpus) / len(cpus):6.0f}" if cpus else "     ?"
            print(f"{server:15} {rps:8.0f} req/s  server CPU {cpu} us/req")


if __name__ == "__main__":
    main()
