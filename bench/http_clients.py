"""httpx against httpx2 under concurrency, on the emulator in a separate process.

Run: .venv/bin/python bench/http_clients.py [--seconds S] [--concurrency N ...]
Prints requests/s and p50/p99 latency for each client at each concurrency, and the ratio
httpx2/httpx measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import httpx2
import trio

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"benchmark me"}]}'
HEADERS = {"authorization": "Bearer sk-bench", "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def emulator_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.emulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def measure(
    module: object, url: str, concurrency: int, seconds: float
) -> tuple[float, float, float]:
    limits = module.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)  # type: ignore[attr-defined]
    latencies: list[float] = []
    async with module.AsyncClient(timeout=None, limits=limits) as client:  # type: ignore[attr-defined]
        for _ in range(concurrency):  # warm the pool
            await client.post(url, content=BODY, headers=HEADERS)
        stop = trio.current_time() + seconds

        async def worker() -> None:
            while trio.current_time() < stop:
                start = time.perf_counter()
                response = await client.post(url, content=BODY, headers=HEADERS)
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        begin = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - begin
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / elapsed, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    with emulator_process() as base:
        url = base + "/v1/chat/completions"
        print(f"{'client':8} {'conc':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
        for concurrency in args.concurrency:
            results = {}
            for name, module in (("httpx", httpx), ("httpx2", httpx2)):
                rps, p50, p99 = trio.run(measure, module, url, concurrency, args.seconds)
                results[name] = rps
                print(f"{name:8} {concurrency:5} {rps:8.0f} {p50:7.2f} {p99:7.2f}")
            ratio = results["httpx2"] / results["httpx"]
            print(f"{'ratio':8} {concurrency:5} {ratio:8.2f}  (httpx2/httpx)")


if __name__ == "__main__":
    main()
