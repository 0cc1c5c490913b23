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

_CUT_MARGIN_S = 2.0
"""After the grace period, how long the requests cut short get to send their errors."""


def configure_logging(settings: LoggingSettings) -> None:
    level = getattr(logging, settings.level.upper())
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    if settings.format == "json":
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
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
    On shutdown the listening socket closes at once (new connections are refused), requests
    in flight get ``server.grace_period_s`` to finish, then the runtime closes.
    With ``handle_signals``, SIGTERM or SIGINT starts that shutdown; a second one cuts the
    grace period short.
    """
    env = os.environ if env is None else env
    if shutdown is None:
        shutdown = trio.Event()
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
    host = settings.server.host
    hypercorn.bind = [
        f"[{host}]:{settings.server.port}" if ":" in host else f"{host}:{settings.server.port}"
    ]
    hypercorn.accesslog = None
    hypercorn.loglevel = "WARNING"  # our own log says where we listen
    grace = settings.server.grace_period_s
    # At the end of the grace period the gateway cuts what is left, each request with an
    # error its client can read; hypercorn's own deadline only backs that up.
    hypercorn.graceful_timeout = grace + _CUT_MARGIN_S
    hypercorn.include_server_header = False
    async with open_runtime(specs, config=config) as runtime:
        gateway = Gateway(
            runtime,
            routes=build_routes(settings),
            api_keys=keys,
            max_body_bytes=settings.server.max_body_bytes,
            models=build_models(settings),
            provider_models={p.name: p.model for p in settings.providers},
        )
        app: Any = gateway  # hypercorn types ASGI messages as TypedDicts; ours are plain dicts
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as server:
                if handle_signals:
                    nursery.start_soon(_on_signals, shutdown, server.cancel_scope)
                nursery.start_soon(_cut_after_grace, shutdown, gateway, grace)
                binds = await server.start(
                    partial(hypercorn_serve, app, hypercorn, shutdown_trigger=shutdown.wait)
                )
                url = binds[0] if binds else f"http://{host}:{settings.server.port}"
                _log.info("serving", url=url, providers=list(runtime.provider_names))
                task_status.started(url)
            # hypercorn stopped accepting and drained its connections (up to the grace period).
            nursery.cancel_scope.cancel()
    _log.info("stopped")


async def _cut_after_grace(shutdown: trio.Event, gateway: Gateway, grace: float) -> None:
    await shutdown.wait()
    await trio.sleep(grace)
    _log.warning("grace_period_over", cut=gateway.in_flight)
    gateway.cut()


async def _on_signals(shutdown: trio.Event, server: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if not shutdown.is_set():
                _log.info("shutting_down", signal=signal.Signals(signum).name)
                shutdown.set()
            else:
                _log.warning("stopping_now", signal=signal.Signals(signum).name)
                server.cancel()
