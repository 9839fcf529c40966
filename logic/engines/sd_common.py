"""What the Stable Diffusion engines (``diffusion`` and ``walk``) share.

* the sampler table: the names people know (A1111's) -> a diffusers scheduler class and its options;
* input checks common to both specs, and model resolution with the sentence that says how to get one;
* loading through ``logic.models.diffusion`` under one cache key, so switching modes reuses the model;
* ``stream_pipeline``: runs a diffusers pipeline call and turns its ``callback_on_step_end`` into a
  stream of step events (the pipeline's own interrupt flag is the stop button);
* previews: a fixed linear map from the 4 latent channels to RGB (no VAE decode per step);
* the safety hook: flagged images become a placeholder plus a sentence, never a black square.
"""

from __future__ import annotations

import dataclasses

import json
import queue
import random
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image, ImageDraw

from .. import settings
from ..a1111 import extras as a1111_extras   # issue 13: <lora:> tags, VAE override, A1111 fields
from ..errors import UserError
from ..models import diffusion as sd
from ..models.hub import check_on_hub
from . import base
from .base import RunContext

MAX_SEED = 2**32 - 1
MAX_SIDE = 2048
MIN_SIDE = 32
DEMO_MODEL = "demo"

# name -> (diffusers class, options). Names as in A1111/ComfyUI so people find what they know.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DPM++ 2S": ("DPMSolverSinglestepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "PNDM": ("PNDMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower().replace("++", "pp").replace("karras", "k").replace("ancestral", "a"))


def resolve_scheduler(name: str) -> str:
    """The canonical sampler name for ``name`` ('euler_a', 'dpmpp 2m karras', ...), or a UserError listing them."""
    wanted = _norm(str(name))
    for known in SCHEDULERS:
        if _norm(known) == wanted:
            return known
    raise UserError(f"Unknown scheduler {name!r}. Available: {', '.join(SCHEDULERS)}.")


def make_scheduler(name: str, base_config) -> Any:
    """A fresh scheduler of the named kind keeping the model's betas and prediction type."""
    import diffusers

    class_name, options = SCHEDULERS[resolve_scheduler(name)]
    return getattr(diffusers, class_name).from_config(base_config, **options)


# 1. Checks shared by both specs ----------------------------------------------------------------------

def check_size(spec):
    """Sizes are two whole numbers in range, rounded to multiples of 8 (one latent pixel is 8x8);
    the size asked for is kept in ``size_requested``."""
    size = spec.size
    if not isinstance(size, (list, tuple)) or len(size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) for v in size):
        raise UserError(f"The size {size} is not two whole numbers: give a width and height like 512 512.")
    if any(v < MIN_SIDE or v > MAX_SIDE for v in size):
        raise UserError(f"The size {size[0]}x{size[1]} is out of range: each side must be "
                        f"between {MIN_SIDE} and {MAX_SIDE} pixels.")
    return base.round_size(dataclasses.replace(spec, size=list(size)), 8)


def check_common(spec) -> None:
    """Steps, CFG, seed, sampler, precision, memory mode: each wrong value named with what is allowed."""
    if isinstance(spec.steps, bool) or not isinstance(spec.steps, int) or not 1 <= spec.steps <= 1000:
        raise UserError(f"Steps must be a whole number from 1 to 1000, not {spec.steps}.")
    if not isinstance(spec.cfg, (int, float)) or spec.cfg < 0 or spec.cfg > 50:
        raise UserError(f"The CFG scale must be between 0 and 50 (7 is usual), not {spec.cfg}.")
    spec.scheduler = resolve_scheduler(spec.scheduler)
    if spec.precision not in sd.PRECISIONS:
        raise UserError(f"Unknown precision {spec.precision!r}. Available: {', '.join(sd.PRECISIONS)}.")
    if spec.memory not in sd.MEMORY_MODES:
        raise UserError(f"Unknown memory mode {spec.memory!r}. Available: {', '.join(sd.MEMORY_MODES)}.")


def check_seed(seed, what: str = "seed") -> int:
    if seed is None:
        return random.randint(0, MAX_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"The {what} must be a whole number between 0 and {MAX_SEED}, not {seed}.")
    return seed


def models_dir() -> Path:
    return settings.assets_dir() / "models"


def loras_dir() -> Path:
    return settings.assets_dir() / "loras"


def tokenizer_cache() -> Path:
    return settings.assets_dir() / "cache" / "clip-tokenizer"


def check_model(spec) -> sd.ModelSource:
    """Resolve ``spec.model`` and the LoRAs now, so a missing file is named before a run folder exists."""
    if spec.demo:
        spec.model = DEMO_MODEL
    spec.lora = [str(x) for x in (spec.lora or [])]
    for item in a1111_extras.lora_items(spec):     # --lora items and the prompt's <lora:> tags
        sd.parse_lora(item, loras_dir())
    check_clip_skip_and_vae(spec)
    if spec.model == DEMO_MODEL:
        return sd.ModelSource("folder", "", DEMO_MODEL)
    source = sd.resolve_model(spec.model, models_dir())
    if source.kind == "hub" and not sd.hub_model_cached(source.location):
        # resolve_model refused this offline already: ask the hub now, before a run folder exists
        check_on_hub(source.location, f"The model {source.name}", sd.HOW_TO_GET)
    return source


