"""VQGAN+CLIP: optimise VQGAN latents so that CLIP sees the prompts in the decoded image.

The algorithm of Katherine Crowson's notebook ("VQGAN+CLIP", 2021; Esser et al. 2021 for VQGAN,
Radford et al. 2021 for CLIP): latent codes are decoded, cut into crops ("cutouts"), embedded by
CLIP, and pulled toward the prompt embeddings by a squared spherical distance. The latents pass
through the codebook with a straight-through estimator, so gradients reach them although
quantisation is not differentiable. The features of the VQGAN-CLIP generator and the
vqgan-clip-app (image prompts, init images, stories, MSE and TV regularisation, animation,
continuing a run) are built from the helpers in ``logic.vqgan``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .. import settings
from ..errors import UserError
from ..media import format_parameters, open_user_image
from ..models.clip import ClipModel, load_clip
from ..models.demo import DEMO_CLIP, DEMO_VQGAN, ensure_demo_clip, ensure_demo_vqgan
from ..models.vqgan import Vqgan, find_vqgan_pairs, load_vqgan, read_config, resolve_vqgan, short_hash
from ..prompts import Prompt, parse_prompt, parse_prompts
from ..vqgan import continuation, memory
from ..vqgan.animation import Motion, move_pixels
from ..vqgan.cutouts import CUT_METHODS, Cutter
from ..vqgan.losses import PromptLoss, mse_loss, mse_weight_at, tv_loss
from ..vqgan.optimisers import OPTIMISERS, canonical_optimiser, make_optimiser
from ..vqgan.schedule import split_stages, stage_at
from ..vqgan.starts import INIT_NOISES, start_latent
from ..vqgan.synthesis import Synthesiser, to_image
from .base import Progress, Result, RunContext, check_finite, check_fps, keep_input, round_size

MODE = "vqgan"
TITLE = "VQGAN+CLIP"
MAX_SEED = 2**32 - 1
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class VqganSpec:
    """Everything that defines a VQGAN+CLIP run (and reruns it). Defaults live in defaults.yaml."""

    prompt: str                      # "a | b:0.5" stages separated by "^" change every story_every steps
    vqgan: str = "vqgan_imagenet_f16_16384"
    clip: str = "ViT-B-32:openai"
    clip_weights: str | None = None
    size: list[int] = field(default_factory=lambda: [256, 256])
    steps: int = 300                 # -1: until stopped
    seed: int | None = None
    lr: float = 0.1
    optimiser: str = "Adam"
    cutn: int = 32
    cut_pow: float = 1.0
    cut_method: str = "random"       # random | pooled
    augment: bool = True
    image_prompts: list[dict] = field(default_factory=list)   # {"path", "weight", "stop"}
    init_image: str | None = None
    init_noise: str = "codes"        # codes | pixels | gradient (when there is no init image)
    continue_from: str | None = None  # a run folder whose latent and optimiser state go on
    story_every: int = 100
    mse_weight: float = 0.0
    mse_decay: float = 0.0
    mse_decay_every: int = 0         # 0: the MSE weight never decays
    tv_weight: float = 0.0
    zoom: float = 1.0
    rotate: float = 0.0
    translate_x: float = 0.0
    translate_y: float = 0.0
    animate_every: int = 0           # 0: no animation; else move the image every N steps (a frame each)
    every: int = 5                   # a video frame every N steps (without animation)
    fps: float = 15.0
    gif: bool = False
    precision: str = "auto"          # auto | fp32 | fp16 | bf16 (mixed precision on CUDA only)
    match_artist: bool = False     # rewrite the prompt in the style of the closest artist
    artist: str | None = None      # the artist the user picked (else the best match)
    demo: bool = False
    size_requested: list[int] | None = None

    def to_params(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def motion(self) -> Motion:
        return Motion(self.zoom, self.rotate, self.translate_x, self.translate_y)


@dataclass
class VqganModels:
    vqgan: Vqgan
    clip: ClipModel
    vqgan_path: Path
    vqgan_name: str
    kind: str = "VQModel"


# 1. Check inputs ---------------------------------------------------------------------------------

def build_spec(params: dict) -> VqganSpec:
    """Defaults from defaults.yaml (then a continued run's settings), then ``params``; all checked."""
    given = {k: v for k, v in params.items() if v is not None}
    base = settings.defaults(MODE)
    if given.get("continue_from"):
        base.update(continuation.inherited_params(given["continue_from"]))
    merged = {**base, **given}
    if merged.get("demo"):
        merged["vqgan"], merged["clip"], merged["clip_weights"] = DEMO_VQGAN, DEMO_CLIP, None
    known = {f.name for f in dataclasses.fields(VqganSpec)}
    spec = VqganSpec(**{k: v for k, v in merged.items() if k in known})
    _check_spec(spec)
    vqgan_name = _check_models_exist(spec)
    _check_files(spec)
    if spec.continue_from:
        _check_continue(spec, vqgan_name)
    if spec.seed is None:
        spec.seed = random.randint(0, MAX_SEED)
    return spec


def _check_spec(spec: VqganSpec) -> None:
    stages = split_stages(spec.prompt)
    if not stages or not all(parse_prompts(stage) for stage in stages):
        raise UserError("The prompt is empty: type what the image should show, e.g. \"a red fox:1 | blurry:-0.5\".")
    if len(spec.size) != 2 or any(not isinstance(v, int) or v <= 0 for v in spec.size):
        raise UserError(f"The size {spec.size} is not two positive whole numbers: give a width and height like 256 256.")
    if spec.size[0] * spec.size[1] > 4096 * 4096:
        raise UserError(f"The size {spec.size[0]}x{spec.size[1]} is too large: keep it under 4096x4096.")
    check_finite(spec)
    if spec.steps == 0 or spec.steps < -1:
        raise UserError(f"Steps must be a positive number or -1 (until stopped), not {spec.steps}.")
    _check_numbers(spec)
    spec.optimiser = canonical_optimiser(spec.optimiser)
    _check_choice("cut method", spec.cut_method, CUT_METHODS)
    _check_choice("init noise", spec.init_noise, INIT_NOISES)
    _check_choice("precision", spec.precision, PRECISIONS)
    if spec.seed is not None and (isinstance(spec.seed, bool) or not isinstance(spec.seed, int)
                                  or not 0 <= spec.seed <= MAX_SEED):
        raise UserError(f"The seed must be between 0 and {MAX_SEED}, not {spec.seed}.")


def _check_numbers(spec: VqganSpec) -> None:
    rules = [
        (spec.lr > 0, f"The learning rate must be above 0, not {spec.lr}."),
        (spec.cutn >= 1, f"The number of cutouts must be at least 1, not {spec.cutn}."),
        (spec.cut_pow > 0, f"cut_pow must be above 0, not {spec.cut_pow}."),
        (spec.every >= 1, f"The frame interval must be at least 1 step, not {spec.every}."),
        (spec.story_every >= 1, f"The prompt schedule interval must be at least 1 step, not {spec.story_every}: "
                                "give how many steps each prompt stage lasts."),
        (spec.mse_weight >= 0, f"The MSE weight must be 0 or more, not {spec.mse_weight}."),
        (spec.mse_decay >= 0, f"The MSE decay must be 0 or more, not {spec.mse_decay}."),
        (spec.mse_decay_every >= 0, f"The MSE decay interval must be 0 (no decay) or more steps, "
                                    f"not {spec.mse_decay_every}."),
        (spec.tv_weight >= 0, f"The TV loss weight must be 0 or more, not {spec.tv_weight}."),
        (spec.zoom > 0, f"The zoom per frame must be above 0 (1 = no zoom), not {spec.zoom}."),
        (spec.animate_every >= 0, f"The animation interval must be 0 (off) or more steps, not {spec.animate_every}."),
    ]
    for ok, sentence in rules:
        if not ok:
            raise UserError(sentence)
    check_fps(spec.fps)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"Unknown {what} {value!r}. Known: {', '.join(choices)}.")


