"""VQGAN+CLIP: optimise VQGAN latents so that CLIP sees the prompts in the decoded image.

The algorithm of Katherine Crowson's notebook ("VQGAN+CLIP", 2021; Esser et al. 2021 for VQGAN,
Radford et al. 2021 for CLIP): random latent codes are decoded, cut into random crops ("cutouts"),
embedded by CLIP, and pulled toward the prompt embeddings by a squared spherical distance. The
latents pass through the codebook with a straight-through estimator, so gradients reach them
although quantisation is not differentiable.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from PIL import Image

from .. import settings
from ..errors import UserError
from ..media import format_parameters
from ..models.clip import ClipModel, load_clip
from ..models.demo import DEMO_CLIP, DEMO_VQGAN, ensure_demo_clip, ensure_demo_vqgan
from ..models.vqgan import Vqgan, load_vqgan, resolve_vqgan, short_hash
from ..prompts import Prompt, parse_prompts, plain_text
from .base import Progress, Result, RunContext

MODE = "vqgan"
TITLE = "VQGAN+CLIP"
MAX_SEED = 2**32 - 1


@dataclass
class VqganSpec:
    """Everything that defines a VQGAN+CLIP run (and reruns it)."""

    prompt: str
    vqgan: str = "vqgan_imagenet_f16_16384"
    clip: str = "ViT-B-32:openai"
    clip_weights: str | None = None
    size: list[int] = field(default_factory=lambda: [256, 256])
    steps: int = 300
    seed: int | None = None
    lr: float = 0.1
    cutn: int = 32
    cut_pow: float = 1.0
    every: int = 5
    fps: float = 15.0
    demo: bool = False
    size_requested: list[int] | None = None

    def to_params(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class VqganModels:
    vqgan: Vqgan
    clip: ClipModel
    vqgan_path: Path
    vqgan_name: str


# 1. Check inputs ---------------------------------------------------------------------------------

def build_spec(params: dict) -> VqganSpec:
    """Defaults from defaults.yaml, then ``params``; every value checked with a clear sentence."""
    merged = {**settings.defaults(MODE), **{k: v for k, v in params.items() if v is not None}}
    if merged.get("demo"):
        merged["vqgan"], merged["clip"], merged["clip_weights"] = DEMO_VQGAN, DEMO_CLIP, None
    known = {f.name for f in dataclasses.fields(VqganSpec)}
    spec = VqganSpec(**{k: v for k, v in merged.items() if k in known})
    _check_spec(spec)
    _check_models_exist(spec)
    if spec.seed is None:
        spec.seed = random.randint(0, MAX_SEED)
    return spec


def _check_spec(spec: VqganSpec) -> None:
    if not parse_prompts(spec.prompt):
        raise UserError("The prompt is empty: type what the image should show, e.g. \"a red fox:1 | blurry:-0.5\".")
    if len(spec.size) != 2 or any(not isinstance(v, int) or v <= 0 for v in spec.size):
        raise UserError(f"The size {spec.size} is not two positive whole numbers: give a width and height like 256 256.")
    if spec.size[0] * spec.size[1] > 4096 * 4096:
        raise UserError(f"The size {spec.size[0]}x{spec.size[1]} is too large: keep it under 4096x4096.")
    if spec.steps == 0 or spec.steps < -1:
        raise UserError(f"Steps must be a positive number or -1 (until stopped), not {spec.steps}.")
    if not spec.lr > 0:
        raise UserError(f"The learning rate must be above 0, not {spec.lr}.")
    if spec.cutn < 1:
        raise UserError(f"The number of cutouts must be at least 1, not {spec.cutn}.")
    if not spec.cut_pow > 0:
        raise UserError(f"cut_pow must be above 0, not {spec.cut_pow}.")
    if spec.every < 1:
        raise UserError(f"The frame interval must be at least 1 step, not {spec.every}.")
    if spec.seed is not None and (isinstance(spec.seed, bool) or not isinstance(spec.seed, int)
                                  or not 0 <= spec.seed <= MAX_SEED):
        raise UserError(f"The seed must be between 0 and {MAX_SEED}, not {spec.seed}.")


def _check_models_exist(spec: VqganSpec) -> None:
    """Name the missing model before a run folder is made (loading comes later, in the worker)."""
    if spec.clip_weights and not Path(spec.clip_weights).is_file():
        raise UserError(f"The CLIP weights file {spec.clip_weights} does not exist: check the path.")
    if spec.vqgan != DEMO_VQGAN:
        resolve_vqgan(spec.vqgan, vqgan_folders())


# 2. Load models ----------------------------------------------------------------------------------

def model_key(spec: VqganSpec, device: str) -> tuple:
    return (MODE, spec.vqgan, spec.clip, spec.clip_weights, device)


def vqgan_folders() -> list[Path]:
    return [settings.assets_dir(), settings.assets_dir() / "vqgan"]


def load_models(spec: VqganSpec, device: str, report=lambda message: None) -> VqganModels:
    if spec.vqgan == DEMO_VQGAN:
        files = ensure_demo_vqgan(settings.demo_dir())
    else:
        files = resolve_vqgan(spec.vqgan, vqgan_folders())
    report(f"Loading VQGAN {files.name}…")
    vqgan = load_vqgan(files, device)
    report(f"Loading CLIP {spec.clip}…")
    if spec.clip == DEMO_CLIP:
        name, weights = ensure_demo_clip(settings.demo_dir())
        clip = load_clip(name, weights, device)
    else:
        clip = load_clip(spec.clip, Path(spec.clip_weights) if spec.clip_weights else None, device)
    return VqganModels(vqgan, clip, files.weights, files.name)


# 3. Adjust to the models -------------------------------------------------------------------------

def prepare(spec: VqganSpec, models: VqganModels) -> VqganSpec:
    """Round the size to a multiple of the VQGAN's factor, keeping what was asked for."""
    factor = models.vqgan.factor
    rounded = [max(factor, int(round(v / factor)) * factor) for v in spec.size]
    if rounded != list(spec.size):
        return dataclasses.replace(spec, size=rounded, size_requested=list(spec.size))
    return spec


