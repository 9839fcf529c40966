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
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image


def keep_input(source: str, folder: Path, name: str) -> str:
    """Copy a file a person gave into the run's inputs/ exactly as given; returns the copy's path."""
    target = Path(folder) / f"{name}{Path(source).suffix.lower() or '.png'}"
    if Path(source).resolve() != target.resolve():
        shutil.copyfile(source, target)
    return str(target)


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