def _check_models_exist(spec: VqganSpec) -> str:
    """Name the missing model before a run folder is made; returns the VQGAN's name."""
    if spec.clip_weights and not Path(spec.clip_weights).is_file():
        raise UserError(f"The CLIP weights file {spec.clip_weights} does not exist: check the path.")
    if spec.vqgan == DEMO_VQGAN:
        return DEMO_VQGAN
    return resolve_vqgan(spec.vqgan, vqgan_folders()).name


def _check_files(spec: VqganSpec) -> None:
    """Open every image given by path (one sentence per problem) and record absolute paths."""
    if spec.init_image:
        spec.init_image = str(Path(spec.init_image).expanduser().resolve())
        open_user_image(spec.init_image, "init image")
    spec.image_prompts = [_image_prompt(item) for item in spec.image_prompts]


def _image_prompt(item: str | dict) -> dict:
    """``"PATH[:weight[:stop]]"`` or a dict -> {"path": absolute, "weight", "stop"}, image checked."""
    if isinstance(item, dict):
        prompt = Prompt(str(item.get("path", "")), float(item.get("weight", 1.0)),
                        float("-inf") if item.get("stop") is None else float(item["stop"]))
        if not math.isfinite(prompt.weight) or math.isnan(prompt.stop):
            raise UserError(f"The image prompt {prompt.text} needs a finite weight and stop, "
                            f"not {prompt.weight} and {item.get('stop')}.")
    else:
        prompt = parse_prompt(str(item))
    path = Path(prompt.text).expanduser().resolve()
    open_user_image(path, "image prompt")
    return {"path": str(path), "weight": prompt.weight, "stop": prompt.to_dict()["stop"]}


