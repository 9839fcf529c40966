"""Upscale an image or a past run's image: Lanczos, or an upscaler model (ESRGAN family via spandrel).

The hires fix's upscaling step on its own ("upscale this image/run"). The result is written like
any run (output.png, details.json); the PNG keeps the source's 'parameters' and adds A1111's
"Postprocess upscale by" / "Postprocess upscaler" fields, as its Extras tab does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import settings
from ..errors import UserError
from ..media import open_user_image, read_png_parameters
from ..models import upscalers
from ..models.sd.hashes import file_sha256
from .base import Progress, Result, RunContext, check_finite, keep_input
from .sd.checks import upscalers_dir

MODE = "upscale"
TITLE = "Upscale"
MAX_SIDE = 8192


@dataclass
class UpscaleSpec:
    image: str = ""                # an image file, or a run folder (its output.png)
    scale: float = 2.0
    upscaler: str = upscalers.LANCZOS
    prompt: str = ""               # for the run list: the source run's prompt when there is one
    size: list[int] | None = None

    def to_params(self) -> dict:
        return dataclasses.asdict(self)


def source_image(text: str) -> Path:
    """The file an ``image`` setting names: the file itself, or a run folder's output.png."""
    path = Path(str(text)).expanduser()
    if path.is_dir():
        for name in ("output.png", "output.PNG"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"The folder {path} is not a finished run (it has no output.png): give an image or a run folder.")
    return path


def build_spec(params: dict) -> UpscaleSpec:
    merged = {**settings.defaults(MODE), **{k: v for k, v in params.items() if v is not None}}
    known = {f.name for f in dataclasses.fields(UpscaleSpec)}
    spec = UpscaleSpec(**{k: v for k, v in merged.items() if k in known})
    check_finite(spec)
    if not spec.image:
        raise UserError("Nothing to upscale: give an image file or a run folder.")
    spec.image = str(source_image(spec.image))
    image = open_user_image(spec.image, "image to upscale")
    if isinstance(spec.scale, bool) or not isinstance(spec.scale, (int, float)) or not 1 < spec.scale <= 8:
        raise UserError(f"The upscale factor must be above 1 and at most 8, not {spec.scale}.")
    spec.size = [int(round(side * spec.scale)) for side in image.size]
    if max(spec.size) > MAX_SIDE:
        raise UserError(f"The result would be {spec.size[0]}x{spec.size[1]}: keep each side at most {MAX_SIDE} pixels.")
    upscalers.find_upscaler(spec.upscaler, upscalers_dir())
    spec.prompt = spec.prompt or _source_prompt(spec.image)
    return spec


def _source_prompt(path: str) -> str:
    text = read_png_parameters(path) if path.lower().endswith(".png") else None
    return text.split("\n", 1)[0] if text else f"upscale of {Path(path).name}"


def keep_inputs(spec: UpscaleSpec, folder) -> UpscaleSpec:
    return dataclasses.replace(spec, image=keep_input(spec.image, folder, "image"))


def model_key(spec: UpscaleSpec, device: str) -> tuple:
    return ("upscaler", str(upscalers.find_upscaler(spec.upscaler, upscalers_dir())), device)


def load_models(spec: UpscaleSpec, device: str, report=lambda message: None):
    path = upscalers.find_upscaler(spec.upscaler, upscalers_dir())
    if path is not None:
        report(f"Loading {path.name}…")
        upscalers.load_upscaler(str(path), device)
    return path


def prepare(spec: UpscaleSpec, models) -> UpscaleSpec:
    return spec


def describe(spec: UpscaleSpec, models) -> dict:
    path = models
    return {"upscaler": {"name": spec.upscaler, "path": str(path) if path else None,
                         "hash": file_sha256(path) if path else None},
            "size": spec.size, "prompt_used": spec.prompt}


def generate(spec: UpscaleSpec, models, ctx: RunContext) -> Iterator[Progress | Result]:
    yield Progress(0, 1, message=f"Upscaling to {spec.size[0]}x{spec.size[1]}…")
    image = open_user_image(spec.image, "image to upscale")
    result = upscalers.upscale(image, tuple(spec.size), models, ctx.device)
    yield Progress(1, 1, image=result, frame=True)
    yield Result([result], details={"source": spec.image}, parameters=_parameters(spec))


def _parameters(spec: UpscaleSpec) -> str:
    """The source's text with A1111's Extras fields added."""
    source = read_png_parameters(spec.image) if spec.image.lower().endswith(".png") else None
    fields = f"Postprocess upscale by: {spec.scale:g}, Postprocess upscaler: {spec.upscaler}"
    if not source:
        return f"{spec.prompt}\n{fields}"
    return f"{source.rstrip()}, {fields}"
