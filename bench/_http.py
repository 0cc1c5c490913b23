"""HTTP measurements under trio against the emulator (and the gateway).

Callers, each with a connection pool as large as the concurrency:

* ``switchyard``: the runtime with the native ``openai_provider`` transport on httpx2;
* ``switchyard_unfrozen``: the same with ``RuntimeConfig(freeze_heap=False)``: what the
  runtime's freezing of the start-up heap does to the tail;
* ``raw``: an httpx2 ``AsyncClient`` posting the bytes the runtime's codec would send, and
  msgspec decoding the answer: the floor;
* ``raw_transport``: the same on httpx2's transport (its connection pool) without the client
  layer: the floor below the floor, with the library as it comes (the runtime's providers
  also replace its network backend and split its pool);
* ``openai_sdk``: ``openai.AsyncOpenAI`` on its own httpx2 client, ``max_retries=0``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import msgspec
import trio
from _common import (
    API_KEY,
    MESSAGES,
    MODEL,
    CallLog,
    GcWatch,
    call_until,
    cpu_seconds,
    median,
    merge,
    process_cpu_seconds,
    summarize,
    warm,
)

from protocols import TextDelta, build_request
from protocols.providers import OpenAICodec, openai_provider
from runtime import ProviderSpec, RuntimeConfig, open_runtime

Call = Callable[[], Awaitable[None]]


# --- the floor's decoding: just what a caller needs --------------------------------------


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Completion(msgspec.Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChunkChoice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_ChunkChoice] = []


_decode_completion = msgspec.json.Decoder(_Completion).decode
_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _body(*, stream: bool, **options: Any) -> bytes:
    """Exactly the bytes the runtime's OpenAI codec sends for ``MESSAGES``."""
    request = build_request(
        MESSAGES, options, request_id="raw", now=0.0, default_timeout=60, stream=stream
    )
    return OpenAICodec().encode(request, model=MODEL, stream=stream)


HEADERS = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}


# Below hypercorn's 5 s keep-alive timeout (the emulator's and the gateway's server): idle
# between rounds, a pool that kept its connections longer would reuse ones the server is
# closing, and these callers have no retries. (The runtime's own pool keeps them 30 s; its
# retries cover that race.)
KEEPALIVE_S = 4.0


def _limits(concurrency: int) -> httpx2.Limits:
    return httpx2.Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE_S,
    )


def _pool(concurrency: int) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(timeout=None, limits=_limits(concurrency), trust_env=False)


async def _raw_caller(stack: AsyncExitStack, base: str, concurrency: int) -> Call:
    client = await stack.enter_async_context(_pool(concurrency))
    url = base + "/v1/chat/completions"
    body = _body(stream=False)

    async def call() -> None:
        response = await client.post(url, content=body, headers=HEADERS)
        if response.status_code != 200:
            raise RuntimeError(f"raw: HTTP {response.status_code}")
        completion = _decode_completion(response.content)
        if not completion.choices:
            raise RuntimeError("raw: no choices")

    return call


async def _raw_transport_caller(stack: AsyncExitStack, base: str, concurrency: int) -> Call:
    """The floor below ``raw``: httpx2's connection pool called directly, without the
    client layer (cookies, auth, redirects, hooks)."""
    transport = await stack.enter_async_context(
        httpx2.AsyncHTTPTransport(limits=_limits(concurrency), trust_env=False)
    )
    url = httpx2.URL(base + "/v1/chat/completions")
    body = _body(stream=False)

    async def call() -> None:
        request = httpx2.Request("POST", url, content=body, headers=HEADERS)
        response = await transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        if response.status_code != 200:
            raise RuntimeError(f"raw_transport: HTTP {response.status_code}")
        if not _decode_completion(content).choices:
            raise RuntimeError("raw_transport: no choices")

    return call


async def _switchyard_caller(
    stack: AsyncExitStack, base: str, concurrency: int, *, freeze_heap: bool = True
) -> Call:
    provider = openai_provider(
        name="openai",
        base_url=base + "/v1",
        api_key=API_KEY,
        model=MODEL,
        http_client="httpx2",
        max_connections=concurrency,
    )
    spec = ProviderSpec(provider=provider, max_concurrency=max(64, concurrency))
    config = RuntimeConfig(seed=1, freeze_heap=freeze_heap)
    rt = await stack.enter_async_context(open_runtime([spec], config=config))

    async def call() -> None:
        response = await rt.complete(MESSAGES)
        if not response.text:
            raise RuntimeError("switchyard: empty answer")

    return call


async def _sdk_caller(stack: AsyncExitStack, base: str, concurrency: int) -> Call:
    import openai  # here: the other callers' processes do not load it

    http = await stack.enter_async_context(_pool(concurrency))
    client = openai.AsyncOpenAI(
        api_key=API_KEY, base_url=base + "/v1", max_retries=0, timeout=None, http_client=http
    )
    create = client.chat.completions.create

    async def call() -> None:
        completion = await create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        if not completion.choices:
            raise RuntimeError("openai_sdk: no choices")

    return call


CALLERS = {
    "switchyard": _switchyard_caller,
    "switchyard_unfrozen": functools.partial(_switchyard_caller, freeze_heap=False),
    "raw": _raw_caller,
    "raw_transport": _raw_transport_caller,
    "openai_sdk": _sdk_caller,
}


