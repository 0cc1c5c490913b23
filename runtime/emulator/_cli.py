"""Command line: ``python -m runtime.emulator [--host H] [--port P] [--config FILE] [--server S]``.

``--server hypercorn-trio`` (the default) serves with hypercorn's trio worker, as the
tests do; ``--server uvicorn`` serves the same app with uvicorn, httptools and uvloop,
several times cheaper per request, for benchmarks (needs the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from ._config import EmulatorConfig
from ._server import EmulatorHandle, serve_emulator

DEFAULT_PORT = 8765
SERVERS = ("hypercorn-trio", "uvicorn")
UVICORN_MODULES = ("uvicorn", "uvloop", "httptools")
"""What ``--server uvicorn`` needs: the ``bench`` extra, imported only for it."""


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
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=SERVERS[0],
        help="hypercorn-trio (default) or uvicorn: uvicorn + httptools + uvloop, "
        "much cheaper per request, for benchmarks (needs the bench extra)",
    )
    return parser


async def _serve(config: EmulatorConfig, host: str, port: int, access_log: bool) -> None:
    async with trio.open_nursery() as nursery:
        handle: EmulatorHandle = await nursery.start(
            partial(serve_emulator, config, host=host, port=port, access_log=access_log)
        )
        _announce(handle.base_url)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


def _announce(url: str) -> None:
    """The line users (and tests) wait for, whichever server listens."""
    print(f"Switchyard emulator listening on {url}", flush=True)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m runtime.emulator") -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    try:
        config = EmulatorConfig.load(args.config) if args.config else EmulatorConfig()
    except (OSError, ValueError) as exc:
        print(f"emulator: cannot load config: {exc}", file=sys.stderr)
        return 2
    if args.server == "uvicorn":
        missing = [name for name in UVICORN_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            print(
                f"emulator: --server uvicorn needs {', '.join(missing)}: install the bench "
                "extra (pip install -e '.[bench]')",
                file=sys.stderr,
            )
            return 2
        from ._uvicorn import serve_uvicorn

        serve_uvicorn(
            config,
            host=args.host,
            port=args.port,
            access_log=args.access_log,
            on_listening=_announce,
        )
        return 0
    trio.run(_serve, config, args.host, args.port, args.access_log)
    return 0
