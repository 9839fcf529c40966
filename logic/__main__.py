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
    restore_logging = _log_to_stderr(args.verbose)
    try:
        return run_handler(args)
    finally:
        restore_logging()


class _NoTracebackFormatter(logging.Formatter):
    """Without --verbose a log line is one line: tracebacks stay in the run's log.txt."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(record)


def _log_to_stderr(verbose: bool):
    """A stderr handler for this command, removed again when it ends (main may run in-process).

    Libraries log their own view of a failure (hub retries, download errors) before ours: without
    --verbose the person gets our one sentence only.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter if verbose else _NoTracebackFormatter
    handler.setFormatter(formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(_own_or_critical)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(level)

    return restore


if __name__ == "__main__":
    sys.exit(main())
