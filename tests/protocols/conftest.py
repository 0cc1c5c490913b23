"""Fixtures for the wire-format tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _lifespan_answered(app: ASGIApp) -> ASGIApp:
    """``app`` with ASGI lifespan events acknowledged for it: the test apps speak HTTP only."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await app(scope, receive, send)

    return asgi


@pytest.fixture
def serve_app(nursery: trio.Nursery) -> Callable[..., Awaitable[str]]:
    """``await serve_app(app)`` serves an ASGI app with hypercorn on an ephemeral loopback
    port until the test ends, and gives its base URL; ``pem=`` (a certificate and its key
    in one file) serves it over HTTPS."""

    async def serve_app_(app: ASGIApp, *, pem: str | None = None) -> str:
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.loglevel = "WARNING"
        if pem is not None:
            config.certfile = config.keyfile = pem
        binds: list[str] = await nursery.start(serve, _lifespan_answered(app), config)
        return binds[0]

    return serve_app_
