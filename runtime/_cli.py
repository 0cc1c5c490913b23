"""The ``switchyard`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="switchyard", description="One interface over OpenAI, Anthropic and Gemini."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo (no API keys, no network)")
    demo.add_argument("--seed", type=int, default=1, help="seed for failures and chaos")
    demo.add_argument("--requests", type=int, default=600, help="how many requests to send")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(seed=args.seed, requests=args.requests)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
