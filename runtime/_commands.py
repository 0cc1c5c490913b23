"""The bodies of the ``switchyard`` sub-commands (kept apart so ``--help`` stays fast)."""

from __future__ import annotations

import os
import sys

import httpx2
import trio

from protocols import ErrorEvent, Finish, SwitchyardError, TextDelta

from ._build import build_provider_specs, build_runtime_config
from ._embedded import EMULATED_KEYS, emulated_settings
from ._runtime import open_runtime
from ._serve import configure_logging, serve_gateway
from ._settings import ConfigError, Settings, load_settings

__all__ = ["chat_command", "health_command", "serve_command"]


def _load(path: str) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as error:
        print(f"switchyard: {error}", file=sys.stderr)
        return None


def serve_command(path: str) -> int:
    settings = _load(path)
    if settings is None:
        return 2
    configure_logging(settings.logging)
    trio.run(lambda: serve_gateway(settings, handle_signals=True))
    return 0


def chat_command(prompt: str, *, config: str | None, stream: bool, model: str | None) -> int:
    settings = _load(config) if config else None
    if config and settings is None:
        return 2
    try:
        return trio.run(_chat, prompt, settings, stream, model)
    except SwitchyardError as error:
        print(f"switchyard: {type(error).__name__}: {error.message}", file=sys.stderr)
        return 1


async def _chat(prompt: str, settings: Settings | None, stream: bool, model: str | None) -> int:
    messages = [{"role": "user", "content": prompt}]
    options = {"model": model} if model else {}
    async with trio.open_nursery() as nursery:
        env: dict[str, str] = dict(os.environ)
        if settings is None:
            from .emulator import serve_emulator

            emulator = await nursery.start(serve_emulator)
            settings = emulated_settings(emulator.base_url)
            env.update(EMULATED_KEYS)
        specs = build_provider_specs(settings, env)
        async with open_runtime(specs, config=build_runtime_config(settings)) as runtime:
            if not stream:
                response = await runtime.complete(messages, **options)
                print(response.text)
                print(
                    f"[{response.provider} {response.model}, {response.usage.total_tokens} tokens]",
                    file=sys.stderr,
                )
            else:
                async with runtime.stream(messages, **options) as events:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            print(event.text, end="", flush=True)
                        elif isinstance(event, Finish) and event.response is not None:
                            r = event.response
                            print(
                                f"\n[{r.provider} {r.model}, {r.usage.total_tokens} tokens]",
                                file=sys.stderr,
                            )
                        elif isinstance(event, ErrorEvent):
                            print(file=sys.stderr)
                            raise event.error
        nursery.cancel_scope.cancel()
    return 0


def health_command(url: str) -> int:
    try:
        response = httpx2.get(url.rstrip("/") + "/health", timeout=10.0)
    except httpx2.HTTPError as error:
        print(f"switchyard: cannot reach {url}: {error}", file=sys.stderr)
        return 1
    try:
        document = response.json()
    except ValueError:
        print(
            f"switchyard: {url}/health did not answer JSON ({response.status_code})",
            file=sys.stderr,
        )
        return 1
    print(f"{url}: {document.get('state')}, serving={document.get('serving')}")
    print(f"{'actor':14} {'state':11} {'breaker':9} {'restarts':>8} {'in flight':>9} {'ok':>7}")
    for actor in document.get("actors", []):
        breaker = (actor.get("breaker") or {}).get("state", "-")
        print(
            f"{actor['name']:14} {actor['state']:11} {breaker:9} {actor['restarts']:>8} "
            f"{actor['in_flight']:>9} {actor['successes']:>7}"
        )
    return 0 if response.status_code == 200 else 1
