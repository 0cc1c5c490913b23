"""``switchyard serve``: the gateway on hypercorn's trio worker, inside the runtime's nursery.

On SIGTERM or SIGINT the server stops accepting, lets requests in flight finish for the
grace period, closes the runtime, and returns (the command then exits 0).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping
from functools import partial
from typing import Any

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from ._build import (
    build_models,
    build_provider_specs,
    build_routes,
    build_runtime_config,
    missing_keys,
)
from ._gateway import Gateway
from ._runtime import open_runtime
from ._settings import LoggingSettings, Settings

__all__ = ["configure_logging", "serve_gateway"]

_log = structlog.get_logger("switchyard.serve")


def configure_logging(settings: LoggingSettings) -> None:
    level = getattr(logging, settings.level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def serve_gateway(
    settings: Settings,
    *,
    env: Mapping[str, str] | None = None,
    shutdown: trio.Event | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set (or a signal arrives, with ``handle_signals``).

    ``task_status.started`` receives the base URL actually bound (port 0 picks a free one).
    """
    env = os.environ if env is None else env
    shutdown = shutdown or trio.Event()
    for line in missing_keys(settings, env):
        _log.warning("missing_api_key", detail=line)
    keys = [k.strip() for k in env.get(settings.server.api_keys_env, "").split(",") if k.strip()]
    if not keys:
        _log.warning(
            "no_client_authentication",
            detail=f"{settings.server.api_keys_env} is not set: any client may use the gateway",
        )
    config = build_runtime_config(settings)
    specs = build_provider_specs(settings, env)
    hypercorn = HypercornConfig()
    hypercorn.bind = [f"{settings.server.host}:{settings.server.port}"]
    hypercorn.accesslog = None
    hypercorn.graceful_timeout = settings.server.grace_period_s
    async with open_runtime(specs, config=config) as runtime:
        gateway = Gateway(
            runtime,
            routes=build_routes(settings),
            api_keys=keys,
            max_body_bytes=settings.server.max_body_bytes,
            models=build_models(settings),
        )
        app: Any = gateway  # hypercorn types ASGI messages as TypedDicts; ours are plain dicts
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_on_signal, shutdown)
            async with trio.open_nursery() as server:
                binds = await server.start(
                    partial(hypercorn_serve, app, hypercorn, shutdown_trigger=shutdown.wait)
                )
                url = binds[0] if binds else f"http://{settings.server.host}:{settings.server.port}"
                _log.info("serving", url=url, providers=list(runtime.provider_names))
                task_status.started(url)
            # hypercorn stopped accepting and drained its connections (up to the grace period).
            nursery.cancel_scope.cancel()
        _log.info("stopped")


async def _on_signal(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            shutdown.set()
            return
