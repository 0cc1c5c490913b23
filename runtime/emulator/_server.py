"""Serving the emulator with hypercorn's trio worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypercorn.typing import Framework

from ._app import Emulator
from ._config import EmulatorConfig, Provider
from ._faults import FaultSpec
from ._record import RecordedRequest

SHUTDOWN_GRACE = 2.0
"""Seconds in-flight requests get to finish when the server is cancelled."""


def http_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` (no trailing slash, no API version; an IPv6 host bracketed)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class EmulatorHandle:
    """A running emulator: its address plus the :class:`Emulator` Python API."""

    __slots__ = ("emulator", "host", "port")

    def __init__(self, emulator: Emulator, host: str, port: int) -> None:
        self.emulator = emulator
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash, no API version)."""
        return http_url(self.host, self.port)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Recorded requests, oldest first."""
        return self.emulator.requests

    def requests_for(self, provider: Provider) -> list[RecordedRequest]:
        """Recorded requests of one provider."""
        return self.emulator.requests_for(provider)

    def set_faults(
        self,
        provider: Provider | Literal["*"],
        spec: FaultSpec | str | Mapping[str, Any] | None,
    ) -> None:
        """Arm or (None) disarm a provider's standing fault."""
        self.emulator.set_faults(provider, spec)

    def set_limits(
        self,
        provider: Provider | Literal["*"],
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        window: float = 60.0,
    ) -> None:
        """Replace a provider's RPM/TPM limits."""
        self.emulator.set_limits(provider, rpm=rpm, tpm=tpm, window=window)

    def clear(self) -> None:
        """Forget recorded requests."""
        self.emulator.clear()

    def reset(self) -> None:
        """Back to the configured faults and limits; forget records and caches."""
        self.emulator.reset()


def hypercorn_config(host: str, port: int, *, access_log: bool = False) -> HypercornConfig:
    """The hypercorn settings the emulator runs with."""
    cfg = HypercornConfig()
    cfg.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    cfg.accesslog = "-" if access_log else None
    cfg.loglevel = "INFO" if access_log else "WARNING"
    cfg.graceful_timeout = SHUTDOWN_GRACE
    cfg.keep_alive_max_requests = 1_000_000
    cfg.include_server_header = False
    cfg.backlog = 1024
    return cfg


async def serve_emulator(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: bool = False,
    task_status: trio.TaskStatus[EmulatorHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an emulator until cancelled; ``task_status.started`` gets its handle.

    Use as ``emu = await nursery.start(serve_emulator, config)``. Port 0 binds
    an ephemeral port (see ``emu.port``). On cancellation hypercorn is asked
    to shut down and given :data:`SHUTDOWN_GRACE` seconds.
    """
    emulator = Emulator(config)
    app = cast(Framework, emulator)
    stop = trio.Event()
    done = trio.Event()
    shield = trio.CancelScope(shield=True)

    async def run(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        # Shielded so that hypercorn stops through its shutdown trigger rather
        # than by cancellation, letting in-flight responses finish.
        with shield:
            try:
                cfg = hypercorn_config(host, port, access_log=access_log)
                await serve(app, cfg, shutdown_trigger=stop.wait, task_status=task_status)
            finally:
                done.set()

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        bound_port = int(binds[0].rsplit(":", 1)[1])
        task_status.started(EmulatorHandle(emulator, host, bound_port))
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_GRACE + 1):
                await done.wait()
            shield.shield = False
            shield.cancel()
