"""What is installed and what is missing: one place for the app banner, the sidebar and `models`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import settings
from .demo import DEMO_VQGAN
from .vqgan import find_vqgan_pairs

KNOWN_VQGANS = ["vqgan_imagenet_f16_1024", "vqgan_imagenet_f16_16384", "coco", "wikiart_16384", "sflckr"]


@dataclass(frozen=True)
class ModelEntry:
    kind: str
    name: str
    installed: bool
    path: Path | None
    how_to_get: str = ""


def vqgan_entries() -> list[ModelEntry]:
    installed = {p.name: p for folder in (settings.assets_dir(), settings.assets_dir() / "vqgan")
                 for p in find_vqgan_pairs(folder)}
    entries = [ModelEntry("vqgan", name, True, pair.weights) for name, pair in sorted(installed.items())]
    entries += [ModelEntry("vqgan", name, False, None, f"bash download-weights.sh {name}")
                for name in KNOWN_VQGANS if name not in installed]
    return entries


def installed_vqgans() -> list[str]:
    return [e.name for e in vqgan_entries() if e.installed]


def vqgan_choices() -> list[str]:
    """Installed VQGANs, then the demo model (always available)."""
    return installed_vqgans() + [DEMO_VQGAN]


def has_real_vqgan() -> bool:
    return bool(installed_vqgans())


def setup_hint() -> str:
    return ("No VQGAN weights are installed: run `bash download-weights.sh` (the default "
            "imagenet_f16_16384 pair, about 1 GB) or `bash download-weights.sh --list`, "
            "or try the demo models now.")


def installed_sd_models(default_model: str) -> list[str]:
    """Stable Diffusion models usable without a download: local files/folders, and the default hub
    model when it is already in the cache."""
    from . import diffusion

    local = diffusion.list_local_models(settings.assets_dir() / "models")
    cached = [default_model] if default_model and diffusion.hub_model_cached(default_model) else []
    return cached + local


def sd_setup_hint(default_model: str) -> str:
    return (f"No Stable Diffusion weights are installed: run `bash download-weights.sh --sd` to fetch "
            f"{default_model} (about 4 GB), or put a .safetensors/.ckpt file in assets/models/; "
            "or try the demo model now.")
