"""Fixtures for the gateway tests: the emulator behind a real gateway on loopback, and the
official openai SDK as the client."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import msgspec
import openai
import pytest
import trio

from runtime._embedded import EMULATED_KEYS, emulated_settings
from runtime._serve import serve_gateway
from runtime._settings import Settings
from runtime.emulator import EmulatorHandle, serve_emulator

HI = [{"role": "user", "content": "Tell me something about switchyards"}]
FAST_RETRY = {"base_s": 0.01, "cap_s": 0.05, "max_retries": 0, "max_rounds": 1}
"""No retries and one round: a failing provider fails over at once."""
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}
ROOT = Path(__file__).resolve().parents[2]


class GatewayUnderTest:
    """A gateway served by ``serve_gateway`` on an ephemeral port, over ``emu``."""

    def __init__(self, url: str, emu: EmulatorHandle, shutdown: trio.Event) -> None:
        self.url = url
        self.emu = emu
        self.shutdown = shutdown

    def client(self, api_key: str = "sk-client", **options: Any) -> openai.AsyncOpenAI:
        """An SDK client; the caller must ``await client.close()``."""
        return openai.AsyncOpenAI(
            base_url=self.url + "/v1", api_key=api_key, max_retries=0, **options
        )

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with httpx2.AsyncClient() as http:
            response = await http.get(self.url + "/health")
        return response.status_code, response.json()

    async def metrics(self) -> str:
        async with httpx2.AsyncClient() as http:
            response = await http.get(self.url + "/metrics")
        assert response.status_code == 200
        return response.text


def gateway_settings(
    base_url: str,
    *,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    **sections: Any,
) -> Settings:
    """Emulated settings on an ephemeral port with fast failover; ``providers`` changes
    fields of the named providers, ``sections`` replace whole sections."""
    sections["server"] = {"port": 0, **sections.get("server", {})}
    sections.setdefault("retry", FAST_RETRY)
    settings = emulated_settings(base_url, **sections)
    if providers:
        changed = [
            msgspec.structs.replace(p, **providers.get(p.name, {})) for p in settings.providers
        ]
        settings = msgspec.structs.replace(settings, providers=changed)
    return settings


StartGateway = Callable[..., Awaitable[GatewayUnderTest]]


@pytest.fixture
async def emu(nursery: trio.Nursery) -> EmulatorHandle:
    handle: EmulatorHandle = await nursery.start(serve_emulator)
    return handle


@pytest.fixture
def start_gateway(nursery: trio.Nursery, emu: EmulatorHandle) -> StartGateway:
    """``await start_gateway(api_keys="k1,k2", env={...}, providers={...}, router={...})``."""

    async def start(
        *,
        api_keys: str | None = None,
        env: Mapping[str, str] | None = None,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        **sections: Any,
    ) -> GatewayUnderTest:
        settings = gateway_settings(emu.base_url, providers=providers, **sections)
        environment = dict(EMULATED_KEYS if env is None else env)
        if api_keys is not None:
            environment["SWITCHYARD_API_KEYS"] = api_keys
        shutdown = trio.Event()
        url: str = await nursery.start(
            partial(serve_gateway, settings, env=environment, shutdown=shutdown)
        )
        return GatewayUnderTest(url, emu, shutdown)

    return start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> GatewayUnderTest:
    return await start_gateway(aliases={"fast": "gpt-4o-mini", "smart": "anthropic"})


@pytest.fixture
async def client(gateway: GatewayUnderTest) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = gateway.client()
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest.fixture
def settings_for(emu: EmulatorHandle) -> Callable[..., Settings]:
    """``gateway_settings`` on this test's emulator."""
    return partial(gateway_settings, emu.base_url)


# --- subprocesses ---------------------------------------------------------------------------


def switchyard_command() -> list[str]:
    """The installed ``switchyard`` console script (next to this interpreter)."""
    script = shutil.which("switchyard", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "runtime._cli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHYARD_")}
    for name in EMULATED_KEYS:
        env.pop(name, None)
    env.update(extra)
    return env


async def run_switchyard(
    *args: str, env: Mapping[str, str] | None = None, within: float = 60
) -> tuple[int, str, str]:
    """Run ``switchyard ARGS`` to completion: (exit code, stdout, stderr)."""
    with trio.fail_after(within):
        done = await trio.run_process(
            [*switchyard_command(), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=dict(env or subprocess_env()),
            cwd=ROOT,
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


class Process:
    """A background process whose output goes to a file we can poll."""

    def __init__(self, process: trio.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(
        cls, command: list[str], log: Path, env: Mapping[str, str] | None = None
    ) -> Process:
        with log.open("wb") as out:
            process = await trio.lowlevel.open_process(
                command,
                stdout=out,
                stderr=out,
                env=dict(env or subprocess_env()),
                cwd=ROOT,
            )
        return cls(process, log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, within: float = 30) -> re.Match[str]:
        """Wait until the output matches ``pattern``."""
        with trio.fail_after(within):
            while True:
                found = re.search(pattern, self.output())
                if found:
                    return found
                if self.process.poll() is not None:
                    raise AssertionError(f"exited {self.process.returncode}:\n{self.output()}")
                await trio.sleep(0.05)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, within: float) -> int:
        with trio.fail_after(within):
            return await self.process.wait()

    async def stop(self) -> None:
        """Make sure it is gone (used in ``finally``)."""
        if self.process.poll() is None:
            self.process.kill()
        with trio.move_on_after(10):
            await self.process.wait()


@pytest.fixture
async def emulator_process(tmp_path: Path) -> AsyncIterator[tuple[Process, str]]:
    """``python -m runtime.emulator --port 0`` and its base URL."""
    process = await Process.start(
        [sys.executable, "-m", "runtime.emulator", "--port", "0"], tmp_path / "emulator.log"
    )
    try:
        found = await process.wait_for(r"listening on (http://\S+)")
        yield process, found.group(1)
    finally:
        process.terminate()
        await process.stop()


@pytest.fixture
def switchyard() -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """``await switchyard("chat", "hi", env=...)``: (exit code, stdout, stderr)."""
    return run_switchyard


@pytest.fixture
def switchyard_env() -> SimpleNamespace:
    """``.command``: how to run ``switchyard``; ``.env``: a clean environment (no API keys)."""
    return SimpleNamespace(command=switchyard_command(), env=subprocess_env())


@pytest.fixture
def spawn() -> Callable[..., Awaitable[Process]]:
    """``await spawn(command, log_path, env=None)``: a background ``Process``."""
    return Process.start
