"""``python -m logic``: every engine headless, writing the same run folders as the app."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .commands import COMMAND_MODULES, run_handler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m logic", description="Atelier from the command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(subparsers)
    return parser


def _own_or_critical(record: logging.LogRecord) -> bool:
    return record.name.startswith("logic") or record.levelno >= logging.CRITICAL


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # Libraries log their own view of a failure (hub retries, download errors) before ours: the
        # person gets our one sentence; --verbose shows everything.
        for handler in logging.getLogger().handlers:
            handler.addFilter(_own_or_critical)
    if args.verbose:
        args.handler_verbose = True
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
