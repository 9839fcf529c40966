"""``python -m logic upscale IMAGE|RUN_DIR``: upscale an image or a run's image (Lanczos or an upscaler model)."""

from __future__ import annotations

import argparse

from ..settings import defaults
from . import add_common_arguments
from .progress import run_in_foreground


def register(subparsers) -> None:
    d = defaults("upscale")
    parser = subparsers.add_parser("upscale", help="upscale an image or a run's output (Lanczos or ESRGAN-style models)",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("image", help="an image file, or a run folder (its output.png)")
    parser.add_argument("--scale", type=float, default=d.get("scale"), help="upscale factor")
    parser.add_argument("--upscaler", default=d.get("upscaler"), help="Lanczos, or a file in assets/upscalers/")
    add_common_arguments(parser)
    parser.set_defaults(handler=run_upscale)


def run_upscale(args) -> int:
    return run_in_foreground("upscale", {"image": args.image, "scale": args.scale, "upscaler": args.upscaler}, args)
