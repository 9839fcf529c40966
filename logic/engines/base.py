"""What every engine shares: progress events, results, and the context a run gives an engine.

An engine is a module with:

``MODE``                      the name used in details.json, the CLI and the app ("vqgan", ...)
``TITLE``                     the name shown to people
``build_spec(params) -> spec``   defaults merged, every input checked (UserError on bad input)
``model_key(spec) -> tuple``  what identifies the loaded models (the cache reuses equal keys)
``load_models(spec, device, report) -> models``
``prepare(spec, models) -> spec``  adjust to the models (e.g. round the size), record why
``generate(spec, models, ctx) -> Iterator[Progress | Result]``
``describe(spec, models) -> dict``  model names/paths/hashes and the prompt actually used
``keep_inputs(spec, folder) -> spec``  optional: copy given files into inputs/ (``keep_input``)
                              and point the spec at the copies, so a rerun finds them

Specs are dataclasses with ``to_params()`` (a JSON-able dict that rebuilds them).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from ..errors import UserError
from ..runs import replacing

# The extension a kept input gets, from the format Pillow decoded (never from the name given:
# a PNG called x.html must not be served back as a page).
IMAGE_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                    "TIFF": ".tif", "MPO": ".jpg"}
MAX_FPS = 120
_NUMBER_NAMES = {"lr": "learning rate", "cfg": "CFG scale", "fps": "video frame rate (fps)"}


def keep_input(source: str, folder: Path, name: str) -> str:
    """Copy a file a person gave into the run's inputs/ byte for byte; returns the copy's path.

    The copy is named ``<name><extension of the decoded format>``; a file that does not decode as
    an image is refused with a sentence naming it.
    """
    target = Path(folder) / f"{name}{image_extension(source)}"
    if Path(source).resolve() != target.resolve():
        with replacing(target) as tmp:
            shutil.copyfile(source, tmp)
    return str(target)


def image_extension(path: str | Path) -> str:
    """The extension for the image format ``path`` really holds (UserError when it holds none)."""
    try:
        with Image.open(path) as image:
            kind = image.format
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        kind = None
    if kind not in IMAGE_EXTENSIONS:
        raise UserError(f"The file {path} is not an image (PNG, JPEG, WebP, GIF, BMP or TIFF): give an image file.")
    return IMAGE_EXTENSIONS[kind]


def check_finite(spec) -> None:
    """Refuse inf and NaN in every number of a spec (lists included), naming the setting.

    Range checks written as ``value > 0`` let NaN through (every comparison with NaN is false),
    and inf reaches the optimiser or the encoder; one check here covers every engine.
    """
    for item in dataclasses.fields(spec):
        value = getattr(spec, item.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for number in values:
            if isinstance(number, float) and not math.isfinite(number):
                name = _NUMBER_NAMES.get(item.name, item.name.replace("_", " "))
                raise UserError(f"The {name} must be a finite number, not {number}.")


def check_fps(fps) -> None:
    """One rule for the video frame rate in every engine."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
        raise UserError(f"The video frame rate (fps) must be above 0 and at most {MAX_FPS}, not {fps}.")


def round_size(spec, factor: int):
    """The spec with its size rounded to a multiple of ``factor`` (the model's downsampling),
    keeping the size that was asked for in ``size_requested`` so the rounding is recorded."""
    rounded = [max(factor, int(round(v / factor)) * factor) for v in spec.size]
    if rounded == list(spec.size):
        return spec
    return dataclasses.replace(spec, size=rounded, size_requested=spec.size_requested or list(spec.size))


@dataclass
class Progress:
    """One step of an engine. ``total`` is -1 for runs that go on until stopped."""

    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)
    image: Image.Image | None = None   # a preview to show
    frame: bool = False                # also append ``image`` to the video
    message: str = ""


@dataclass
class Result:
    """What an engine made: ``images[0]`` becomes output.png; ``details`` is merged into details.json."""

    images: list[Image.Image]
    details: dict = field(default_factory=dict)
    parameters: str | None = None      # PNG 'parameters' text
    extra_files: dict[str, Image.Image] = field(default_factory=dict)  # name -> image in the run folder
    state: dict | None = None          # engine state to keep (e.g. latents for "continue"), saved as state.pt


@dataclass
class RunContext:
    """What a running engine may touch: its folder, the device, and the stop flag."""

    run_dir: Path
    device: str
    stop_event: threading.Event
    report: Callable[[str], None] = lambda message: None

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    @property
    def inputs_dir(self) -> Path:
        folder = self.run_dir / "inputs"
        folder.mkdir(exist_ok=True)
        return folder
