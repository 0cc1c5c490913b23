"""Command line: ``python -m runtime.emulator [--host H] [--port P] [--config FILE]``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from ._config import EmulatorConfig
from ._server import EmulatorHandle, serve_emulator

DEFAULT_PORT = 8765


def build_parser(prog: str = "python -m runtime.emulator") -> argparse.ArgumentParser:
    """The argument parser (reused by the project's ``switchyard emulator``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve emulated OpenAI, Anthropic and Gemini APIs on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port, 0 = ephemeral ({DEFAULT_PORT})"
    )
    parser.add_argument("--config", metavar="FILE.json", help="EmulatorConfig as JSON")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


async def _serve(config: EmulatorConfig, host: str, port: int, access_log: bool) -> None:
    async with trio.open_nursery() as nursery:
        handle: EmulatorHandle = await nursery.start(
            partial(serve_emulator, config, host=host, port=port, access_log=access_log)
        )
        print(f"Switchyard emulator listening on {handle.base_url}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m runtime.emulator") -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    try:
        config = EmulatorConfig.load(args.config) if args.config else EmulatorConfig()
    except (OSError, ValueError) as exc:
        print(f"emulator: cannot load config: {exc}", file=sys.stderr)
        return 2
    trio.run(_serve, config, args.host, args.port, args.access_log)
    return 0
