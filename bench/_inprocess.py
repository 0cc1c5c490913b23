"""In-process measurements: the runtime's own cost, with a transport that does no I/O.

* ``overhead``: one round of handle -> router actor -> provider actor -> in-memory
  transport and back (handed off, the default), against a direct call to the same transport.
* ``throughput``: the same through both mailboxes (handoff off); requests/s, sequential and
  at concurrency 64.
* ``growth``: RSS over many requests after a warm-up.
* ``streams``: RSS with many streams open at once (the transport holds them open).
* ``profile``: cProfile of the round trip, top entries.
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import os
import pstats
import time
from collections.abc import AsyncIterator
from typing import Any

import trio
from _common import MESSAGES, RESULT, cpu_seconds, median, peak_rss_mb, percentile, rss_mb

from protocols import (
    Finish,
    LLMProvider,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
    build_request,
)
from runtime import ProviderSpec, RouterConfig, RuntimeConfig, open_runtime

NAME = "memory"


class MemoryProvider(LLMProvider):
    """Answers at once with a prebuilt ``Response``; streams ``chunks`` pieces, optionally
    holding each stream open (after its first piece) until ``hold`` is set. It poses as
    OpenAI's gpt-4o-mini, so that the runtime prices its requests as it would a real one."""

    def __init__(self, *, chunks: int = 20, hold: trio.Event | None = None) -> None:
        self.name = NAME
        # Priced like the real thing, so that cost accounting runs as it does in use.
        self.kind = "openai"
        self.model = "gpt-4o-mini"
        self.response = Response(
            content=(TextPart("Hello from memory."),),
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=4),
            provider=NAME,
            model=self.model,
        )
        self.pieces = [TextDelta("word" if i == 0 else " word") for i in range(chunks)]
        self.usage = UsageEvent(Usage(input_tokens=3, output_tokens=chunks))
        self.finish = Finish("stop", model=self.model)
        self.hold = hold

    async def complete(self, request: Request) -> Response:
        return self.response

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        hold = self.hold
        for i, piece in enumerate(self.pieces):
            yield piece
            if i == 0 and hold is not None:
                await hold.wait()
        yield self.usage
        yield self.finish


def _spec(provider: LLMProvider, concurrency: int = 64) -> ProviderSpec:
    return ProviderSpec(provider=provider, max_concurrency=concurrency)


async def _hammer(rt: Any, callers: int, total: int) -> float:
    """``total`` completes from ``callers`` tasks; returns the elapsed seconds."""
    per = total // callers

    async def caller() -> None:
        for _ in range(per):
            await rt.complete(MESSAGES)

    begin = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return time.perf_counter() - begin


async def _trio_floor(n: int) -> float:
    """p50 us of the mailbox shape in bare trio: a fresh reply channel, caller -> task ->
    task -> caller. What the path through both mailboxes pays on this machine."""
    to_router, router_inbox = trio.open_memory_channel[Any](1024)
    to_worker, worker_inbox = trio.open_memory_channel[Any](64)

    async def router() -> None:
        async for reply in router_inbox:
            to_worker.send_nowait(reply)

    async def worker() -> None:
        async for reply in worker_inbox:
            with reply:
                reply.send_nowait(1)

    clock = time.perf_counter_ns
    samples: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(router)
        nursery.start_soon(worker)
        for i in range(n):
            t0 = clock()
            send, receive = trio.open_memory_channel[int](1)
            await to_router.send(send)
            with receive:
                await receive.receive()
            if i >= n // 10:
                samples.append(clock() - t0)
        nursery.cancel_scope.cancel()
    return median(samples) / 1000


