"""Prompt walk: a video that travels through two or more prompts with Stable Diffusion.

Between keyframe prompts *a* and *b*, frame *f* of ``frames`` has t = ease(f / frames):

* the text embeddings are mixed linearly, ``(1 - t) e_a + t e_b`` (the negative prompt is shared);
* the starting noise is slerped between the seeds' noises (Shoemake 1985; as in Karpathy's
  "stable diffusion walk" and Nerdy Rodent's notebooks): Gaussian noise keeps its norm on a sphere,
  a straight line between two noises would pass through low-norm noise and wash the frame out.
  Equal seeds give the same noise throughout;
* ancestral samplers ("Euler a", "DPM2 a", the SDE solvers, DDPM) draw fresh noise at every step:
  that noise follows the slerp too. Both keyframes' generators draw, advanced exactly as in their
  single runs, and the sampler gets ``slerp(t, draw_a, draw_b)`` (``follow_slerp``), so no frame
  jumps where one seed's generator would take over from the other's.

``t`` steps evenly (``linear``), or in smaller steps in the middle of a segment (``slow-middle``,
the default: the picture changes most where the two prompts meet), or smaller steps at the ends
(``slow-ends``, the smooth cubic; runs recorded as ``ease-in-out`` mean this one).

At t = 0 the frame is made from exactly the tensors a single-prompt run with that seed uses, so
every keyframe reproduces that run's image. With ``match_artist`` every keyframe prompt is
rewritten in one artist's style (matched on the first prompt), so the style holds along the walk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import threading
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .. import settings
from ..errors import UserError
from ..a1111 import extras as a1111_extras, metadata as a1111_metadata
from ..models.diffusion import SdModels
from . import sd_common as common
from .base import Progress, Result, RunContext, check_finite, check_fps

MODE = "walk"
TITLE = "Prompt walk"
EASINGS = ("slow-middle", "linear", "slow-ends")
EASING_ALIASES = {"ease-in-out": "slow-ends"}  # the name runs recorded before it said what it does
SLOW_MIDDLE = 0.5  # slow-middle's steps are (1 - 0.5) / (1 + 0.5) = 1/3 of the end steps' size
MAX_FRAMES = 10_000


@dataclass
class WalkSpec:
    """Everything that defines a prompt walk (and reruns it)."""

    prompts: list[str] = field(default_factory=list)
    seeds: list[int] | None = None
    negative: str = ""
    model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    lora: list[str] = field(default_factory=list)
    frames: int = 24
    easing: str = "slow-middle"
    steps: int = 25
    cfg: float = 7.0
    size: list[int] = field(default_factory=lambda: [512, 512])
    scheduler: str = "DPM++ 2M Karras"
    clip_skip: int = 1             # A1111's "Clip skip"
    vae: str | None = None         # a single-file VAE in assets/vae/
    fps: float = 12.0
    gif: bool = False
    precision: str = "auto"
    memory: str = "auto"
    safety: bool = True
    match_artist: bool = False       # rewrite every keyframe prompt in the closest artist's style
    artist: str | None = None        # the artist the user picked (else the best match)
    demo: bool = False
    size_requested: list[int] | None = None

    @property
    def prompt(self) -> str:
        return " -> ".join(self.prompts)

    def to_params(self) -> dict:
        return {**dataclasses.asdict(self), "prompt": self.prompt}

    @property
    def total_frames(self) -> int:
        return (len(self.prompts) - 1) * self.frames + 1


# 1. Check inputs ---------------------------------------------------------------------------------

def build_spec(params: dict) -> WalkSpec:
    merged = {**settings.defaults(MODE), **{k: v for k, v in params.items() if v is not None}}
    if isinstance(merged.get("seeds"), int):
        merged["seeds"] = [merged["seeds"]]
    if merged.get("seed") is not None and not params.get("seeds"):
        merged["seeds"] = [merged["seed"]]
    known = {f.name for f in dataclasses.fields(WalkSpec)}
    spec = WalkSpec(**{k: v for k, v in merged.items() if k in known})
    spec.prompts = [str(p).strip() for p in spec.prompts or []]
    if len(spec.prompts) < 2 or not all(spec.prompts):
        raise UserError("A walk needs two or more non-empty prompts, one per keyframe.")
    check_finite(spec)
    common.check_common(spec)
    spec = common.check_size(spec)
    if isinstance(spec.frames, bool) or not isinstance(spec.frames, int) or not 1 <= spec.frames <= MAX_FRAMES:
        raise UserError(f"Frames per segment must be a whole number from 1 to {MAX_FRAMES}, not {spec.frames}.")
    spec.easing = EASING_ALIASES.get(spec.easing, spec.easing)
    if spec.easing not in EASINGS:
        raise UserError(f"Unknown easing {spec.easing!r}. Available: {', '.join(EASINGS)}.")
    check_fps(spec.fps)
    spec.seeds = _check_seeds(spec.seeds, len(spec.prompts))
    common.check_model(spec)
    return spec


def _check_seeds(seeds, count: int) -> list[int]:
    seeds = list(seeds or [])
    if not seeds:
        seeds = [common.check_seed(None)]
    if len(seeds) == 1:
        seeds = seeds * count
    if len(seeds) != count:
        raise UserError(f"Give one seed for all prompts or one per prompt ({count}), not {len(seeds)}.")
    return [common.check_seed(s) for s in seeds]


# 2. Load models (shared with the diffusion engine: the same cache key) ---------------------------

model_key = common.model_key
load_models = common.load_models


prepare = common.prepare


def describe(spec: WalkSpec, models: SdModels) -> dict:
    return {**common.describe_model(spec, models), "seed": spec.seeds[0], "seeds": spec.seeds, "size": spec.size,
            "prompt_used": spec.prompt, "negative_used": spec.negative if models.family.negative_prompt else None,
            "sampler": common.sampler_for(spec.scheduler, models.pipe.scheduler.config),
            "total_frames": spec.total_frames,
            "safety_checker": common.safety_status(models.safety_checker, spec.safety)}


# 3. The maths ------------------------------------------------------------------------------------

def ease(t: float, easing: str) -> float:
    """Where frame ``t`` (0..1 of a segment) sits between the keyframes.

    ``slow-middle``: ``t + k sin(2πt) / 2π``, whose slope 1 + k cos(2πt) is smallest at t = 0.5;
    ``slow-ends``: the smooth cubic 3t² − 2t³ (slope 0 at the ends); ``linear``: t."""
    easing = EASING_ALIASES.get(easing, easing)
    if easing == "linear":
        return t
    if easing == "slow-ends":
        return t * t * (3 - 2 * t)
    return t + SLOW_MIDDLE * math.sin(2 * math.pi * t) / (2 * math.pi)


def with_artist(spec: WalkSpec, rewrite) -> WalkSpec:
    """Every keyframe prompt rewritten by ``rewrite(prompt) -> prompt`` (the job layer's artist match)."""
    return dataclasses.replace(spec, prompts=[rewrite(p) for p in spec.prompts])


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation; exact ``v0`` at t=0 and ``v1`` at t=1, linear for nearly parallel vectors."""
    if t == 0 or torch.equal(v0, v1):
        return v0
    if t == 1:
        return v1
    a, b = v0.double(), v1.double()
    dot = (a * b).sum() / (a.norm() * b.norm())
    if dot.abs() > dot_threshold:
        mixed = (1 - t) * a + t * b
    else:
        theta = torch.arccos(dot)
        mixed = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    return mixed.to(v0.dtype)


def frame_plan(spec: WalkSpec) -> list[tuple[int, int, float]]:
    """(from keyframe, to keyframe, eased t) for every frame; keyframes are (k, k, 0.0)."""
    plan = []
    for k in range(len(spec.prompts) - 1):
        for f in range(spec.frames):
            t = ease(f / spec.frames, spec.easing)
            plan.append((k, k, 0.0) if f == 0 else (k, k + 1, t))
    last = len(spec.prompts) - 1
    plan.append((last, last, 0.0))
    return plan


# Ancestral noise that follows the slerp ---------------------------------------------------------
#
# diffusers' samplers draw their per-step noise with ``randn_tensor(shape, generator=...)``, named
# in each scheduler's module. ``follow_slerp`` wraps that name once per module: a draw with a
# generator registered for the current frame is made by both keyframes' generators and slerped;
# any other draw (other runs, other threads) goes to diffusers unchanged.

_FOLLOWING: dict[int, tuple[float, torch.Generator]] = {}
_FOLLOWING_LOCK = threading.Lock()


def _slerped_randn(original):
    def randn_tensor(shape, generator=None, *args, **kwargs):
        follow = _FOLLOWING.get(id(generator)) if isinstance(generator, torch.Generator) else None
        if follow is None:
            return original(shape, generator, *args, **kwargs)
        t, other = follow
        draw_a = original(shape, generator, *args, **kwargs)
        draw_b = original(shape, other, *args, **kwargs)
        return slerp(t, draw_a, draw_b)

    randn_tensor.follows_slerp = True
    return randn_tensor


def _hook_scheduler_noise(scheduler) -> None:
    module = sys.modules.get(type(scheduler).__module__)
    with _FOLLOWING_LOCK:
        original = getattr(module, "randn_tensor", None)
        if original is not None and not getattr(original, "follows_slerp", False):
            module.randn_tensor = _slerped_randn(original)


@contextlib.contextmanager
def follow_slerp(scheduler, t: float, gen_a: torch.Generator, gen_b: torch.Generator):
    """While a frame renders: the sampler's noise drawn with ``gen_a`` is slerp(t, gen_a's, gen_b's)."""
    if t == 0 or gen_a is gen_b:
        yield
        return
    _hook_scheduler_noise(scheduler)
    _FOLLOWING[id(gen_a)] = (t, gen_b)
    try:
        yield
    finally:
        _FOLLOWING.pop(id(gen_a), None)


def initial_noise(pipe, seed: int, size: list[int], family=None, dtype=None) -> tuple[torch.Tensor, torch.Generator]:
    """The noise a single run with ``seed`` starts from, and its generator advanced past it.

    The family decides the layout: (1, C, h/8, w/8) for UNet and SD 3.5 models; Flux draws
    (1, 16, h/8, w/8) and packs it 2x2 into (1, h/16 * w/16, 64), as its pipeline does.
    """
    from diffusers.utils.torch_utils import randn_tensor

    generator = torch.Generator().manual_seed(seed)
    factor = pipe.vae_scale_factor
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    packed = bool(family is not None and family.packed_latents)
    channels = denoiser.config.in_channels // 4 if packed else \
        (pipe.vae.config.latent_channels if getattr(pipe, "unet", None) is not None else denoiser.config.in_channels)
    height, width = size[1] // factor, size[0] // factor
    if packed:
        height, width = 2 * (size[1] // (factor * 2)), 2 * (size[0] // (factor * 2))
    dtype = dtype if dtype is not None else pipe.text_encoder.dtype
    noise = randn_tensor((1, channels, height, width), generator=generator,
                         device=torch.device(pipe._execution_device), dtype=dtype)
    if packed:
        noise = pipe._pack_latents(noise, 1, channels, height, width)
    return noise, generator


# 4. Generate -------------------------------------------------------------------------------------

def generate(spec: WalkSpec, models: SdModels, ctx: RunContext) -> Iterator[Progress | Result]:
    pipe, family = models.pipeline("txt2img"), models.family
    common.use_scheduler(models, spec.scheduler)
    # 4.1 Encode every prompt once, exactly as a single run does: A1111 syntax for CLIP families (all to
    # the same number of 75-token chunks, logic/a1111), the family's encoder for T5 families
    embeddings, _record = common.encode_run(pipe, family, spec.prompts, spec.negative, spec.cfg, spec.clip_skip)
    dtype = embeddings[0]["prompt_embeds"].dtype
    plan = frame_plan(spec)
    total = len(plan) * spec.steps
    keyframes, last, step, made = {}, None, 0, 0
    for index, (a, b, t) in enumerate(plan):
        if ctx.stopped:
            break
        # 4.2 This frame's embedding, noise and generator
        noise_a, gen_a = initial_noise(pipe, spec.seeds[a], spec.size, family, dtype)
        noise_b, gen_b = initial_noise(pipe, spec.seeds[b], spec.size, family, dtype) if b != a else (noise_a, gen_a)
        kwargs = dict(**common.mix(embeddings[a], embeddings[b], t), latents=slerp(t, noise_a, noise_b),
                      generator=gen_a, num_inference_steps=spec.steps,
                      guidance_scale=float(spec.cfg), width=spec.size[0], height=spec.size[1], output_type="pil")
        # 4.3 Denoise, reporting each step (ancestral noise follows the slerp)
        output = None
        with follow_slerp(pipe.scheduler, t, gen_a, gen_b):
            for event in common.stream_pipeline(pipe, kwargs, ctx):
                if isinstance(event, common.StepEvent):
                    total = len(plan) * event.total
                    yield Progress(index * event.total + event.step, total,
                                   message=f"Frame {index + 1} of {len(plan)}")
                    step = index * event.total + event.step
                else:
                    output = event
        if ctx.stopped and index > 0:
            break  # an interrupted frame is half-made: the video keeps the finished ones
        image = output.images[0]
        image = common.apply_safety([image], [spec.seeds[a]], models.safety_checker, spec.safety,
                                    first_index=index + 1)[0][0]
        if t == 0:
            keyframes[a] = image
        last, made = image, made + 1
        yield Progress(step, total, image=image, frame=True, message=f"Frame {index + 1} of {len(plan)}")
    if last is None:
        return
    extra = {f"keyframe-{k + 1:02d}.png": image for k, image in keyframes.items()}
    details = {"keyframes": [{"file": name, "prompt": spec.prompts[int(name[9:11]) - 1],
                              "seed": spec.seeds[int(name[9:11]) - 1]} for name in extra],
               "frames_made": made}
    yield Result([last], details=details, parameters=_parameters(spec, models), extra_files=extra)


def _parameters(spec: WalkSpec, models: SdModels) -> str:
    fields = {"Steps": spec.steps, "Sampler": common.sampler_for(spec.scheduler, models.pipe.scheduler.config),
              **common.guidance_parameters(models, spec.cfg), "Seed": spec.seeds[-1],
              "Size": f"{spec.size[0]}x{spec.size[1]}", **a1111_extras.sd_fields(spec, models, None),
              "Walk": " -> ".join(spec.prompts).replace(",", ";"), "Frames": spec.total_frames,
              **common.family_parameters(models)}
    return a1111_metadata.format_parameters(spec.prompts[-1], spec.negative, fields)