def describe(spec: VqganSpec, models: VqganModels) -> dict:
    demo = spec.vqgan == DEMO_VQGAN or spec.clip == DEMO_CLIP
    return {
        "model": {"vqgan": models.vqgan_name, "vqgan_path": str(models.vqgan_path),
                  "vqgan_hash": short_hash(models.vqgan_path), "clip": spec.clip,
                  "clip_weights": spec.clip_weights, "factor": models.vqgan.factor},
        "demo": demo, "seed": spec.seed, "size": spec.size, "prompt_used": spec.prompt,
    }


# 4. The loop -------------------------------------------------------------------------------------

class ReplaceGrad(torch.autograd.Function):
    """Forward the first value, backpropagate into the second (straight-through)."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = ReplaceGrad.apply


class ClampWithGrad(torch.autograd.Function):
    """Clamp, but let gradients through where they would move the value back into range."""

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad_in):
        (x,) = ctx.saved_tensors
        return grad_in * (grad_in * (x - x.clamp(ctx.low, ctx.high)) >= 0), None, None


clamp_with_grad = ClampWithGrad.apply


class Quantiser:
    """Nearest-code search with the codebook's squared norms computed once (the fast path)."""

    def __init__(self, codebook: torch.Tensor):
        self.codebook = codebook
        self.code_norms = codebook.pow(2).sum(1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, D, H, W) -> the nearest code vectors, same shape (no gradient)."""
        flat = z.detach().movedim(1, -1).reshape(-1, z.shape[1])
        # |z|^2 is the same for every code, so argmin(|c|^2 - 2 z.c) picks the nearest code.
        indices = torch.addmm(self.code_norms, flat, self.codebook.T, alpha=-2).argmin(1)
        return self.codebook[indices].view(z.shape[0], z.shape[2], z.shape[3], -1).movedim(-1, 1)

    def straight_through(self, z: torch.Tensor) -> torch.Tensor:
        return replace_grad(self.nearest(z), z)


def make_cutouts(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Random square crops resampled to ``cut_size`` in one batched ``roi_align`` call.

    Crop sizes follow the notebook: ``size = rand**cut_pow * (max - min) + min``. roi_align
    averages an adaptive number of samples per output pixel, like the notebook's area pooling,
    but for all crops at once instead of one resample per crop.
    """
    from torchvision.ops import roi_align

    _, _, height, width = image.shape
    max_size, min_size = min(width, height), min(width, height, cut_size)
    rand = torch.rand(cutn, 3, generator=generator)
    sizes = (rand[:, 0] ** cut_pow * (max_size - min_size) + min_size).floor()
    x0 = (rand[:, 1] * (width - sizes + 1)).floor().clamp(max=width - sizes)
    y0 = (rand[:, 2] * (height - sizes + 1)).floor().clamp(max=height - sizes)
    boxes = torch.stack([torch.zeros(cutn), x0, y0, x0 + sizes, y0 + sizes], 1).to(image)
    ratio = max(1, math.ceil(max_size / cut_size))
    return roi_align(image, boxes, (cut_size, cut_size), sampling_ratio=ratio, aligned=True)


