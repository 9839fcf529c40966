"""Upscaling an image: Lanczos, or an upscaler model (ESRGAN family and the others spandrel knows)
from ``assets/upscalers/`` (.pth / .safetensors).

A file is read with ``load_checkpoint`` (safetensors, or the restricted unpickler that refuses a
pickle which would run code) and only the tensors are handed to spandrel, which recognises the
architecture from the key names; spandrel never opens the file itself.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from PIL import Image

from ..errors import UserError
from .checkpoints import load_checkpoint, state_dict_of

log = logging.getLogger(__name__)

LANCZOS = "Lanczos"
UPSCALER_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")


def list_upscalers(folder: Path) -> list[str]:
    """Lanczos, then the upscaler files in ``folder``."""
    files = sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() in UPSCALER_SUFFIXES) \
        if Path(folder).is_dir() else []
    return [LANCZOS, *files]


def find_upscaler(name: str, folder: Path) -> Path | None:
    """None for Lanczos; else the file (a path, or a name in ``folder``), or a sentence listing the choices."""
    if not name or str(name).lower() == LANCZOS.lower():
        return None
    for candidate in (Path(str(name)).expanduser(), Path(folder) / str(name)):
        if candidate.is_file():
            return candidate.resolve()
    matches = [Path(folder) / n for n in list_upscalers(folder)[1:] if Path(n).stem == str(name)]
    if matches:
        return matches[0].resolve()
    raise UserError(f"The upscaler {name} was not found in {folder}. Available: {', '.join(list_upscalers(folder))}.")


@functools.lru_cache(maxsize=2)
def load_upscaler(path: str, device: str = "cpu"):
    """A spandrel ``ImageModelDescriptor`` from the tensors of ``path`` (cached: the last two used)."""
    from spandrel import ModelLoader, UnsupportedModelError

    state = state_dict_of(load_checkpoint(Path(path)))
    try:
        model = ModelLoader().load_from_state_dict(state)
    except (UnsupportedModelError, KeyError, ValueError, RuntimeError) as exc:
        raise UserError(f"The upscaler {Path(path).name} is not a model spandrel knows ({str(exc)[:120]}): "
                        "use an ESRGAN/Real-ESRGAN/SwinIR-style .pth or .safetensors file.") from None
    if not hasattr(model, "scale") or getattr(model, "purpose", "SR") not in ("SR", None):
        raise UserError(f"The file {Path(path).name} is not a super-resolution model.")
    return model.to(device).eval()


def upscale(image: Image.Image, size: tuple[int, int], upscaler: Path | None, device: str = "cpu") -> Image.Image:
    """``image`` at ``size``: the model's output (at its own scale) resized with Lanczos, or Lanczos alone."""
    image = image.convert("RGB")
    if upscaler is not None:
        model = load_upscaler(str(upscaler), device)
        array = torch.from_numpy(_to_array(image)).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            out = model(array.to(next(model.model.parameters()).dtype)).float().clamp(0, 1)
        image = Image.fromarray(out[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy())
    return image if image.size == tuple(size) else image.resize(tuple(size), Image.LANCZOS)


def _to_array(image: Image.Image):
    import numpy as np

    return np.asarray(image, dtype=np.float32) / 255.0