def check_clip_skip_and_vae(spec) -> None:
    clip_skip = getattr(spec, "clip_skip", 1)
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= 12:
        raise UserError(f"Clip skip must be a whole number from 1 to 12 (2 is usual for anime models), not {clip_skip}.")
    a1111_extras.check_vae(getattr(spec, "vae", None))


def model_token(model: str) -> str | None:
    """The DreamBooth token a model's sidecar gives (for the UI), or None."""
    try:
        return sd.resolve_model(model, models_dir()).token
    except UserError:
        return None


# 2. Loading ------------------------------------------------------------------------------------------

def prepare(spec, models):
    """Put this run's LoRAs on the cached pipeline and round the size to the VAE's factor
    (recorded), for txt2img, img2img and walks alike."""
    use_loras(spec, models)
    a1111_extras.use_vae(models, getattr(spec, "vae", None))
    return base.round_size(spec, models.vae_scale_factor)


def model_key(spec, device: str) -> tuple:
    """Equal for both SD modes with the same model and memory settings: the cache reuses it.

    LoRAs are not part of the key: they are set on the cached model for each run (``use_loras``),
    so switching LoRAs does not reload the model.
    """
    return ("stable-diffusion", spec.model, spec.precision, spec.memory, device)


def load_models(spec, device: str, report=lambda message: None) -> sd.SdModels:
    if spec.model == DEMO_MODEL:
        from ..models.diffusion_demo import ensure_demo_sd

        report("Writing the demo model (first use)…")
        folder = ensure_demo_sd(settings.demo_dir(), tokenizer_cache())
        source = sd.ModelSource("folder", str(folder), DEMO_MODEL)
    else:
        source = sd.resolve_model(spec.model, models_dir())
    plan = sd.memory_plan(device, spec.precision, spec.memory)
    models = sd.load_sd(source, device, plan, tokenizer_cache(), report)
    models.demo = spec.model == DEMO_MODEL
    return models


def lora_parameters(models: sd.SdModels) -> dict:
    """The LoRA fields of the 'parameters' text, as A1111 writes them (empty without LoRAs)."""
    from ..media import quote_value

    if not models.loras:
        return {}
    return {"Lora": "; ".join(f"{lora['name']}:{lora['weight']:g}" for lora in models.loras),
            "Lora hashes": quote_value(", ".join(f"{lora['name']}: {lora['hash']}" for lora in models.loras))}


def use_loras(spec, models: sd.SdModels) -> None:
    """This run's LoRAs on the (possibly cached) model; the last run's are taken off first."""
    sd.set_loras(models, [sd.parse_lora(item, loras_dir()) for item in a1111_extras.lora_items(spec)])


def describe_model(spec, models: sd.SdModels) -> dict:
    source = models.source
    return {
        "model": {"name": source.name, "kind": source.kind, "location": source.location,
                  "hash": models.model_hash, "token": source.token, "base": source.sidecar.get("base"),
                  "loras": [dict(lora) for lora in models.loras], "revision": models.revision,
                  "vae": models.vae},
        "memory": {"dtype": models.plan.dtype, "attention_slicing": models.plan.attention_slicing,
                   "vae_tiling": models.plan.vae_tiling, "cpu_offload": models.plan.cpu_offload,
                   "reason": models.plan.reason},
        "demo": models.demo,
    }


def use_scheduler(models: sd.SdModels, name: str) -> None:
    scheduler = make_scheduler(name, models.pipe.scheduler.config)
    models.pipe.scheduler = scheduler
    if models._img2img is not None:
        models._img2img.scheduler = scheduler


# 3. Running a pipeline call as a stream of steps -----------------------------------------------------

@dataclass
class StepEvent:
    step: int           # 1-based, within this call
    total: int          # denoising steps this call makes (scheduler order included)
    latents: torch.Tensor | None = None   # a detached copy of the first image's latents, when asked