def _check_continue(spec: VqganSpec, vqgan_name: str) -> None:
    spec.continue_from = str(Path(spec.continue_from).expanduser().resolve())
    details = continuation.read_target(spec.continue_from)
    continuation.check_same_model(spec.continue_from, details, vqgan_name)


# 2. Load models ----------------------------------------------------------------------------------

def model_key(spec: VqganSpec, device: str) -> tuple:
    return (MODE, spec.vqgan, spec.clip, spec.clip_weights, device)


def vqgan_folders() -> list[Path]:
    return [settings.assets_dir(), settings.assets_dir() / "vqgan"]


def available_vqgans() -> list[dict]:
    """Every VQGAN pair in assets/ (and assets/vqgan/): name, kind and codebook size, for the lists."""
    models = []
    for folder in vqgan_folders():
        for files in find_vqgan_pairs(folder):
            try:
                section = _vq_section(read_config(files.config))
            except UserError:
                continue
            models.append({"name": files.name, "kind": section["target"].rsplit(".", 1)[-1],
                           "n_embed": section.get("params", {}).get("n_embed"), "path": str(files.weights)})
    return models


def _vq_section(config: dict) -> dict:
    from ..models.vqgan import model_section

    return model_section(config)[0]


def load_models(spec: VqganSpec, device: str, report=lambda message: None) -> VqganModels:
    if spec.vqgan == DEMO_VQGAN:
        files = ensure_demo_vqgan(settings.demo_dir())
    else:
        files = resolve_vqgan(spec.vqgan, vqgan_folders())
    report(f"Loading VQGAN {files.name}…")
    vqgan = load_vqgan(files, device)
    kind = _vq_section(read_config(files.config))["target"].rsplit(".", 1)[-1]
    report(f"Loading CLIP {spec.clip}…")
    if spec.clip == DEMO_CLIP:
        name, weights = ensure_demo_clip(settings.demo_dir())
        clip = load_clip(name, weights, device)
    else:
        clip = load_clip(spec.clip, Path(spec.clip_weights) if spec.clip_weights else None, device)
    return VqganModels(vqgan, clip, files.weights, files.name, kind)


# 3. Adjust to the models -------------------------------------------------------------------------

