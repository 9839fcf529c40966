"""``python -m logic walk``: a video that travels from one prompt to the next."""

from __future__ import annotations

import argparse

from ..settings import defaults
from ..engines.walk import EASING_ALIASES, EASINGS
from . import add_artist_arguments, add_common_arguments, artist_params
from .diffusion import add_sd_arguments, sd_params
from .progress import run_in_foreground


def register(subparsers) -> None:
    d = defaults("walk")
    parser = subparsers.add_parser("walk", help="prompt walk: interpolate between prompts into a video",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--prompt", "-p", action="append", required=True,
                        help="a keyframe prompt; give two or more, in order")
    parser.add_argument("--seed", type=int, action="append", default=None,
                        help="one seed for all prompts, or one per prompt (repeat); random when unset")
    parser.add_argument("--frames", type=int, default=d.get("frames"), help="frames per segment")
    parser.add_argument("--easing", default=d.get("easing"), choices=[*EASINGS, *EASING_ALIASES],
                        help="slow-middle: smaller steps where the prompts meet; slow-ends: smaller steps "
                             "near the keyframes (ease-in-out is its old name)")
    parser.add_argument("--gif", action="store_true", default=d.get("gif", False), help="also write anim.gif")
    add_sd_arguments(parser, d)
    add_artist_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(handler=run_walk)


def spec_params(args) -> dict:
    return {**sd_params(args), "prompts": list(args.prompt), "seeds": args.seed, "frames": args.frames,
            "easing": args.easing, "gif": args.gif, **artist_params(args)}


def run_walk(args) -> int:
    return run_in_foreground("walk", spec_params(args), args)
