"""Shared helpers of the benchmark: processes, ports, percentiles, memory, the worker protocol.

A worker is ``python bench/run.py --worker NAME``: it imports what it needs, prints
``BENCH-READY``, reads one JSON line of parameters from stdin, runs, and prints
``BENCH-RESULT {json}``. Spawning workers early lets slow imports (LiteLLM) overlap other
work; running each measurement in its own process keeps imports and heaps apart.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"
READY = "BENCH-READY"
RESULT = "BENCH-RESULT "
API_KEY = "sk-bench"
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "benchmark me"}]


class Server(NamedTuple):
    url: str
    pid: int


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) of another process so far; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except Exception:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None
) -> None:
    """Wait until ``url`` answers 200 (or raise, also if ``process`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f}s")


@contextlib.contextmanager
def emulator_process(server: str = "uvicorn") -> Iterator[Server]:
    """The provider emulator on loopback in its own process.

    ``server`` is the emulator's ``--server``: ``uvicorn`` (uvicorn + httptools +
    uvloop, several times cheaper per request than hypercorn's trio worker, so the
    emulator is not what a benchmark measures) or ``hypercorn-trio`` (its default).
    uvicorn keeps idle connections 30 s, longer than the clients' pools do
    (``_http.KEEPALIVE_S``), so none is closed under a client between rounds.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.emulator", "--port", str(port), "--server", server],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/_emulator/health", process=process)
        yield Server(base, process.pid)
    finally:
        stop(process)


@contextlib.contextmanager
def gateway_process(emulator: str, concurrency: int) -> Iterator[Server]:
    """``switchyard serve`` with one OpenAI provider on the emulator."""
    port = free_port()
    config = f"""
[server]
host = "127.0.0.1"
port = {port}

[logging]
level = "warning"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{emulator}/v1"
api_key_env = "OPENAI_API_KEY"
model = "{MODEL}"
max_concurrency = {max(64, concurrency)}
"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.toml"
        path.write_text(config)
        env = {**os.environ, "OPENAI_API_KEY": API_KEY}
        env.pop("SWITCHYARD_API_KEYS", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime._cli", "serve", "--config", str(path)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(base + "/health", process=process)
            yield Server(base, process.pid)
        finally:
            stop(process)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Worker:
    """A worker process: spawned now, started with parameters later, result read once."""

    def __init__(self, name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        self.process = subprocess.Popen(
            [sys.executable, str(RUN), "--worker", name],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._ready = False

    def _line(self, prefix: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :]
        self.process.wait()
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace")[-4000:]
        raise RuntimeError(f"worker {self.name} exited {self.process.returncode}:\n{tail}")

    def call(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait for its result; the worker stays up for more."""
        self.ready()
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(params) + "\n")
        self.process.stdin.flush()
        data: dict[str, Any] = json.loads(self._line(RESULT))
        return data

    def ready(self) -> None:
        if not self._ready:
            self._line(READY)
            self._ready = True

    def run(self, params: dict[str, Any]) -> dict[str, Any]:
        """One command, then stop the worker."""
        try:
            return self.call(params)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # end of commands: the worker exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        stop(self.process)
        self._stderr.close()


def serve_worker(run: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The worker side of the protocol: one result line per command line, until EOF."""
    print(READY, flush=True)
    for line in sys.stdin:
        result = run(json.loads(line))
        print(RESULT + json.dumps(result), flush=True)


# --- numbers -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of unsorted ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


class GcWatch:
    """The garbage collector's pauses while in the block: with many requests in flight, a
    full (generation 2) collection stops every one of them at once, so it shows in the
    tail. Its length grows with the process's heap."""

    def __init__(self) -> None:
        self.full_pauses: list[tuple[float, float]] = []  # perf_counter() at start, end
        self.total_s = 0.0
        self._started = 0.0

    @property
    def full(self) -> int:
        return len(self.full_pauses)

    @property
    def full_max_s(self) -> float:
        return max((end - start for start, end in self.full_pauses), default=0.0)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ended = time.perf_counter()
        self.total_s += ended - self._started
        if info["generation"] == 2:
            self.full_pauses.append((self._started, ended))

    def hit(self, starts: Sequence[float], latencies: Sequence[float]) -> list[int]:
        """Indices of the requests (started at ``starts``, lasting ``latencies``) that were
        in flight during a full collection."""
        return [
            i
            for i, (t0, took) in enumerate(zip(starts, latencies, strict=True))
            if any(start < t0 + took and end > t0 for start, end in self.full_pauses)
        ]

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._observe)


class CallLog:
    """What a timed run records: each call that succeeded (its start on ``perf_counter``
    and its latency, in seconds) and the failed ones, counted by exception type."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()


# The two loops below await nothing but ``call``, so trio and asyncio callers share them.


async def warm(call: Callable[[], Awaitable[object]]) -> None:
    """One call, tried up to three times (a pool's first calls may meet closed connections)."""
    for _ in range(3):
        try:
            await call()
            return
        except Exception:
            continue


async def call_until(call: Callable[[], Awaitable[object]], stop: float, log: CallLog) -> None:
    """``call`` again and again until ``perf_counter()`` passes ``stop``, each one logged."""
    clock = time.perf_counter
    while clock() < stop:
        t0 = clock()
        try:
            await call()
        except Exception as exc:
            log.errors[type(exc).__name__] += 1
            continue
        log.latencies.append(clock() - t0)
        log.starts.append(t0)


def summarize(
    log: CallLog,
    elapsed: float,
    cpu: float,
    server_pid: int | None = None,
    server_cpu0: float | None = None,
    gc_watch: GcWatch | None = None,
) -> dict[str, Any]:
    """One timed run of a caller: rates, latency percentiles, CPU per request, GC pauses
    (and which requests a full collection paused), and the latencies themselves (ms), for
    percentiles over several runs."""
    latencies, errors = log.latencies, log.errors
    done = max(1, len(latencies))
    hit = [] if gc_watch is None else gc_watch.hit(log.starts, latencies)
    server_cpu = None
    if server_pid is not None and server_cpu0 is not None:
        now = process_cpu_seconds(server_pid)
        server_cpu = None if now is None else (now - server_cpu0) / done * 1e6
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": median(latencies) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "cpu_us_per_req": cpu / done * 1e6,
        "server_cpu_us_per_req": server_cpu,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_types": dict(errors),
        "gc_full_collections": None if gc_watch is None else gc_watch.full,
        "gc_full_pause_ms_max": None if gc_watch is None else gc_watch.full_max_s * 1000,
        "gc_pause_ms_per_s": None if gc_watch is None else gc_watch.total_s * 1000 / elapsed,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
        "full_gc_hit": hit,
    }


def _outside_full_gc(run: dict[str, Any]) -> list[float]:
    hit = set(run.get("full_gc_hit", ()))
    return [x for i, x in enumerate(run["latencies_ms"]) if i not in hit]


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one caller: the median round for rates and CPU; percentiles over every
    request of every round."""
    merged: dict[str, Any] = {}
    for key in ("rps", "cpu_us_per_req", "server_cpu_us_per_req", "gc_pause_ms_per_s"):
        values = [r[key] for r in runs if r.get(key) is not None]
        merged[key] = median(values) if values else None
    pooled = [x for r in runs for x in r["latencies_ms"]]
    merged["p50_ms"] = median(pooled)
    merged["p99_ms"] = percentile(pooled, 99)
    merged["p99_ms_worst_round"] = max(r["p99_ms"] for r in runs)
    # The tail with the requests a full GC pause caught left out, and how many those were:
    # at high concurrency one pause stops every request in flight at once.
    outside = [x for r in runs for x in _outside_full_gc(r)]
    merged["p99_ms_outside_full_gc"] = percentile(outside, 99)
    merged["full_gc_hit_share"] = 1 - len(outside) / max(1, len(pooled))
    merged["rps_rounds"] = [round(r["rps"], 1) for r in runs]
    merged["requests"] = sum(r["requests"] for r in runs)
    merged["errors"] = sum(r["errors"] for r in runs)
    full = [r["gc_full_collections"] for r in runs if r.get("gc_full_collections") is not None]
    merged["gc_full_collections"] = sum(full) if full else None
    pauses = [r["gc_full_pause_ms_max"] for r in runs if r.get("gc_full_collections")]
    merged["gc_full_pause_ms_max"] = max(pauses) if pauses else None
    types: Counter[str] = Counter()
    for r in runs:
        types.update(r["error_types"])
    merged["error_types"] = dict(types)
    return merged


def rss_mb() -> float:
    """The current resident set size of this process, in MB."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        pass
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 1e6
    except ImportError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """The highest resident set size this process reached, in MB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def cpu_seconds() -> float:
    """CPU time (user + system) of this process."""
    return time.process_time()
