"""Stable Diffusion: txt2img and img2img with diffusers pipelines (Rombach et al. 2022, latent diffusion).

Each image of a batch has its own seed (``seed + index``, recorded) drawn from its own CPU
``torch.Generator``, so image *i* of a batch is the image a single run with that seed makes, on any
device. Previews come every ``preview_every`` steps from the latents: through a tiny decoder (TAESD, a
diffusers ``AutoencoderTiny``) when one is installed, else through a fixed linear map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .. import settings
from ..a1111 import extras as a1111_extras, metadata as a1111_metadata
from ..a1111.run_prompts import encode_run_prompts  # A1111 prompt syntax (issue 13)
from ..errors import UserError
from ..media import open_user_image, save_png
from ..models.diffusion import SdModels
from . import sd_common as common
from .base import Progress, Result, RunContext, check_finite, check_fps, keep_input

MODE = "diffusion"
TITLE = "Stable Diffusion"


@dataclass
class DiffusionSpec:
    """Everything that defines a Stable Diffusion run (and reruns it)."""

    prompt: str
    negative: str = ""
    model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    lora: list[str] = field(default_factory=list)
    init_image: str | None = None
    strength: float = 0.75
    steps: int = 25
    cfg: float = 7.0
    size: list[int] = field(default_factory=lambda: [512, 512])
    seed: int | None = None
    batch_size: int = 1
    batch_count: int = 1
    scheduler: str = "DPM++ 2M Karras"
    clip_skip: int = 1             # A1111's "Clip skip": 2 = the text encoder's penultimate layer
    vae: str | None = None         # a single-file VAE in assets/vae/ replacing the model's own
    preview_every: int = 1
    preview_decoder: str | None = "taesd"   # AutoencoderTiny folder (assets/models/ or a path); else linear
    fps: float = 10.0
    precision: str = "auto"
    memory: str = "auto"
    safety: bool = True
    match_artist: bool = False     # rewrite the prompt in the style of the closest artist
    artist: str | None = None      # the artist the user picked (else the best match)
    demo: bool = False
    size_requested: list[int] | None = None

    def to_params(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def seeds(self) -> list[int]:
        """One seed per image, in order: batch after batch."""
        return [(self.seed + i) % (common.MAX_SEED + 1) for i in range(self.batch_size * self.batch_count)]


# 1. Check inputs ---------------------------------------------------------------------------------

def build_spec(params: dict) -> DiffusionSpec:
    """Defaults from defaults.yaml, then ``params``; every value checked with one clear sentence."""
    merged = {**settings.defaults(MODE), **{k: v for k, v in params.items() if v is not None}}
    known = {f.name for f in dataclasses.fields(DiffusionSpec)}
    spec = DiffusionSpec(**{k: v for k, v in merged.items() if k in known})
    if not str(spec.prompt).strip():
        raise UserError("The prompt is empty: type what the image should show, e.g. \"a red fox in the snow\".")
    check_finite(spec)
    common.check_common(spec)
    check_fps(spec.fps)
    spec = common.check_size(spec)
    for name in ("batch_size", "batch_count"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
            raise UserError(f"The {name.replace('_', ' ')} must be a whole number from 1 to 64, not {value}.")
    if isinstance(spec.preview_every, bool) or not isinstance(spec.preview_every, int) or spec.preview_every < 0:
        raise UserError(f"--preview-every must be 0 (no previews) or a number of steps, not {spec.preview_every}.")
    common.find_preview_decoder(spec.preview_decoder)
    if spec.init_image:
        _check_init(spec)
    spec.seed = common.check_seed(spec.seed)
    common.check_model(spec)
    return spec


def _check_init(spec: DiffusionSpec) -> None:
    open_user_image(spec.init_image, "init image")
    if not isinstance(spec.strength, (int, float)) or not 0 < spec.strength <= 1:
        raise UserError(f"The strength must be above 0 and at most 1 (how much of the init image is redrawn), "
                        f"not {spec.strength}.")
    if int(spec.steps * spec.strength) < 1:
        raise UserError(f"With strength {spec.strength} and {spec.steps} steps no denoising step would run: "
                        "raise the strength or the steps.")


# 2. Load models ----------------------------------------------------------------------------------

model_key = common.model_key
load_models = common.load_models


# 3. Adjust to the models -------------------------------------------------------------------------

prepare = common.prepare


def describe(spec: DiffusionSpec, models: SdModels) -> dict:
    return {**common.describe_model(spec, models), "seed": spec.seed, "seeds": spec.seeds, "size": spec.size,
            "prompt_used": spec.prompt, "negative_used": spec.negative, "sampler": spec.scheduler,
            "kind": "img2img" if spec.init_image else "txt2img",
            "preview": common.preview_method(spec, common.find_preview_decoder(spec.preview_decoder)),
            "safety_checker": common.safety_status(models.safety_checker, spec.safety)}


# 4. Generate -------------------------------------------------------------------------------------

def generate(spec: DiffusionSpec, models: SdModels, ctx: RunContext) -> Iterator[Progress | Result]:
    # 4.1 Sampler and pipeline (img2img when an init image is given)
    common.use_scheduler(models, spec.scheduler)
    init = _store_init_image(spec, ctx) if spec.init_image else None
    pipe = models.img2img if init is not None else models.pipe
    # A1111 syntax: weights, BREAK, 75-token chunks, embeddings; <lora:> tags left out (logic/a1111)
    prompts = encode_run_prompts(pipe, [spec.prompt], spec.negative, spec.clip_skip)
    decoder = common.preview_decoder(models, common.find_preview_decoder(spec.preview_decoder)) \
        if spec.preview_every else None
    # 4.2 Batches, each image with its own generator
    seeds, images, done, total = spec.seeds, [], 0, spec.steps * spec.batch_count
    for batch in range(spec.batch_count):
        if ctx.stopped and images:
            break
        batch_seeds = seeds[batch * spec.batch_size:(batch + 1) * spec.batch_size]
        output = None
        for event in common.stream_pipeline(pipe, _call_kwargs(spec, batch_seeds, init, prompts.kwargs()), ctx,
                                            lambda step: _wants_preview(spec, step)):
            if isinstance(event, common.StepEvent):
                total = event.total * spec.batch_count
                preview = common.latents_to_preview(event.latents, tuple(spec.size), decoder) \
                    if event.latents is not None else None
                yield Progress(done + event.step, total, image=preview, frame=preview is not None,
                               message=f"Batch {batch + 1} of {spec.batch_count}" if spec.batch_count > 1 else "")
            else:
                output = event
        done = (batch + 1) * total // spec.batch_count
        images.extend(output.images)
    # 4.3 Safety, files, parameters
    yield from _finish(spec, models, ctx, images, done, total, prompts.record)


def _wants_preview(spec: DiffusionSpec, step: int) -> bool:
    return spec.preview_every > 0 and step % spec.preview_every == 0


def _call_kwargs(spec: DiffusionSpec, seeds: list[int], init, embeds: dict) -> dict:
    kwargs = dict(**embeds, num_inference_steps=spec.steps,
                  guidance_scale=float(spec.cfg), num_images_per_prompt=len(seeds),
                  generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pil")
    if init is not None:
        kwargs.update(image=init, strength=float(spec.strength))
    else:
        kwargs.update(width=spec.size[0], height=spec.size[1])
    return kwargs


def keep_inputs(spec: DiffusionSpec, folder) -> DiffusionSpec:
    """Copy the init image into inputs/ as given; the spec then points at the copy."""
    if not spec.init_image:
        return spec
    return dataclasses.replace(spec, init_image=keep_input(spec.init_image, folder, "init-image"))


def _store_init_image(spec: DiffusionSpec, ctx: RunContext):
    """The init image (already kept in inputs/), fitted to the run's size."""
    from PIL import Image

    return open_user_image(spec.init_image, "init image").resize(tuple(spec.size), Image.LANCZOS)


