"""CLI commands. Each module defines ``register(subparsers)`` that adds one sub-command whose
parser has ``handler=fn(args) -> int`` as a default; ``logic.__main__`` wires them together."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import UserError

COMMAND_MODULES = ["models", "vqgan", "convert", "artists"]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every generating command takes."""
    parser.add_argument("--demo", action="store_true",
                        help="use the small random-initialised demo models (no downloads needed)")
    parser.add_argument("--output", metavar="DIR", help="folder for run folders (default: output/)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: auto)")


def fail(message: str, code: int = 2) -> int:
    """Print one sentence to stderr (no traceback) and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def run_handler(args: argparse.Namespace) -> int:
    try:
        return args.handler(args) or 0
    except UserError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("stopped.", 130)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence: a sentence, log has the rest
        logging.getLogger("logic").debug("unexpected error", exc_info=True)
        from ..errors import describe_failure
        return fail(describe_failure(exc) + " Run with --verbose for the traceback.", 1)
