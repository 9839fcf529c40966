"""The engine registry: a mode name to its module. Adding an engine is one module and one line here."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UserError

ENGINE_MODULES = {
    "vqgan": "vqgan_clip",
    "diffusion": "diffusion",
    "walk": "walk",
    "upscale": "upscale",
}


def get_engine(mode: str) -> ModuleType:
    try:
        module = ENGINE_MODULES[mode]
    except KeyError:
        raise UserError(f"Unknown mode {mode!r}. Available: {', '.join(ENGINE_MODULES)}.") from None
    return importlib.import_module(f".{module}", __package__)


def available_modes() -> list[str]:
    return list(ENGINE_MODULES)
