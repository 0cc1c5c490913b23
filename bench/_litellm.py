"""LiteLLM's Router against the emulator, under asyncio (LiteLLM is asyncio-based).

Two deployments of one model name, both ``openai/gpt-4o-mini`` on the emulator through
``api_base``; ``num_retries=0`` like the other callers. Timed the same way as ``_http.drive``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch at import
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm
from _common import (
    API_KEY,
    MESSAGES,
    MODEL,
    GcWatch,
    cpu_seconds,
    process_cpu_seconds,
    summarize,
)

litellm.suppress_debug_info = True
litellm.telemetry = False
logging.getLogger("LiteLLM").setLevel(logging.ERROR)


def _router(base: str) -> litellm.Router:
    deployments = [
        {
            "model_name": "bench",
            "litellm_params": {
                "model": f"openai/{MODEL}",
                "api_base": base + "/v1",
                "api_key": API_KEY,
            },
            "model_info": {"id": f"emulator-{i}"},
        }
        for i in (1, 2)
    ]
    return litellm.Router(model_list=deployments, num_retries=0)


async def _drive(params: dict[str, Any]) -> dict[str, Any]:
    """One caller run, timed like ``_http.drive``."""
    router = _router(params["url"])
    concurrency = int(params["concurrency"])
    server_pid = params.get("server_pid")

    async def call() -> None:
        response = await router.acompletion(model="bench", messages=MESSAGES)
        if not response.choices:
            raise RuntimeError("litellm: no choices")

    async def warm() -> None:
        for _ in range(3):
            try:
                await call()
                return
            except Exception:
                continue

    warm_calls = min(concurrency, params.get("warm") or concurrency)
    await asyncio.gather(*(warm() for _ in range(warm_calls)))
    latencies: list[float] = []
    starts: list[float] = []
    errors: Counter[str] = Counter()
    clock = time.perf_counter

    async def worker(stop: float) -> None:
        while clock() < stop:
            t0 = clock()
            try:
                await call()
            except Exception as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(clock() - t0)
            starts.append(t0)

    server0 = None if server_pid is None else process_cpu_seconds(server_pid)
    cpu0 = cpu_seconds()
    begin = clock()
    with GcWatch() as gc_watch:
        await asyncio.gather(
            *(worker(begin + float(params["seconds"])) for _ in range(concurrency))
        )
    elapsed = clock() - begin
    cpu = cpu_seconds() - cpu0
    return summarize(latencies, elapsed, cpu, errors, server_pid, server0, gc_watch, starts)


def run(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_drive(params))
