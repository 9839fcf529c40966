"""Input checks the Stable Diffusion specs share: each wrong value named with what is allowed."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from ... import settings
from ...a1111 import extras as a1111_extras   # <lora:> tags, VAE override, A1111 fields
from ...errors import UserError
from ...models import diffusion as sd
from ...models.hub import check_on_hub
from .. import base
from .schedulers import resolve_scheduler

MAX_SEED = 2**32 - 1
MAX_SIDE = 2048
MIN_SIDE = 32
DEMO_MODEL = "demo"


def check_size(spec):
    """Sizes are two whole numbers in range, rounded to multiples of 8 (one latent pixel is 8x8; the
    family may ask for more once the model is loaded); the size asked for is kept in ``size_requested``."""
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


def check_fraction(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise UserError(f"The {what} must be above 0 and at most 1, not {value}.")
    return float(value)


def models_dir() -> Path:
    return settings.assets_dir() / "models"


def loras_dir() -> Path:
    return settings.assets_dir() / "loras"


def upscalers_dir() -> Path:
    return settings.assets_dir() / "upscalers"


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
