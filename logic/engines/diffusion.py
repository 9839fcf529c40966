"""Stable Diffusion runs (Rombach et al. 2022, latent diffusion) for every model family and task.

The family (SD 1.x, 2.x, SDXL, SD 3.5, Flux: ``logic/models/sd/families/``) comes with the loaded
model; the task (txt2img, img2img, inpaint, hires fix: ``logic/engines/sd/tasks/``) is one module
that asks the model for its family's pipeline for that task. This module is the part they share:
checks, batches, progress and previews, safety, files and the 'parameters' text.

Each image of a batch has its own seed (``seed + index``, recorded) drawn from its own CPU
``torch.Generator``, so image *i* of a batch is the image a single run with that seed makes, on any
device. Previews come every ``preview_every`` steps from the latents: through a tiny decoder (TAESD, a
diffusers ``AutoencoderTiny``) when one is installed, else through a fixed linear map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterator


from .. import settings
from ..errors import UserError
from ..a1111 import extras as a1111_extras, metadata as a1111_metadata
from ..media import save_png
from ..models.diffusion import SdModels
from . import sd_common as common
from .base import Progress, Result, RunContext, check_finite, check_fps, keep_input
from .sd.tasks import get_task, infer_task

MODE = "diffusion"
TITLE = "Stable Diffusion"


@dataclass
class DiffusionSpec:
    """Everything that defines a Stable Diffusion run (and reruns it)."""

    prompt: str
    negative: str = ""
    model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    lora: list[str] = field(default_factory=list)
    task: str | None = None        # txt2img | img2img | inpaint | hires (None: from the inputs given)
    init_image: str | None = None
    strength: float = 0.75         # img2img / inpaint: how much is redrawn ("Denoising strength")
    mask: str | None = None        # inpaint: white = repaint
    mask_blur: int = 4
    inpaint_only_masked: bool = False   # A1111's "Only masked": inpaint the mask's box at full size
    inpaint_padding: int = 32
    hires_scale: float = 2.0
    hires_upscaler: str = "Lanczos"     # or an upscaler file in assets/upscalers/
    hires_steps: int = 0                # 0: as many as the first pass
    hires_strength: float = 0.5
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
        raise UserError(f"Preview every N steps must be 0 (no previews) or a number of steps, not {spec.preview_every}.")
    common.find_preview_decoder(spec.preview_decoder)
    spec.task = infer_task(spec)
    get_task(spec.task).check(spec)
    spec.seed = common.check_seed(spec.seed)
    common.check_model(spec)
    return spec


# 2. Load models ----------------------------------------------------------------------------------

model_key = common.model_key
load_models = common.load_models


# 3. Adjust to the models -------------------------------------------------------------------------

prepare = common.prepare


def describe(spec: DiffusionSpec, models: SdModels) -> dict:
    return {**common.describe_model(spec, models), "seed": spec.seed, "seeds": spec.seeds, "size": spec.size,
            "prompt_used": spec.prompt, "negative_used": _negative_used(spec, models),
            "sampler": common.sampler_for(spec.scheduler, models.pipe.scheduler.config),
            "task": spec.task, "kind": spec.task,
            "preview": common.preview_method(spec, common.find_preview_decoder(spec.preview_decoder)),
            "safety_checker": common.safety_status(models.safety_checker, spec.safety)}


# 4. Generate -------------------------------------------------------------------------------------

def generate(spec: DiffusionSpec, models: SdModels, ctx: RunContext) -> Iterator[Progress | Result]:
    # 4.1 Sampler, task, previews
    common.use_scheduler(models, spec.scheduler)
    task = get_task(spec.task)
    decoder = common.preview_decoder(models, common.find_preview_decoder(spec.preview_decoder)) \
        if spec.preview_every else None
    denoiser = Denoiser(spec, models, ctx, decoder, task.planned_steps(spec) * spec.batch_count)
    # The prompts, encoded once (A1111 syntax for CLIP families, logic/a1111): every task pipeline shares the encoders
    encoded, denoiser.encoding = common.encode_run(models.pipe, models.family, [spec.prompt], spec.negative,
                                                   spec.cfg, spec.clip_skip)
    denoiser.prompt_kwargs = encoded[0]
    # 4.2 Batches, each image with its own generator
    seeds, images = spec.seeds, []
    for batch in range(spec.batch_count):
        if ctx.stopped and images:
            break
        denoiser.batch = batch
        batch_seeds = seeds[batch * spec.batch_size:(batch + 1) * spec.batch_size]
        images.extend((yield from task.run(spec, models, denoiser, batch_seeds)))
    # 4.3 Safety, files, parameters
    yield from _finish(spec, models, ctx, images, denoiser.step, denoiser.total, denoiser.encoding)


class Denoiser:
    """Runs a task's pipeline calls as progress events: steps over the whole run, previews, stop."""

    def __init__(self, spec: DiffusionSpec, models: SdModels, ctx: RunContext, decoder, total: int):
        self.spec, self.models, self.ctx, self.decoder = spec, models, ctx, decoder
        self.total, self.step, self.batch, self.message = total, 0, 0, ""
        self.prompt_kwargs, self.encoding = {}, {}

    def note(self, message: str) -> None:
        self.message = message

    def call(self, pipe, kwargs: dict, size: tuple[int, int], planned: int):
        """``yield from`` this: the call's progress, then its images are returned."""
        spec, output, first = self.spec, None, True
        for event in common.stream_pipeline(pipe, kwargs, self.ctx, lambda step: _wants_preview(spec, step)):
            if not isinstance(event, common.StepEvent):
                output = event
                continue
            if first:   # second-order samplers take more steps than planned: fix the remaining batches' count
                self.total += (event.total - planned) * (spec.batch_count - self.batch)
                first = False
            self.step += 1
            preview = common.latents_to_preview(event.latents, tuple(size), self.decoder, self.models.family) \
                if event.latents is not None else None
            batch = f"Batch {self.batch + 1} of {spec.batch_count}" if spec.batch_count > 1 else ""
            yield Progress(self.step, max(self.total, self.step), image=preview, frame=preview is not None,
                           message=" · ".join(m for m in (batch, self.message) if m))
        self.message = ""
        return output.images


