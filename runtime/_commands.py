"""The bodies of the ``switchyard`` sub-commands (kept apart so ``--help`` stays fast).

Exit codes: 0 success, 1 a failure at run time (every provider failed, a gateway that is
unreachable or not serving, an address already in use), 2 a configuration that cannot be
used, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import httpx2
import trio

from protocols import ErrorEvent, Finish, InvalidRequest, SwitchyardError, TextDelta

from ._build import build_provider_specs, build_routes, build_runtime_config, missing_keys
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


def _leaf(error: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups, else ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def serve_command(path: str) -> int:
    settings = _load(path)
    if settings is None:
        return 2
    configure_logging(settings.logging)
    try:
        trio.run(lambda: serve_gateway(settings, handle_signals=True))
    except KeyboardInterrupt:  # before the signal handlers were installed
        return 130
    except BaseException as error:
        leaf = _leaf(error)
        if isinstance(leaf, OSError):
            address = f"{settings.server.host}:{settings.server.port}"
            print(
                f"switchyard: cannot listen on {address}: {leaf.strerror or leaf}",
                file=sys.stderr,
            )
            return 1
        if isinstance(leaf, KeyboardInterrupt):
            return 130
        raise
    return 0


def chat_command(prompt: str, *, config: str | None, stream: bool, model: str | None) -> int:
    settings = _load(config) if config else None
    if config and settings is None:
        return 2
    try:
        error = trio.run(_chat, prompt, settings, stream, model)
    except KeyboardInterrupt:
        return 130
    if error is not None:
        print(f"switchyard: {type(error).__name__}: {error.message}", file=sys.stderr)
        return 1
    return 0


async def _chat(
    prompt: str, settings: Settings | None, stream: bool, model: str | None
) -> SwitchyardError | None:
    """Answer ``prompt``; returns the error that ended it, if one did."""
    env: dict[str, str] = dict(os.environ)
    async with trio.open_nursery() as nursery:
        if settings is None:
            from .emulator import serve_emulator

            emulator = await nursery.start(serve_emulator)
            settings = emulated_settings(emulator.base_url)
            env.update(EMULATED_KEYS)
        else:
            for line in missing_keys(settings, env):
                print(f"switchyard: warning: {line}", file=sys.stderr)
        try:
            return await _ask(prompt, settings, env, stream, model)
        finally:
            nursery.cancel_scope.cancel()


async def _ask(
    prompt: str, settings: Settings, env: Mapping[str, str], stream: bool, model: str | None
) -> SwitchyardError | None:
    messages = [{"role": "user", "content": prompt}]
    options: dict[str, Any] = {}
    if model:  # a model name, an alias or a provider's name, as the gateway takes them
        routes = build_routes(settings)
        route = routes.get(model)
        if route is None:
            known = ", ".join(sorted(routes))
            return InvalidRequest(f"unknown model {model!r}; known: {known}", field="model")
        if route.providers:
            options["providers"] = route.providers
        if route.model is not None:
            options["model"] = route.model
    specs = build_provider_specs(settings, env)
    async with open_runtime(specs, config=build_runtime_config(settings)) as runtime:
        try:
            if not stream:
                response = await runtime.complete(messages, **options)
                print(response.text, flush=True)
                print(
                    f"[{response.provider} {response.model}, {response.usage.total_tokens} tokens]",
                    file=sys.stderr,
                )
                return None
            async with runtime.stream(messages, **options) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        print(event.text, end="", flush=True)
                    elif isinstance(event, Finish) and event.response is not None:
                        r = event.response
                        print(flush=True)
                        print(
                            f"[{r.provider} {r.model}, {r.usage.total_tokens} tokens]",
                            file=sys.stderr,
                        )
                    elif isinstance(event, ErrorEvent):
                        if event.delivered_text:
                            print(flush=True)
                        return event.error
        except SwitchyardError as error:
            return error
    return None


def _row(actor: Mapping[str, Any]) -> str:
    breaker = actor.get("breaker")
    state = breaker.get("state", "-") if isinstance(breaker, Mapping) else "-"
    return (
        f"{actor.get('name', '?')!s:14} {actor.get('state', '?')!s:11} {state!s:9} "
        f"{actor.get('restarts', 0)!s:>8} {actor.get('in_flight', 0)!s:>9} "
        f"{actor.get('successes', 0)!s:>7}"
    )


def health_command(url: str) -> int:
    target = url.rstrip("/") + "/health"
    try:
        response = httpx2.get(target, timeout=10.0)
    except httpx2.HTTPError as error:
        print(f"switchyard: cannot reach {url}: {error or type(error).__name__}", file=sys.stderr)
        return 1
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("actors"), list):
        print(
            f"switchyard: {target} did not answer a health document ({response.status_code})",
            file=sys.stderr,
        )
        return 1
    serving = document.get("serving")
    print(f"{url}: {document.get('state')}, serving={serving}")
    print(f"{'actor':14} {'state':11} {'breaker':9} {'restarts':>8} {'in flight':>9} {'ok':>7}")
    for actor in document["actors"]:
        if isinstance(actor, Mapping):
            print(_row(actor))
    return 0 if response.status_code == 200 else 1