def stream_pipeline(pipe, kwargs: dict, ctx: RunContext, want_latents=lambda step: False) -> Iterator[Any]:
    """Run ``pipe(**kwargs)`` in a helper thread; yield a StepEvent per step, then the pipeline output.

    The callback only copies what the consumer asked for and never waits, so the denoising loop
    runs at the plain pipeline's speed. Stop sets the pipeline's interrupt flag: the remaining steps
    are skipped and the latents made so far are decoded, so a stopped run keeps its image.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()

    def on_step(p, i, t, tensors):
        if ctx.stopped:
            p._interrupt = True
        step = i + 1
        latents = tensors["latents"][:1].detach().clone() if want_latents(step) else None
        events.put(StepEvent(step, p.num_timesteps, latents))
        return {}

    def work():
        try:
            events.put(("done", pipe(**kwargs, callback_on_step_end=on_step)))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, raised there
            events.put(("error", exc))

    thread = threading.Thread(target=work, name="atelier-sd-call", daemon=True)
    thread.start()
    try:
        while True:
            event = events.get()
            if isinstance(event, StepEvent):
                yield event
                continue
            kind, value = event
            if kind == "error":
                raise value
            yield value
            return
    finally:
        if thread.is_alive():
            pipe._interrupt = True
            thread.join()


# Previews: latent -> RGB by a fixed linear map (SD 1.x factors, as used by ComfyUI's previewer).
LATENT_RGB = torch.tensor([[0.3512, 0.2297, 0.3227],
                           [0.3250, 0.4974, 0.2350],
                           [-0.2829, 0.1762, 0.2721],
                           [-0.2120, -0.2616, -0.7177]])
LINEAR_PREVIEW = "linear"
TINY_DECODER_PREVIEW = "tiny decoder"


def latents_to_preview(latents: torch.Tensor, size: tuple[int, int], decoder=None) -> Image.Image:
    """(1, 4, h, w) latents -> an RGB image of ``size``: the tiny decoder's image when one is given,
    else the linear map (cheap, rough, good enough to watch)."""
    if decoder is not None:
        return _decode_preview(latents, size, decoder)
    rgb = torch.einsum("chw,cr->rhw", latents[0].float().cpu(), LATENT_RGB)
    array = ((rgb + 1) / 2).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array).resize(size, Image.BILINEAR)


def _decode_preview(latents: torch.Tensor, size: tuple[int, int], decoder) -> Image.Image:
    """TAESD (Bohan Ollin Boer, 2023): a distilled VAE decoder that reads the UNet's scaled latents as they are."""
    parameter = next(decoder.parameters())
    with torch.no_grad():
        rgb = decoder.decode(latents.to(parameter.device, parameter.dtype)).sample[0]
    array = ((rgb.float().cpu() + 1) / 2).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(array)
    return image if image.size == tuple(size) else image.resize(size, Image.BILINEAR)


def find_preview_decoder(setting: str | None) -> Path | None:
    """The tiny decoder folder a setting names (a path, or a folder in assets/models/), when it is there.

    Not there -> None (previews use the linear map). There but not an AutoencoderTiny -> one sentence.
    """
    if not setting:
        return None
    for folder in (Path(str(setting)).expanduser(), models_dir() / str(setting)):
        if folder.is_dir():
            break
    else:
        return None
    config = folder / "config.json"
    class_name = json.loads(config.read_text(encoding="utf-8")).get("_class_name") if config.is_file() else None
    if class_name != "AutoencoderTiny":
        raise UserError(f"The preview decoder folder {folder} does not hold a diffusers AutoencoderTiny "
                        "(TAESD, e.g. madebyollin/taesd): put one there or set diffusion.preview_decoder to null.")
    return folder.resolve()


def preview_decoder(models: sd.SdModels, folder: Path | None):
    """The AutoencoderTiny in ``folder`` on the model's device and dtype, loaded once per model."""
    if folder is None:
        return None
    key = str(folder)
    if key not in models.preview_decoders:
        from diffusers import AutoencoderTiny

        decoder = AutoencoderTiny.from_pretrained(key, torch_dtype=models.plan.torch_dtype, local_files_only=True)
        models.preview_decoders[key] = decoder.to(models.device).eval()
    return models.preview_decoders[key]


def preview_method(spec, folder: Path | None) -> dict:
    """What details.json says about the previews."""
    if spec.preview_every == 0:
        return {"method": "none"}
    if folder is None:
        return {"method": LINEAR_PREVIEW, "decoder": None}
    return {"method": TINY_DECODER_PREVIEW, "decoder": str(folder)}


# 4. Safety -------------------------------------------------------------------------------------------

SAFETY_SENTENCE = ("Image {index} (seed {seed}) was flagged by the safety checker as possibly not safe for work, "
                   "so a placeholder was saved instead; turn the safety checker off in the settings to keep such images.")


def placeholder_image(size: tuple[int, int], text: str = "Hidden by the safety checker") -> Image.Image:
    image = Image.new("RGB", size, (96, 96, 96))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, size[0] - 3, size[1] - 3], outline=(160, 160, 160), width=2)
    draw.text((8, size[1] // 2 - 6), text, fill=(235, 235, 235))
    return image


def apply_safety(images: list[Image.Image], seeds: list[int], checker, enabled: bool,
                 first_index: int = 1) -> tuple[list[Image.Image], list[str]]:
    """Replace flagged images by a placeholder; return the images and one sentence per replacement."""
    if not enabled or checker is None or not images:
        return images, []
    flags = checker(images)
    kept, notes = [], []
    for offset, (image, seed, flagged) in enumerate(zip(images, seeds, flags)):
        if flagged:
            kept.append(placeholder_image(image.size))
            notes.append(SAFETY_SENTENCE.format(index=first_index + offset, seed=seed))
        else:
            kept.append(image)
    return kept, notes


def safety_status(checker, enabled: bool) -> str:
    if not enabled:
        return "off"
    return "on" if checker is not None else "unavailable (this model has no safety checker; images were not checked)"


def make_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    """A contact sheet of same-size images (as square as possible)."""
    import math

    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height), (0, 0, 0))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid
