"""``python -m logic diffusion``: Stable Diffusion txt2img / img2img / inpaint / hires fix, every family."""

from __future__ import annotations

import argparse
import logging

from ..errors import UserError
from ..settings import defaults
from . import add_artist_arguments, add_common_arguments, artist_params
from .progress import run_in_foreground

log = logging.getLogger(__name__)


def add_sd_arguments(parser: argparse.ArgumentParser, d: dict) -> None:
    """Options both Stable Diffusion commands (diffusion, walk) take."""
    parser.add_argument("--negative", "-n", default=d.get("negative"), help="negative prompt")
    parser.add_argument("--model", "-m", default=d.get("model"),
                        help="hub id, diffusers folder, or .safetensors/.ckpt in assets/models/ "
                             "(SD 1.x, 2.x, SDXL, SD 3.5, Flux: detected)")
    parser.add_argument("--lora", action="append", metavar="PATH[:W]", default=None,
                        help="LoRA file (assets/loras/) with optional weight; repeat for several "
                             "(or write <lora:NAME:W> in the prompt, as in A1111)")
    parser.add_argument("--clip-skip", type=int, default=d.get("clip_skip", 1),
                        help="A1111's Clip skip: 2 takes the text encoder's penultimate layer")
    parser.add_argument("--vae", default=d.get("vae"), metavar="NAME",
                        help="a single-file VAE in assets/vae/ used instead of the model's own")
    parser.add_argument("--steps", type=int, default=d.get("steps"))
    parser.add_argument("--cfg", type=float, default=d.get("cfg"), help="classifier-free guidance scale")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=d.get("size"),
                        help="multiples of 8 (others are rounded and recorded)")
    parser.add_argument("--scheduler", "--sampler", default=d.get("scheduler"),
                        help='"Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "LMS", …')
    parser.add_argument("--precision", default=d.get("precision"), choices=["auto", "fp16", "bf16", "fp32"])
    parser.add_argument("--memory", default=d.get("memory"), choices=["auto", "fast", "balanced", "low", "minimal"],
                        help="auto: from free VRAM and the model family; balanced: attention slicing + VAE tiling; "
                             "low: also model CPU offload; minimal: sequential offload")
    parser.add_argument("--no-safety", dest="safety", action="store_false", default=d.get("safety", True),
                        help="turn the safety checker off")
    parser.add_argument("--fps", type=float, default=d.get("fps"), help="video frames per second")


def sd_params(args) -> dict:
    return {"negative": args.negative, "model": args.model, "lora": args.lora, "steps": args.steps,
            "cfg": args.cfg, "size": list(args.size), "scheduler": args.scheduler, "precision": args.precision,
            "memory": args.memory, "safety": args.safety, "fps": args.fps, "demo": args.demo,
            "clip_skip": args.clip_skip, "vae": args.vae}


def register(subparsers) -> None:
    d = defaults("diffusion")
    parser = subparsers.add_parser("diffusion", help="Stable Diffusion: txt2img and img2img",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--prompt", "-p", help="what the image should show (A1111 syntax: (word:1.2), [word], "
                                               "BREAK, <lora:NAME:W>, embedding file names)")
    parser.add_argument("--from-image", metavar="FILE",
                        help="take the settings from an image's parameters (Atelier, A1111, Forge, Civitai); "
                             "options given on the command line override them")
    parser.add_argument("--task", choices=["txt2img", "img2img", "inpaint", "hires"], default=d.get("task"),
                        help="default: inpaint with --mask, img2img with --init-image, else txt2img")
    parser.add_argument("--init-image", metavar="FILE", help="img2img / inpaint: start from this image")
    parser.add_argument("--strength", "--denoising-strength", type=float, default=d.get("strength"),
                        help="img2img / inpaint: how much of the image is redrawn (0-1]")
    inpaint = parser.add_argument_group("inpaint")
    inpaint.add_argument("--mask", metavar="FILE", help="white = repaint (black/transparent = keep)")
    inpaint.add_argument("--mask-blur", type=int, default=d.get("mask_blur"), help="blur radius of the mask, pixels")
    inpaint.add_argument("--only-masked", dest="inpaint_only_masked", action="store_true",
                         default=d.get("inpaint_only_masked", False),
                         help="inpaint only the mask's box at the full size, then paste it back")
    inpaint.add_argument("--padding", dest="inpaint_padding", type=int, default=d.get("inpaint_padding"),
                         help="only masked: pixels around the mask's box")
    hires = parser.add_argument_group("hires fix")
    hires.add_argument("--hires", action="store_true", help="generate, upscale, then redraw (same as --task hires)")
    hires.add_argument("--hires-scale", type=float, default=d.get("hires_scale"), help="upscale factor")
    hires.add_argument("--hires-upscaler", default=d.get("hires_upscaler"),
                       help="Lanczos, or an upscaler file in assets/upscalers/")
    hires.add_argument("--hires-steps", type=int, default=d.get("hires_steps"), help="0: as many as --steps")
    hires.add_argument("--hires-strength", type=float, default=d.get("hires_strength"),
                       help="denoising strength of the second pass")
    parser.add_argument("--seed", type=int, default=None, help="random when unset; image i of a batch uses seed+i")
    parser.add_argument("--batch-size", type=int, default=d.get("batch_size"), help="images per pipeline call")
    parser.add_argument("--batch-count", type=int, default=d.get("batch_count"), help="pipeline calls")
    parser.add_argument("--preview-every", type=int, default=d.get("preview_every"),
                        help="a preview and video frame every N steps (0: none)")
    add_sd_arguments(parser, d)
    add_artist_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(handler=run_diffusion, parser=parser)


def spec_params(args) -> dict:
    return {**sd_params(args), "prompt": args.prompt, "init_image": args.init_image, "strength": args.strength,
            "task": "hires" if args.hires else args.task, "mask": args.mask, "mask_blur": args.mask_blur,
            "inpaint_only_masked": args.inpaint_only_masked, "inpaint_padding": args.inpaint_padding,
            "hires_scale": args.hires_scale, "hires_upscaler": args.hires_upscaler, "hires_steps": args.hires_steps,
            "hires_strength": args.hires_strength,
            "seed": args.seed, "batch_size": args.batch_size, "batch_count": args.batch_count,
            "preview_every": args.preview_every, **artist_params(args)}


def run_diffusion(args) -> int:
    params = spec_params(args)
    if args.from_image:
        params = params_from_image(args, params)
    elif not args.prompt:
        raise UserError("Give a prompt with --prompt (or the settings of an image with --from-image FILE).")
    return run_in_foreground("diffusion", params, args)


def params_from_image(args, params: dict) -> dict:
    """The image's settings, then every option that differs from its default (the overrides)."""
    from ..a1111.from_image import settings_from_image

    image = settings_from_image(args.from_image)
    defaults_given = spec_params(args.parser.parse_args([]))
    overrides = {k: v for k, v in params.items() if v != defaults_given.get(k)}
    for note in image.notes:
        log.warning("%s", note)
    if image.unknown:
        log.warning("Not used from %s: %s", args.from_image, ", ".join(f"{k}: {v}" for k, v in image.unknown.items()))
    return {**params, **image.params, **overrides}