class PromptLoss(torch.nn.Module):
    """Weighted squared spherical distance to one embedding, floored at ``stop``.

    Negative weights push away from the prompt; the floor stops the pull once the distance
    falls below ``stop`` (as in the notebook's ``Prompt`` module).
    """

    def __init__(self, embedding: torch.Tensor, weight: float, stop: float):
        super().__init__()
        self.register_buffer("embedding", F.normalize(embedding.detach(), dim=-1))
        self.weight, self.stop = float(weight), float(stop)

    def forward(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        normed = F.normalize(image_embeddings, dim=-1)
        dists = (normed - self.embedding).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
        dists = dists * math.copysign(1.0, self.weight)
        floor = torch.full_like(dists, self.stop)
        return abs(self.weight) * replace_grad(dists, torch.maximum(dists, floor)).mean()


def build_prompt_losses(prompts: list[Prompt], clip: ClipModel, device: str) -> list[PromptLoss]:
    with torch.no_grad():
        embeddings = clip.encode_text([p.text for p in prompts], device)
    return [PromptLoss(e, p.weight, p.stop).to(device) for p, e in zip(prompts, embeddings)]


def random_latent(vqgan: Vqgan, size: list[int], generator: torch.Generator, device: str) -> torch.Tensor:
    """Latents made of random codebook entries, the notebook's default start."""
    h, w = size[1] // vqgan.factor, size[0] // vqgan.factor
    indices = torch.randint(vqgan.n_embed, (h * w,), generator=generator).to(device)
    return vqgan.codebook[indices].view(1, h, w, -1).movedim(-1, 1).clone()


def to_image(pixels: torch.Tensor) -> Image.Image:
    array = pixels[0].detach().clamp(0, 1).mul(255).round().byte().movedim(0, -1).cpu().numpy()
    return Image.fromarray(array)


class Synthesiser:
    """Latents -> image in [0, 1] through the quantiser and decoder (one decode per step)."""

    def __init__(self, vqgan: Vqgan):
        self.vqgan = vqgan
        self.quantiser = Quantiser(vqgan.codebook)
        self.z_min = vqgan.codebook.min(0).values.view(1, -1, 1, 1)
        self.z_max = vqgan.codebook.max(0).values.view(1, -1, 1, 1)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        decoded = self.vqgan.decode(self.quantiser.straight_through(z))
        return clamp_with_grad(decoded.add(1).div(2), 0, 1)

    def clamp_(self, z: torch.Tensor) -> None:
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, self.z_max), self.z_min))


def generate(spec: VqganSpec, models: VqganModels, ctx: RunContext) -> Iterator[Progress | Result]:
    device = ctx.device
    prompts = parse_prompts(spec.prompt)
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    synth = Synthesiser(models.vqgan)
    losses = build_prompt_losses(prompts, models.clip, device)
    z = random_latent(models.vqgan, spec.size, generator, device).requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=spec.lr)
    steps = range(1, spec.steps + 1) if spec.steps > 0 else itertools.count(1)
    for step in steps:
        if ctx.stopped:
            break
        image, metrics = _train_step(spec, models.clip, synth, losses, prompts, z, optimiser, generator)
        show = step % spec.every == 0 or step == spec.steps or step == 1
        yield Progress(step, spec.steps, metrics, to_image(image) if show else None, frame=show)
    with torch.no_grad():
        final = to_image(synth(z))
    yield Result([final], parameters=_parameters(spec, models))


def _train_step(spec, clip, synth, losses, prompts, z, optimiser, generator):
    optimiser.zero_grad(set_to_none=True)
    image = synth(z)
    cutouts = make_cutouts(image, clip.image_size, spec.cutn, spec.cut_pow, generator)
    embeddings = clip.encode_image(cutouts)
    parts = [loss(embeddings) for loss in losses]
    total = sum(parts)
    total.backward()
    optimiser.step()
    synth.clamp_(z)
    metrics = {"loss": total.item()}
    metrics.update({f"loss/{p.text}": v.item() for p, v in zip(prompts, parts)})
    return image, metrics


def _parameters(spec: VqganSpec, models: VqganModels) -> str:
    return format_parameters(
        plain_text(parse_prompts(spec.prompt)), Steps=spec.steps, Sampler="VQGAN+CLIP Adam",
        Seed=spec.seed, Size=f"{spec.size[0]}x{spec.size[1]}", Model=models.vqgan_name,
        CLIP=spec.clip, **{"Learning rate": spec.lr, "Cutouts": spec.cutn})
