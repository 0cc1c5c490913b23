"""Loopback throughput of the emulator: ``python bench/emulator_throughput.py``.

Starts ``python -m runtime.emulator`` in a child process, then drives it from
this process with N concurrent httpx clients for a fixed number of requests.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

import httpx
import trio

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


async def drive(base: str, provider: str, stream: bool, clients: int, total: int) -> float:
    path, headers, body = BODIES[provider]
    if stream:
        body = {**body, "stream": True}
        if provider == "gemini":
            path = path.replace(":generateContent", ":streamGenerateContent?alt=sse")
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            while remaining > 0:
                remaining -= 1
                response = await client.post(path, json=body)
                assert response.status_code == 200, response.text

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(worker)
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "runtime.emulator", "--port", str(args.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        base = f"http://127.0.0.1:{args.port}"
        for provider in BODIES:
            for stream in (False, True):
                rate = trio.run(drive, base, provider, stream, args.clients, args.requests)
                kind = "stream" if stream else "json"
                print(f"{provider:10} {kind:6} {rate:8.0f} req/s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