async def drive(
    call: Call,
    concurrency: int,
    seconds: float,
    server_pid: int | None = None,
    warm_calls: int | None = None,
) -> dict[str, Any]:
    """``concurrency`` tasks calling ``call`` in a loop for ``seconds``, after a warm-up of
    ``warm_calls`` concurrent calls (default: one per task; they also replace connections
    the server closed meanwhile). Failed calls are counted by type, not timed.
    ``server_pid``: also report that process's CPU per request (the emulator's, to see
    which side is the bottleneck)."""

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, warm_calls or concurrency)):
            nursery.start_soon(warm, call)
    log = CallLog()
    server0 = None if server_pid is None else process_cpu_seconds(server_pid)
    cpu0 = cpu_seconds()
    begin = time.perf_counter()
    with GcWatch() as gc_watch:
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(call_until, call, begin + seconds, log)
    elapsed = time.perf_counter() - begin
    cpu = cpu_seconds() - cpu0
    return summarize(log, elapsed, cpu, server_pid, server0, gc_watch)


async def _drive_op(params: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(params["concurrency"])
    async with AsyncExitStack() as stack:
        call = await CALLERS[params["caller"]](stack, params["url"], concurrency)
        return await drive(
            call,
            concurrency,
            float(params["seconds"]),
            params.get("server_pid"),
            params.get("warm"),
        )


async def _gateway_op(params: dict[str, Any]) -> dict[str, Any]:
    """The openai SDK at ``concurrency`` through the gateway and straight to the emulator,
    alternating; the gateway's own CPU per request is reported too."""
    seconds = float(params["seconds"])
    concurrency = int(params["concurrency"])
    targets = {
        "gateway": (params["gateway"], params["gateway_pid"]),
        "direct": (params["url"], params["server_pid"]),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    async with AsyncExitStack() as stack:
        calls = {
            name: await _sdk_caller(stack, url, concurrency) for name, (url, _) in targets.items()
        }
        for r in range(int(params["rounds"])):
            for name in ("gateway", "direct") if r % 2 == 0 else ("direct", "gateway"):
                pid = targets[name][1]
                run = await drive(calls[name], concurrency, seconds, pid, params.get("warm"))
                runs[name].append(run)
    return {name: merge(r) for name, r in runs.items()}


# --- streaming -----------------------------------------------------------------------------


async def _stream_raw(client: httpx2.AsyncClient, url: str, body: bytes) -> tuple[int, int, int]:
    """One stream: (ns to the first content chunk, ns to the end, content chunks)."""
    clock = time.perf_counter_ns
    t0 = clock()
    first = 0
    chunks = 0
    end = 0
    buffer = b""
    async with client.stream("POST", url, content=body, headers=HEADERS) as response:
        if response.status_code != 200:
            raise RuntimeError(f"raw stream: HTTP {response.status_code}")
        # Read to the body's end (after [DONE]), or the connection is not reused.
        async for data in response.aiter_bytes():
            if end:
                continue
            buffer += data
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                if not frame.startswith(b"data: "):
                    continue
                payload = frame[6:]
                if payload == b"[DONE]":
                    end = clock()
                    break
                chunk = _decode_chunk(payload)
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    chunks += 1
                    if chunks == 1:
                        first = clock()
    if not end:
        raise RuntimeError("raw stream: no [DONE]")
    return first - t0, end - t0, chunks


async def _stream_switchyard(rt: Any) -> tuple[int, int, int]:
    clock = time.perf_counter_ns
    t0 = clock()
    first = 0
    chunks = 0
    async with rt.stream(MESSAGES, max_tokens=20) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                chunks += 1
                if chunks == 1:
                    first = clock()
    end = clock()
    if events.response is None:
        raise RuntimeError("switchyard stream failed")
    return first - t0, end - t0, chunks


async def _stream(params: dict[str, Any]) -> dict[str, Any]:
    base = params["url"]
    n = int(params["streams"])
    url = base + "/v1/chat/completions"
    body = _body(stream=True, max_tokens=20)
    provider = openai_provider(
        name="openai", base_url=base + "/v1", api_key=API_KEY, model=MODEL, max_connections=4
    )
    samples: dict[str, list[tuple[int, int, int]]] = {"switchyard": [], "raw": []}
    async with _pool(4) as client, open_runtime([provider], config=RuntimeConfig(seed=1)) as rt:
        for _ in range(20):
            await _stream_raw(client, url, body)
            await _stream_switchyard(rt)
        for i in range(n):
            pair = [("raw", _stream_raw(client, url, body)), ("switchyard", _stream_switchyard(rt))]
            for name, run in pair if i % 2 else pair[::-1]:
                samples[name].append(await run)
    out: dict[str, Any] = {"streams": n}
    for name, rows in samples.items():
        counts = {c for _, _, c in rows}
        if len(counts) != 1:
            raise RuntimeError(f"{name}: chunk counts differ between streams: {counts}")
        chunks = counts.pop()
        out["chunks"] = chunks
        out[f"{name}_ttft_us_p50"] = median([f for f, _, _ in rows]) / 1000
        out[f"{name}_chunk_us"] = median([(e - f) / (chunks - 1) for f, e, _ in rows]) / 1000
        out[f"{name}_total_us_p50"] = median([e for _, e, _ in rows]) / 1000
    out["ttft_overhead_us_p50"] = out["switchyard_ttft_us_p50"] - out["raw_ttft_us_p50"]
    out["chunk_overhead_us"] = out["switchyard_chunk_us"] - out["raw_chunk_us"]
    return out


def http(params: dict[str, Any]) -> dict[str, Any]:
    """One command: ``drive`` (one caller), ``gateway`` or ``stream``."""
    op = {"drive": _drive_op, "gateway": _gateway_op, "stream": _stream}[params["op"]]
    return trio.run(op, params)
