"""A1111's extras on a Stable Diffusion run: ``<lora:>`` tags, the VAE override, and the PNG fields.

* LoRA tags in the prompt are the same as ``--lora NAME:W`` items (``lora_items``); the tags stay in
  the recorded prompt and the PNG, as A1111 keeps them.
* A VAE override is a single file in assets/vae/ (original or diffusers key layout, safetensors or a
  safely unpickled .ckpt/.pt), put in place of the model's VAE for the run and taken out after.
* ``sd_fields`` gives the 'parameters' fields A1111 writes: Model hash (AutoV2), Model, VAE hash,
  VAE, Clip skip, Lora hashes (addnet), TI hashes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from .. import settings
from ..errors import UserError
from ..models import hashes
from .prompt_syntax import find_lora_tags
from .run_prompts import ti_hashes

log = logging.getLogger(__name__)

VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


# LoRA tags -------------------------------------------------------------------------------------------

def lora_items(spec) -> list[str]:
    """The run's LoRAs as ``NAME:W`` items: ``--lora`` ones first, then the prompt's tags."""
    items = [str(item) for item in (getattr(spec, "lora", None) or [])]
    for tag in find_lora_tags(str(getattr(spec, "prompt", "") or "")):
        if math.isnan(tag.weight):
            raise UserError(f"The weight in {tag.text} is not a number: write it like <lora:{tag.name}:0.8>.")
        items.append(tag.item)
    return items


# VAE override ----------------------------------------------------------------------------------------

def vae_dir() -> Path:
    return settings.assets_dir() / "vae"


def list_vaes() -> list[str]:
    folder = vae_dir()
    if not folder.is_dir():
        return []
    return [p.name for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in VAE_SUFFIXES]


def find_vae(name: str | None) -> Path | None:
    """A VAE file by name (with or without suffix) in assets/vae/, or a path; None when absent."""
    if not name:
        return None
    for candidate in (Path(str(name)).expanduser(), vae_dir() / str(name)):
        if candidate.is_file():
            return candidate.resolve()
    for suffix in VAE_SUFFIXES:
        candidate = vae_dir() / f"{name}{suffix}"
        if candidate.is_file():
            return candidate.resolve()
    return None


def check_vae(name: str | None) -> None:
    if name and find_vae(name) is None:
        available = ", ".join(list_vaes()) or "none installed"
        raise UserError(f"The VAE {name} was not found in {vae_dir()} (available: {available}): "
                        "put the .safetensors file there.")


def use_vae(models, name: str | None) -> None:
    """Make ``name`` the pipeline's VAE (None: the model's own); loaded once per model and file."""
    pipe = models.pipe
    if models.base_vae is None:
        models.base_vae = pipe.vae
    wanted = find_vae(name) if name else None
    if wanted is None:
        vae = models.base_vae
    else:
        key = str(wanted)
        if key not in models.vae_overrides:
            vae = load_vae_file(wanted, models.base_vae)
            # with model CPU offload the override has no offload hook: it lives on the execution device
            vae = vae.to(pipe._execution_device)
            if models.plan.vae_tiling:
                vae.enable_tiling()
            models.vae_overrides[key] = vae
        vae = models.vae_overrides[key]
    if pipe.vae is not vae:
        pipe.register_modules(vae=vae)
        for made in getattr(models, "pipes", {}).values():   # the task pipelines share the modules
            made.register_modules(vae=vae)
    models.vae = {"name": wanted.stem, "hash": hashes.model_hash(wanted), "path": str(wanted)} if wanted else None


def load_vae_file(path: Path, like) -> object:
    """A single-file VAE built with the config of the model's own VAE ``like``, on its device and dtype."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from ..models.checkpoints import load_checkpoint, state_dict_of

    state = state_dict_of(load_checkpoint(path))
    state = {k[len("first_stage_model."):] if k.startswith("first_stage_model.") else k: v for k, v in state.items()}
    if any(k.startswith("model.diffusion_model.") or "lora" in k for k in state):
        raise UserError(f"{path.name} is not a VAE (it holds UNet or LoRA weights): assets/vae/ is for VAE files only.")
    config = dict(like.config)
    if "encoder.conv_in.weight" in state and "encoder.down.0.block.0.conv1.weight" in state:
        state = convert_ldm_vae_checkpoint(state, config)
    vae = AutoencoderKL.from_config(config)
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing:
        raise UserError(f"The VAE {path.name} does not fit this model ({len(missing)} weights missing, e.g. "
                        f"{missing[0]}): use a VAE made for the same base model.")
    parameter = next(like.parameters())
    return vae.to(parameter.device, parameter.dtype).eval()


# The 'parameters' fields -----------------------------------------------------------------------------

def sd_fields(spec, models, encoding: dict | None) -> dict:
    """Model, VAE, Clip skip, LoRA and TI fields as A1111 writes them (absent ones left out)."""
    vae = getattr(models, "vae", None)
    clip_skip = int(getattr(spec, "clip_skip", 1) or 1)
    fields = {"Model hash": models.model_hash, "Model": model_name(models),
              "VAE hash": vae["hash"] if vae else None, "VAE": vae["name"] if vae else None,
              "Clip skip": clip_skip if clip_skip > 1 else None,
              "Model revision": getattr(models, "revision", None)}
    if models.loras:
        fields["Lora hashes"] = ", ".join(f"{lora['name']}: {lora['hash']}" for lora in models.loras)
        explicit = models.loras[:len(getattr(spec, "lora", None) or [])]   # lora_items puts --lora first
        if explicit:
            fields["Lora"] = "; ".join(f"{lora['name']}:{lora['weight']:g}" for lora in explicit)
    fields["TI hashes"] = ti_hashes(encoding or {})
    return fields


def model_name(models) -> str:
    """``Model:`` as A1111 writes it: the file's stem (a hub model: its repo id)."""
    source = models.source
    return Path(source.name).stem if source.kind == "file" else source.name
