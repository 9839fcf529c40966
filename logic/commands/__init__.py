"""CLI commands. Each module defines ``register(subparsers)`` that adds one sub-command whose
parser has ``handler=fn(args) -> int`` as a default; ``logic.__main__`` wires them together."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import UserError

COMMAND_MODULES = ["models", "vqgan", "diffusion", "walk", "upscale", "rerun", "artists", "convert",
                   "queue", "serve"]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every generating command takes."""
    parser.add_argument("--demo", action="store_true",
                        help="use the small random-initialised demo models (no downloads needed)")
    parser.add_argument("--output", metavar="DIR", help="folder for run folders (default: output/)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--queue", action="store_true",
                        help="only queue the run (a worker runs it) and print its folder")


def add_artist_arguments(parser: argparse.ArgumentParser) -> None:
    """--match-artist and --artist, for engines whose prompt can be rewritten in an artist's style."""
    parser.add_argument("--match-artist", action="store_true",
                        help="rewrite the prompt 'in the style of' the closest artist in assets/artists")
    parser.add_argument("--artist", metavar="NAME", help="with --match-artist: use this artist instead of the best match")


def artist_params(args: argparse.Namespace) -> dict:
    return {"match_artist": bool(args.match_artist or args.artist), "artist": args.artist}


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
