"""LiteLLM's Router against the emulator, under asyncio (LiteLLM is asyncio-based).

Two deployments of one model name, both ``openai/gpt-4o-mini`` on the emulator through
``api_base``; ``num_retries=0`` like the other callers. Timed the same way as ``_http.drive``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch at import
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm
from _common import (
    API_KEY,
    MESSAGES,
    MODEL,
    CallLog,
    GcWatch,
    call_until,
    cpu_seconds,
    process_cpu_seconds,
    summarize,
    warm,
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

    warm_calls = min(concurrency, params.get("warm") or concurrency)
    await asyncio.gather(*(warm(call) for _ in range(warm_calls)))
    log = CallLog()
    server0 = None if server_pid is None else process_cpu_seconds(server_pid)
    cpu0 = cpu_seconds()
    begin = time.perf_counter()
    stop = begin + float(params["seconds"])
    with GcWatch() as gc_watch:
        await asyncio.gather(*(call_until(call, stop, log) for _ in range(concurrency)))
    elapsed = time.perf_counter() - begin
    cpu = cpu_seconds() - cpu0
    return summarize(log, elapsed, cpu, server_pid, server0, gc_watch)


def run(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_drive(params))