def _wants_preview(spec: DiffusionSpec, step: int) -> bool:
    return spec.preview_every > 0 and step % spec.preview_every == 0


def _negative_used(spec: DiffusionSpec, models: SdModels) -> str | None:
    """The negative prompt as it ran: a family without one (Flux) records None."""
    return spec.negative if models.family.negative_prompt else None


def keep_inputs(spec: DiffusionSpec, folder) -> DiffusionSpec:
    """Copy the init image and mask into inputs/ as given; the spec then points at the copies."""
    if spec.init_image:
        spec = dataclasses.replace(spec, init_image=keep_input(spec.init_image, folder, "init-image"))
    if spec.mask:
        spec = dataclasses.replace(spec, mask=keep_input(spec.mask, folder, "mask"))
    return spec


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
                                f"{spec.size[0]}x{spec.size[1]} (this model needs multiples of {models.size_multiple}).")
    yield Result([images[0]], details=details, parameters=parameters(spec, models, seeds[0], encoding),
                 extra_files=extra)


def parameters(spec: DiffusionSpec, models: SdModels, seed: int, encoding: dict | None = None) -> str:
    """The 'parameters' text other tools read (A1111's form and field names, logic/a1111), with the
    task's fields (Denoising strength, Mask blur, Hires ...) and the family's guidance."""
    sampler = common.sampler_for(spec.scheduler, models.pipe.scheduler.config)
    fields = {"Steps": spec.steps, "Sampler": sampler, **common.guidance_parameters(models, spec.cfg), "Seed": seed,
              "Size": f"{spec.size[0]}x{spec.size[1]}", **get_task(spec.task).parameters(spec),
              **a1111_extras.sd_fields(spec, models, encoding), **common.family_parameters(models)}
    return a1111_metadata.format_parameters(spec.prompt, _negative_used(spec, models) or "", fields)