def _finish(spec: DiffusionSpec, models: SdModels, ctx: RunContext, images, step: int,
            total: int, encoding: dict) -> Iterator[Progress | Result]:
    if not images:
        return
    seeds = spec.seeds[:len(images)]
    images, notes = common.apply_safety(images, seeds, models.safety_checker, spec.safety)
    records = []
    for index, (image, seed) in enumerate(zip(images, seeds)):
        name = f"image-{index + 1:02d}-{seed}.png"
        if len(images) > 1:
            save_png(image, ctx.run_dir / name, parameters(spec, models, seed, encoding))
        records.append({"file": name if len(images) > 1 else "output.png", "seed": seed,
                        "safety_replaced": any(f"(seed {seed})" in n for n in notes)})
    extra = {"grid.png": common.make_grid(images)} if len(images) > 1 else {}
    yield Progress(step, total, image=images[0], frame=True)  # the finished image ends the video
    details = {"images": records, "safety": " ".join(notes) or None, "prompt_encoding": encoding}
    if spec.size_requested:
        details["size_note"] = (f"The size {spec.size_requested[0]}x{spec.size_requested[1]} was rounded to "
                                f"{spec.size[0]}x{spec.size[1]} (Stable Diffusion needs multiples of 8).")
    yield Result([images[0]], details=details, parameters=parameters(spec, models, seeds[0], encoding), extra_files=extra)


def parameters(spec: DiffusionSpec, models: SdModels, seed: int, encoding: dict | None = None) -> str:
    """The 'parameters' text other tools read (A1111's form and field names, logic/a1111)."""
    fields = {"Steps": spec.steps, "Sampler": spec.scheduler, "CFG scale": spec.cfg, "Seed": seed,
              "Size": f"{spec.size[0]}x{spec.size[1]}",
              "Denoising strength": spec.strength if spec.init_image else None,
              **a1111_extras.sd_fields(spec, models, encoding)}
    return a1111_metadata.format_parameters(spec.prompt, spec.negative, fields)
