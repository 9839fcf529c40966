"""``python -m logic vqgan``: a VQGAN+CLIP run."""

from __future__ import annotations

import argparse

from ..settings import defaults
from . import add_common_arguments
from .progress import run_in_foreground


def register(subparsers) -> None:
    d = defaults("vqgan")
    parser = subparsers.add_parser("vqgan", help="VQGAN+CLIP: optimise an image toward text prompts",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--prompt", "-p", required=True,
                        help='prompts as "text:weight:stop | text:weight" (negative weights push away)')
    parser.add_argument("--steps", type=int, default=d.get("steps"), help="iterations; -1 runs until stopped")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=d.get("size"))
    parser.add_argument("--seed", type=int, default=None, help="random when unset; always recorded")
    parser.add_argument("--vqgan", default=d.get("vqgan"), help="a model name in assets/ or a path stem")
    parser.add_argument("--clip", default=d.get("clip"), help="open_clip model[:pretrained tag]")
    parser.add_argument("--clip-weights", metavar="FILE", help="a local CLIP weights file")
    parser.add_argument("--cutn", type=int, default=d.get("cutn"), help="cutouts per step")
    parser.add_argument("--cut-pow", type=float, default=d.get("cut_pow"))
    parser.add_argument("--lr", type=float, default=d.get("lr"), help="learning rate")
    parser.add_argument("--every", type=int, default=d.get("every"), help="a video frame every N steps")
    parser.add_argument("--fps", type=float, default=d.get("fps"), help="video frames per second")
    add_common_arguments(parser)
    parser.set_defaults(handler=run_vqgan)


def spec_params(args) -> dict:
    return {
        "prompt": args.prompt, "steps": args.steps, "size": list(args.size), "seed": args.seed,
        "vqgan": args.vqgan, "clip": args.clip, "clip_weights": args.clip_weights, "cutn": args.cutn,
        "cut_pow": args.cut_pow, "lr": args.lr, "every": args.every, "fps": args.fps, "demo": args.demo,
    }


def run_vqgan(args) -> int:
    return run_in_foreground("vqgan", spec_params(args), args)
