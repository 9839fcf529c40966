"""Settings read from an image's parameters, mapped onto a Stable Diffusion run (``--from-image``, the app).

Fields that map: prompt, negative prompt, Steps, Sampler (+ Schedule type), CFG scale, Seed, Size,
Model (a file or folder of that name in assets/models/, else a file with that Model hash, else a hub
id), Denoising strength, Clip skip, VAE, and our Lora list (LoRAs written as ``<lora:...>`` tags stay in
the prompt and are not added twice). Hash fields and version stamps are recognised and need nothing;
everything else is listed as unknown so the person sees what was not carried over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .metadata import read_parameters
from .prompt_syntax import find_lora_tags

# Recognised, informational: nothing to set.
INFORMATIONAL = {"Model hash", "Lora hashes", "TI hashes", "VAE hash", "Version", "Hashes", "Emphasis",
                 "Civitai resources", "Civitai metadata", "Created Date", "Schedule type", "raw", "Walk",
                 "Frames", "Model revision", "Prompt chunks"}


@dataclass
class ImageSettings:
    params: dict                                   # keys of the diffusion spec
    unknown: dict = field(default_factory=dict)    # fields found but not used (name -> value)
    notes: list[str] = field(default_factory=list)
    found: dict = field(default_factory=dict)      # everything read, as text


def settings_from_image(source) -> ImageSettings:
    """Read an image's parameters and map them; an image without any is one sentence."""
    found = read_parameters(source)
    if not found:
        name = Path(source).name if isinstance(source, (str, Path)) else "This image"
        raise UserError(f"{name} holds no generation parameters (no 'parameters' text): images from Atelier, "
                        "A1111, Forge or Civitai have them, but most sites strip them on upload.")
    return map_parameters(found)


def map_parameters(found: dict) -> ImageSettings:
    result = ImageSettings({"prompt": found.get("prompt", ""), "negative": found.get("negative", "")}, found=found)
    for key, value in found.items():
        if key in ("prompt", "negative") or key in INFORMATIONAL:
            continue
        handler = _HANDLERS.get(key)
        if handler is None:
            result.unknown[key] = value
            continue
        try:
            handler(result, value)
        except (ValueError, UserError) as exc:
            result.notes.append(f"{key}: {value} was not used ({exc}).")
    _sampler_with_schedule(result, found)
    return result


def _int(key):
    def handle(result: ImageSettings, value: str) -> None:
        result.params[key] = int(float(value))
    return handle


def _float(key):
    def handle(result: ImageSettings, value: str) -> None:
        result.params[key] = float(value)
    return handle


def _size(result: ImageSettings, value: str) -> None:
    match = re.match(r"^\s*(\d+)\s*x\s*(\d+)\s*$", value)
    if not match:
        raise ValueError("not WIDTHxHEIGHT")
    result.params["size"] = [int(match.group(1)), int(match.group(2))]


def _sampler(result: ImageSettings, value: str) -> None:
    result.params["scheduler"] = value


def _sampler_with_schedule(result: ImageSettings, found: dict) -> None:
    """A1111 1.9+ writes "Sampler: DPM++ 2M, Schedule type: Karras"; older ones "DPM++ 2M Karras"."""
    from ..engines.sd_common import resolve_scheduler

    name = result.params.get("scheduler")
    if not name:
        return
    schedule = (found.get("Schedule type") or "").strip()
    candidates = [f"{name} {schedule}", name] if schedule and schedule.lower() not in ("automatic", "") else [name]
    for candidate in candidates:
        try:
            result.params["scheduler"] = resolve_scheduler(candidate)
        except UserError:
            continue
        if len(candidates) == 2 and candidate == name:
            result.notes.append(f"The schedule type {schedule!r} is not available here: {name} runs with its "
                                "default schedule.")
        return
    del result.params["scheduler"]
    result.unknown["Sampler"] = f"{name} {schedule}".strip()
    result.notes.append(f"The sampler {name!r} is not available here; the current sampler is kept.")


def _model(result: ImageSettings, value: str) -> None:
    found = find_model(value, result.found.get("Model hash"))
    if found is None:
        result.notes.append(f"The model {value!r} (hash {result.found.get('Model hash', 'not given')}) is not "
                            "installed: the current model is kept; put it in assets/models/ to use it.")
        result.unknown["Model"] = value
        return
    result.params["model"] = found


def find_model(name: str, model_hash: str | None) -> str | None:
    """A model in assets/models/ by name (file stem or folder), else by AutoV2 hash; a hub id as it is."""
    from ..engines.sd_common import models_dir
    from ..models import diffusion as sd
    from ..models.hashes import model_hash as autov2

    local = sd.list_local_models(models_dir())
    for entry in local:
        if entry == name or Path(entry).stem == name:
            return entry
    if model_hash:
        for entry in local:
            path = models_dir() / entry
            if path.is_file() and autov2(path) == model_hash.lower()[:10]:
                return entry
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name or ""):
        return name
    return None


def _vae(result: ImageSettings, value: str) -> None:
    from .extras import find_vae

    if find_vae(value) is None:
        result.notes.append(f"The VAE {value!r} is not in assets/vae/: the model's own VAE is used.")
        result.unknown["VAE"] = value
        return
    result.params["vae"] = value


def _loras(result: ImageSettings, value: str) -> None:
    """Our "Lora: name:w; name:w" field: the LoRAs given with --lora (tag ones are in the prompt already)."""
    tagged = {tag.name for tag in find_lora_tags(result.params.get("prompt", ""))}
    items = [item.strip() for item in value.split(";") if item.strip()]
    result.params["lora"] = [item for item in items if item.rsplit(":", 1)[0] not in tagged]


_HANDLERS = {
    "Steps": _int("steps"), "CFG scale": _float("cfg"), "Seed": _int("seed"), "Size": _size,
    "Sampler": _sampler, "Model": _model, "Denoising strength": _float("strength"),
    "Clip skip": _int("clip_skip"), "VAE": _vae, "Lora": _loras,
}
