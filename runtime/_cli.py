"""The ``switchyard`` command: demo, serve, chat, health and emulator."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchyard", description="One interface over OpenAI, Anthropic and Gemini."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the demo on the embedded emulator (no keys, no network)"
    )
    demo.add_argument("--seed", type=int, default=1, help="seed for the workload and faults")
    demo.add_argument("--requests", type=int, default=600, help="how many requests to send")

    serve = commands.add_parser("serve", help="run the OpenAI-compatible gateway")
    serve.add_argument("--config", required=True, metavar="FILE", help="TOML configuration")

    chat = commands.add_parser("chat", help="send one prompt and print the answer")
    chat.add_argument("prompt")
    chat.add_argument("--config", metavar="FILE", help="TOML configuration (default: emulator)")
    chat.add_argument("--stream", action="store_true", help="print the answer as it streams")
    chat.add_argument("--model", default=None, help="a model name or alias (default: any)")

    health = commands.add_parser("health", help="show a running gateway's actor health")
    health.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway's base URL")

    emulator = commands.add_parser("emulator", help="run the provider API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=9000)
    emulator.add_argument("--config", metavar="FILE.json", help="emulator configuration")
    emulator.add_argument(
        "--server",
        help="hypercorn-trio (default) or uvicorn (cheaper per request; needs the bench extra)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    match args.command:
        case "demo":
            from ._demo import run_demo

            return run_demo(seed=args.seed, requests=args.requests)
        case "serve":
            from ._commands import serve_command

            return serve_command(args.config)
        case "chat":
            from ._commands import chat_command

            return chat_command(
                args.prompt, config=args.config, stream=args.stream, model=args.model
            )
        case "health":
            from ._commands import health_command

            return health_command(args.url)
        case "emulator":
            from .emulator._cli import main as emulator_main

            forwarded = ["--host", args.host, "--port", str(args.port)]
            if args.config:
                forwarded += ["--config", args.config]
            if args.server:  # checked by the emulator's own parser
                forwarded += ["--server", args.server]
            return emulator_main(forwarded)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