async def _checkpoint_floor(n: int) -> float:
    """p50 us of one trip through the trio scheduler (``trio.lowlevel.checkpoint``), plus
    one cancel scope with a deadline: what a handed-off round trip cannot avoid."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    for i in range(n):
        t0 = clock()
        with trio.CancelScope(deadline=trio.current_time() + 60):
            await trio.lowlevel.checkpoint()
        if i >= n // 10:
            samples.append(clock() - t0)
    return median(samples) / 1000


async def _round_trips(rt: Any, provider: MemoryProvider, n: int) -> tuple[float, float, float]:
    """p50 us of ``rt.complete`` and of a direct call to ``provider``, then the former's
    p99; in alternating blocks so that drift in machine load hits both alike."""
    request = build_request(
        MESSAGES, {}, request_id="r1", now=trio.current_time(), default_timeout=60, stream=False
    )
    clock = time.perf_counter_ns
    for _ in range(min(n, 2000)):  # warm up both paths
        await rt.complete(MESSAGES)
        await provider.complete(request)
    runtime_ns: list[int] = []
    direct_ns: list[int] = []
    for _ in range(10):
        for _ in range(n // 10):
            t0 = clock()
            await rt.complete(MESSAGES)
            runtime_ns.append(clock() - t0)
        for _ in range(n // 10):
            t0 = clock()
            await provider.complete(request)
            direct_ns.append(clock() - t0)
    return median(runtime_ns) / 1000, median(direct_ns) / 1000, percentile(runtime_ns, 99) / 1000


async def _overhead(params: dict[str, Any]) -> dict[str, Any]:
    """One round of the overhead: a fresh runtime's handed-off round trip against a direct
    call to its transport, with this moment's bare trio floors to read the machine's speed
    by. The harness runs several rounds spread over its run (the VM's speed drifts)."""
    n = int(params["calls"])
    provider = MemoryProvider()
    async with open_runtime([_spec(provider)], config=RuntimeConfig(seed=1)) as rt:
        runtime_p50, direct_p50, runtime_p99 = await _round_trips(rt, provider, n)
    return {
        "overhead_us_p50": runtime_p50 - direct_p50,
        "runtime_us_p50": runtime_p50,
        "runtime_us_p99": runtime_p99,
        "direct_us_p50": direct_p50,
        "trio_3hop_floor_us_p50": await _trio_floor(n),
        "trio_checkpoint_floor_us_p50": await _checkpoint_floor(n),
        "calls": n,
    }


async def _throughput(params: dict[str, Any]) -> dict[str, Any]:
    """The path through both mailboxes (handoff off), for comparison; then requests/s,
    sequential and from 64 tasks."""
    n = int(params["calls"])
    provider = MemoryProvider()
    # Every request through both mailboxes (the router's task, then a provider worker):
    # the shape without handoff.
    mailboxes = RuntimeConfig(seed=1, router=RouterConfig(handoff=False))
    async with open_runtime([_spec(provider)], config=mailboxes) as rt:
        mailbox_p50, mailbox_direct_p50, _ = await _round_trips(rt, provider, n)
    async with open_runtime([_spec(provider)], config=RuntimeConfig(seed=1)) as rt:
        begin = time.perf_counter()
        for _ in range(n // 2):
            await rt.complete(MESSAGES)
        rps_c1 = (n // 2) / (time.perf_counter() - begin)
        total = int(params["throughput_requests"])
        cpu0 = cpu_seconds()
        elapsed = await _hammer(rt, 64, total)
        cpu = cpu_seconds() - cpu0
    return {
        "rps": total / elapsed,
        "rps_c1": rps_c1,
        "mailboxes_overhead_us_p50": mailbox_p50 - mailbox_direct_p50,
        "cpu_us_per_req_c64": cpu / total * 1e6,
        "throughput_requests": total,
    }


async def _growth(params: dict[str, Any]) -> dict[str, Any]:
    warmup = int(params["warmup"])
    total = int(params["requests"])
    samples = int(params.get("samples", 5))
    provider = MemoryProvider()
    async with open_runtime([_spec(provider)], config=RuntimeConfig(seed=1)) as rt:
        await _hammer(rt, 64, warmup)
        gc.collect()
        before = rss_mb()
        trace = [before]
        elapsed = 0.0
        for _ in range(samples):
            elapsed += await _hammer(rt, 64, total // samples)
            gc.collect()
            trace.append(rss_mb())
        after = trace[-1]
    return {
        "rss_growth_mb": after - before,
        "rss_mb_after_warmup": before,
        "rss_trace_mb": [round(x, 2) for x in trace],
        "warmup_requests": warmup,
        "requests": total // samples * samples,
        "rps_c64": total / elapsed,
    }


async def _streams(params: dict[str, Any]) -> dict[str, Any]:
    n = int(params["streams"])
    hold = trio.Event()
    provider = MemoryProvider(chunks=2, hold=hold)
    opened = 0
    all_open = trio.Event()
    chunks = 0
    config = RuntimeConfig(seed=1, default_timeout_s=600)
    gc.collect()
    before_runtime = rss_mb()
    async with open_runtime([_spec(provider, concurrency=n)], config=config) as rt:
        await _hammer(rt, 8, 64)  # the runtime's own first-use allocations
        gc.collect()
        baseline = rss_mb()

        async def one() -> None:
            nonlocal opened, chunks
            first = True
            async with rt.stream(MESSAGES) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        chunks += 1
                        if first:
                            first = False
                            opened += 1
                            if opened == n:
                                all_open.set()
                    elif not isinstance(event, UsageEvent | Finish):
                        raise RuntimeError(f"stream failed: {event!r}")

        begin = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
            await all_open.wait()
            open_s = time.perf_counter() - begin
            gc.collect()
            peak = rss_mb()
            result = {
                "rss_mb": peak,
                "rss_mb_baseline": baseline,
                "rss_mb_before_runtime": before_runtime,
                "kb_per_stream": (peak - before_runtime) * 1000 / n,
                "peak_rss_mb": peak_rss_mb(),
                "streams": n,
                "open_seconds": open_s,
                "drained": bool(params.get("drain", True)),
            }
            if not result["drained"]:
                # Quick mode: report now and skip winding down 10k streams (seconds here).
                print(RESULT + json.dumps(result), flush=True)
                os._exit(0)
            hold.set()
        total_s = time.perf_counter() - begin
    if chunks != n * 2:
        raise RuntimeError(f"expected {n * 2} chunks, got {chunks}")
    return {**result, "total_seconds": total_s}


async def _profile(params: dict[str, Any]) -> dict[str, Any]:
    """cProfile of ``calls`` round trips (``kind`` "complete") or 20-chunk streams
    ("stream"), after a warm-up. cProfile inflates small functions; read it for shares."""
    n = int(params["calls"])
    stream = params.get("kind") == "stream"
    provider = MemoryProvider(chunks=20)

    async def one(rt: Any) -> None:
        if not stream:
            await rt.complete(MESSAGES)
            return
        async with rt.stream(MESSAGES) as events:
            async for _ in events:
                pass

    async with open_runtime([_spec(provider)], config=RuntimeConfig(seed=1)) as rt:
        for _ in range(500):
            await one(rt)
        begin = time.perf_counter()
        for _ in range(n):
            await one(rt)
        plain_us = (time.perf_counter() - begin) / n * 1e6
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            await one(rt)
        profiler.disable()
    text = io.StringIO()
    top = int(params.get("top", 25))
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    what = "20-chunk streams" if stream else "complete() round trips"
    head = f"{n} in-process {what}: {plain_us:.1f} us each without the profiler\n"
    return {"calls": n, "us_each": plain_us, "report": head + text.getvalue()}


def run(params: dict[str, Any]) -> dict[str, Any]:
    """One command: ``overhead``, ``throughput``, ``growth``, ``streams`` or ``profile``."""
    op = {
        "overhead": _overhead,
        "throughput": _throughput,
        "growth": _growth,
        "streams": _streams,
        "profile": _profile,
    }
    return trio.run(op[params["op"]], params)
