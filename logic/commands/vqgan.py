"""``python -m logic vqgan``: a VQGAN+CLIP run.

Options left out are None here and filled by ``build_spec`` from defaults.yaml (or, with
``--continue``, from the continued run), so the CLI, the app and reruns share one set of defaults.
"""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..settings import defaults
from ..vqgan.cutouts import AUGMENTS, CUT_METHODS
from ..vqgan.optimisers import OPTIMISERS
from ..vqgan.starts import INIT_NOISES
from . import add_artist_arguments, add_common_arguments, artist_params
from .progress import run_in_foreground

# flag dest -> spec field, for the options passed through unchanged
PASSED_THROUGH = (
    "prompt", "steps", "seed", "vqgan", "clip", "clip_weights", "cutn", "cut_pow", "cut_method", "augment",
    "lr", "optimiser", "init_image", "init_noise", "story_every", "mse_weight", "mse_decay",
    "mse_decay_every", "tv_weight", "zoom", "rotate", "translate_x", "translate_y", "animate_every",
    "every", "fps", "precision",
)


def register(subparsers) -> None:
    d = defaults("vqgan")

    def default(key: str) -> str:
        return f" (default: {d.get(key)})"

    parser = subparsers.add_parser("vqgan", help="VQGAN+CLIP: optimise an image toward text and image prompts")
    parser.add_argument("--prompt", "-p",
                        help='prompts as "text:weight:stop | text:weight" (negative weights push away); '
                             'stages separated by "^" change every --story-every steps')
    parser.add_argument("--steps", type=int, help="iterations; -1 runs until stopped" + default("steps"))
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"),
                        help="rounded to the model factor" + default("size"))
    parser.add_argument("--seed", type=int, help="random when unset; always recorded")
    models = parser.add_argument_group("models")
    models.add_argument("--vqgan", help="a model name in assets/ or a path stem" + default("vqgan"))
    models.add_argument("--clip", help="open_clip model[:pretrained tag]" + default("clip"))
    models.add_argument("--clip-weights", metavar="FILE", help="a local CLIP weights file")
    start = parser.add_argument_group("targets and start")
    start.add_argument("--image-prompt", action="append", metavar="PATH[:WEIGHT[:STOP]]", dest="image_prompts",
                       help="an image the result should resemble (repeatable)")
    start.add_argument("--noise-prompt", action="append", metavar="SEED[:WEIGHT]", dest="noise_prompts",
                       help="a random CLIP target drawn by its seed, as in the notebook (repeatable)")
    start.add_argument("--init-image", metavar="PATH", help="start from this image (resized to the run size)")
    start.add_argument("--init-noise", choices=INIT_NOISES, help="start without an image" + default("init_noise"))
    start.add_argument("--continue", dest="continue_from", metavar="RUN_DIR",
                       help="go on from a run's latent and optimiser state (its settings are the defaults)")
    start.add_argument("--story-every", type=int, help="steps per prompt stage" + default("story_every"))
    loss = parser.add_argument_group("losses and optimiser")
    loss.add_argument("--optimiser", "--optimizer",
                      help=f"one of {', '.join(OPTIMISERS)}" + default("optimiser"))
    loss.add_argument("--lr", type=float, help="learning rate" + default("lr"))
    loss.add_argument("--mse-weight", type=float, help="pull toward the start latent" + default("mse_weight"))
    loss.add_argument("--mse-decay", type=float, help="subtracted from the MSE weight" + default("mse_decay"))
    loss.add_argument("--mse-decay-every", type=int, help="steps between decays, 0 = none" + default("mse_decay_every"))
    loss.add_argument("--tv-weight", type=float, help="total-variation (smoothness) weight" + default("tv_weight"))
    cuts = parser.add_argument_group("cutouts")
    cuts.add_argument("--cutn", type=int, help="cutouts per step" + default("cutn"))
    cuts.add_argument("--cut-pow", type=float, help=default("cut_pow").strip(" ()"))
    cuts.add_argument("--cut-method", choices=CUT_METHODS, help=default("cut_method").strip(" ()"))
    cuts.add_argument("--augment", action=argparse.BooleanOptionalAction,
                      help="augment the cutouts (--aug list, then noise)" + default("augment"))
    cuts.add_argument("--aug", "--augments", nargs="+", dest="augments", metavar="CODE",
                      help="augmentations in order, as the VQGAN-CLIP generator's -aug: "
                           + ", ".join(f"{k} {v}" for k, v in AUGMENTS.items()) + default("augments"))
    anim = parser.add_argument_group("animation and video")
    anim.add_argument("--zoom", type=float, help="scale per frame, >1 zooms in" + default("zoom"))
    anim.add_argument("--rotate", type=float, help="degrees per frame" + default("rotate"))
    anim.add_argument("--translate-x", type=float, help="pixels per frame" + default("translate_x"))
    anim.add_argument("--translate-y", type=float, help="pixels per frame" + default("translate_y"))
    anim.add_argument("--animate-every", type=int, help="steps per animation frame, 0 = off" + default("animate_every"))
    anim.add_argument("--every", type=int, help="a video frame every N steps" + default("every"))
    anim.add_argument("--fps", type=float, help="video frames per second" + default("fps"))
    anim.add_argument("--gif", action="store_true", default=None, help="also write anim.gif")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"),
                        help="mixed precision on CUDA" + default("precision"))
    add_artist_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(handler=run_vqgan)


def spec_params(args) -> dict:
    params = {key: getattr(args, key) for key in PASSED_THROUGH}
    params["size"] = list(args.size) if args.size else None
    params["image_prompts"] = args.image_prompts
    params["noise_prompts"] = args.noise_prompts
    params["augments"] = args.augments
    params["continue_from"] = args.continue_from
    params["gif"] = args.gif
    params["demo"] = True if args.demo else None  # unset: a continued run keeps its parent's models
    params.update(artist_params(args))
    return params


def run_vqgan(args) -> int:
    if not args.prompt and not args.continue_from:
        raise UserError("Give a prompt with --prompt (or continue a run with --continue RUN_DIR).")
    return run_in_foreground("vqgan", spec_params(args), args)