def prepare(spec: VqganSpec, models: VqganModels) -> VqganSpec:
    """Round the size to a multiple of the VQGAN's factor, keeping what was asked for; refuse a run
    that cannot fit in memory before the kernel kills the process for it."""
    spec = round_size(spec, models.vqgan.factor)
    check_memory(spec, models)
    return spec


def check_memory(spec: VqganSpec, models: VqganModels) -> None:
    """Refuse a run whose cutouts or image cannot fit (``logic.vqgan.memory``)."""
    device = next(models.vqgan.parameters()).device
    autocast = mixed_precision(spec.precision, str(device))[0]
    size, factor = models.clip.image_size, models.vqgan.factor
    generator = torch.Generator().manual_seed(0)

    def cut_and_encode(image: torch.Tensor) -> torch.Tensor:
        cutter = Cutter(size, image.shape[0], spec.cut_pow, spec.cut_method, spec.augment, generator)
        return models.clip.encode_image(cutter(image[:1]).pixels)

    with autocast:
        # n cutouts of a small image: the crops, augmentations and CLIP's activations per cutout
        per_cutout = memory.per_item(cut_and_encode, lambda n: torch.rand(n, 3, 2 * size, 2 * size, device=device),
                                     memory.storages(models.clip.model))
        per_cell = memory.per_item(models.vqgan.decode,
                                   lambda n: torch.zeros(1, models.vqgan.embed_dim, 2 * n, 2, device=device),
                                   memory.storages(models.vqgan)) / 4  # each step adds 2x2 cells
    width, height = spec.size
    need = memory.Need(image=int(per_cell * (width // factor) * (height // factor)),
                       cutouts=int(per_cutout * spec.cutn))
    memory.refuse_if_too_big(need, str(device), f"{spec.cutn} cutouts, a {width}x{height} image")


def describe(spec: VqganSpec, models: VqganModels) -> dict:
    demo = spec.vqgan == DEMO_VQGAN or spec.clip == DEMO_CLIP
    details = {
        "model": {"vqgan": models.vqgan_name, "vqgan_path": str(models.vqgan_path),
                  "vqgan_hash": short_hash(models.vqgan_path), "vqgan_kind": models.kind,
                  "n_embed": models.vqgan.n_embed, "clip": spec.clip,
                  "clip_weights": spec.clip_weights, "factor": models.vqgan.factor},
        "demo": demo, "seed": spec.seed, "size": spec.size, "prompt_used": spec.prompt,
        "stages": split_stages(spec.prompt),
    }
    if spec.size_requested:
        details["size_note"] = (f"{spec.size_requested[0]}x{spec.size_requested[1]} was rounded to "
                                f"{spec.size[0]}x{spec.size[1]}, a multiple of the model factor {models.vqgan.factor}.")
    if spec.continue_from:
        parent = continuation.read_target(spec.continue_from)
        details["parent_run_id"] = parent.get("run_id")
        details["parent_run_dir"] = spec.continue_from
    return details


# 4. The loop -------------------------------------------------------------------------------------

@dataclass
class Optimisation:
    """What the loop works on: the latent, its optimiser, and everything a step needs."""

    spec: VqganSpec
    clip: ClipModel
    synth: Synthesiser
    cutter: Cutter
    stages: list[list[PromptLoss]]
    image_losses: list[PromptLoss]
    z: torch.Tensor
    z_start: torch.Tensor
    optimiser: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    scaler: torch.amp.GradScaler | None
    notes: dict = field(default_factory=dict)


def generate(spec: VqganSpec, models: VqganModels, ctx: RunContext) -> Iterator[Progress | Result]:
    # 1. Seed (the given images are already in inputs/: the job layer called keep_inputs)
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    # 2. Targets, start latent and optimiser
    opt = build_optimisation(spec, models, ctx.device, generator)
    # 3. Iterate
    steps = range(1, spec.steps + 1) if spec.steps > 0 else itertools.count(1)
    frame_every = spec.animate_every or spec.every
    done = 0
    for step in steps:
        if ctx.stopped:
            break
        image, metrics = train_step(opt, step)
        done = step
        show = step % frame_every == 0 or step == spec.steps or step == 1
        if spec.animate_every and step % spec.animate_every == 0:
            animate(opt, image)
        yield Progress(step, spec.steps, metrics, to_image(image) if show else None, frame=show)
    # 4. The final image and the state a continued run starts from
    with torch.no_grad(), opt.autocast:
        final = to_image(opt.synth(opt.z))
    state = continuation.make_state(opt.z, opt.optimiser, spec.optimiser, done, models.vqgan_name)
    yield Result([final], details=_result_details(opt), parameters=_parameters(spec, models),
                 state=state)


def keep_inputs(spec: VqganSpec, folder: Path) -> VqganSpec:
    """Copy the init image and image prompts into inputs/; the spec then points at the copies."""
    init = keep_input(spec.init_image, folder, "init-image") if spec.init_image else None
    prompts = [{**item, "path": keep_input(item["path"], folder, f"image-prompt-{i}")}
               for i, item in enumerate(spec.image_prompts)]
    return dataclasses.replace(spec, init_image=init, image_prompts=prompts)


def build_optimisation(spec: VqganSpec, models: VqganModels, device: str,
                       generator: torch.Generator) -> Optimisation:
    synth = Synthesiser(models.vqgan)
    autocast, scaler, precision = mixed_precision(spec.precision, device)
    with torch.no_grad():
        stages = [text_losses(parse_prompts(stage), models.clip, device) for stage in split_stages(spec.prompt)]
    cutter = Cutter(models.clip.image_size, spec.cutn, spec.cut_pow, spec.cut_method, spec.augment, generator)
    image_losses = image_prompt_losses(spec, models.clip, cutter, device)
    notes = {"precision_used": precision}
    if spec.continue_from:
        z, optimiser, notes["continued"] = continued_latent(spec, synth, device)
    else:
        init = open_user_image(spec.init_image, "init image") if spec.init_image else None
        z = start_latent(synth, spec.size, spec.init_noise, init, generator, device).requires_grad_(True)
        optimiser = make_optimiser(spec.optimiser, [z], spec.lr)
    return Optimisation(spec, models.clip, synth, cutter, stages, image_losses, z, z.detach().clone(),
                        optimiser, autocast, scaler, notes)


def mixed_precision(precision: str, device: str):
    """(autocast context, grad scaler, precision used): mixed precision only on CUDA."""
    if not str(device).startswith("cuda") or precision == "fp32":
        return contextlib.nullcontext(), None, "fp32"
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    # fp16 gradients can underflow; bf16 has fp32's range and needs no scaling.
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return torch.autocast("cuda", dtype=dtype), scaler, precision


def text_losses(prompts: list[Prompt], clip: ClipModel, device: str) -> list[PromptLoss]:
    embeddings = clip.encode_text([p.text for p in prompts], device)
    return [PromptLoss(e, p.weight, p.stop, p.text).to(device) for p, e in zip(prompts, embeddings)]


def image_prompt_losses(spec: VqganSpec, clip: ClipModel, cutter: Cutter, device: str) -> list[PromptLoss]:
    """Each image prompt, resized to the run size, cut like the image and embedded (notebook style)."""
    from ..vqgan.synthesis import to_pixels

    losses = []
    for i, item in enumerate(spec.image_prompts):
        pixels = to_pixels(open_user_image(item["path"], "image prompt"), spec.size, device)
        with torch.no_grad():
            embeddings = clip.encode_image(cutter(pixels).pixels)
        stop = float("-inf") if item.get("stop") is None else item["stop"]
        losses.append(PromptLoss(embeddings, item["weight"], stop, f"image-{i}").to(device))
    return losses


def continued_latent(spec: VqganSpec, synth: Synthesiser, device: str):
    """The parent's latent (resized through pixels for a new size) and its optimiser state."""
    state = continuation.load_state(spec.continue_from, device)
    z = state["z"].to(device).float()
    h, w = spec.size[1] // synth.vqgan.factor, spec.size[0] // synth.vqgan.factor
    old_shape = z.shape
    if z.shape[1] != synth.vqgan.embed_dim:
        raise UserError(f"The latent of {Path(spec.continue_from).name} does not fit this VQGAN: continue with its model.")
    if tuple(z.shape[-2:]) != (h, w):
        with torch.no_grad():
            pixels = torch.nn.functional.interpolate(synth(z), size=(spec.size[1], spec.size[0]),
                                                     mode="bicubic", antialias=True, align_corners=False)
            z = synth.encode(pixels.clamp(0, 1))
    z = z.detach().clone().requires_grad_(True)
    optimiser = make_optimiser(spec.optimiser, [z], spec.lr)
    if state.get("optimiser_name") != spec.optimiser:
        return z, optimiser, f"latent only (optimiser changed from {state.get('optimiser_name')})"
    saved = continuation.resize_optimiser_state(state["optimiser"], old_shape, z.shape)
    optimiser.load_state_dict(saved)
    for group in optimiser.param_groups:
        group["lr"] = spec.lr  # the new run's learning rate wins over the saved one
    return z, optimiser, "latent and optimiser state"


def train_step(opt: Optimisation, step: int) -> tuple[torch.Tensor, dict]:
    """One step: decode once, cut, embed, sum the losses, update the latent."""
    spec = opt.spec
    opt.optimiser.zero_grad(set_to_none=True)
    with opt.autocast:
        image = opt.synth(opt.z)
        cutouts = opt.cutter(image)
        embeddings = opt.clip.encode_image(cutouts.pixels)
    prompt_losses = opt.stages[stage_at(step, spec.story_every, len(opt.stages))] + opt.image_losses
    named = {}
    for loss in prompt_losses:
        key = f"loss/{loss.name}"
        named[key if key not in named else f"{key}#{len(named)}"] = loss(embeddings, cutouts.weights)
    if spec.tv_weight:
        named["loss/tv"] = spec.tv_weight * tv_loss(image)
    mse_weight = mse_weight_at(step, spec.mse_weight, spec.mse_decay, spec.mse_decay_every)
    if mse_weight:
        named["loss/mse"] = mse_loss(opt.z, opt.z_start, mse_weight)
    total = torch.stack(list(named.values())).sum()
    _backward_and_step(opt, total)
    opt.synth.clamp_(opt.z)
    values = torch.stack([total.detach(), *(v.detach() for v in named.values())]).tolist()  # one sync
    metrics = {"loss": values[0], **dict(zip(named, values[1:]))}
    return image.detach(), metrics


def _backward_and_step(opt: Optimisation, total: torch.Tensor) -> None:
    if opt.scaler is None:
        total.backward()
        opt.optimiser.step()
    else:
        opt.scaler.scale(total).backward()
        opt.scaler.step(opt.optimiser)
        opt.scaler.update()


def animate(opt: Optimisation, image: torch.Tensor) -> None:
    """Move the image one frame's worth and continue from its encoding (fresh optimiser moments)."""
    if opt.spec.motion.still:
        return
    with torch.no_grad():
        # The step's own decode is the frame being moved: no extra decode.
        moved = move_pixels(image.float(), opt.spec.motion).clamp(0, 1)
        opt.z.copy_(opt.synth.encode(moved))
    opt.optimiser.state.clear()


def _result_details(opt: Optimisation) -> dict:
    """What goes into details.json at the end: the notes of the optimisation (e.g. resizing)."""
    return dict(opt.notes)


def _parameters(spec: VqganSpec, models: VqganModels) -> str:
    # the prompt as written, weights and stops included ("a:1 | b:-0.5"): a rerun needs them (issue 13)
    return format_parameters(
        spec.prompt, Steps=spec.steps,
        Sampler=f"VQGAN+CLIP {spec.optimiser}", Seed=spec.seed, Size=f"{spec.size[0]}x{spec.size[1]}",
        Model=models.vqgan_name, CLIP=spec.clip, **{"Learning rate": spec.lr, "Cutouts": spec.cutn})
