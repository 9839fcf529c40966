"""Stable Diffusion tasks: one module each (txt2img, img2img, inpaint, hires), the same small protocol.

A task module has ``NAME``, ``check(spec)`` (its own inputs, one sentence each), ``planned_steps(spec)``
(denoising steps per batch, for the progress bar), ``run(spec, models, denoiser, seeds)`` (a generator
that yields progress through ``denoiser.call`` and returns the batch's images) and
``parameters(spec)`` (its fields of the A1111 'parameters' text). It takes the loaded family's
pipeline for its task with ``models.pipeline(task)``: the weights are shared, never loaded twice.
Adding a task is one module here, one line in ``TASK_MODULES``, and its sidebar and CLI options.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from PIL import Image

from ....errors import UserError
from ..encoding import guidance_kwargs

TASK_MODULES = {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "inpaint", "hires": "hires"}


def get_task(name: str) -> ModuleType:
    try:
        module = TASK_MODULES[name]
    except KeyError:
        raise UserError(f"Unknown task {name!r}. Available: {', '.join(TASK_MODULES)}.") from None
    return importlib.import_module(f".{module}", __package__)


def infer_task(spec) -> str:
    """The task a spec asks for when it names none: a mask means inpaint, an init image img2img."""
    if spec.task:
        return spec.task
    if spec.mask:
        return "inpaint"
    return "img2img" if spec.init_image else "txt2img"


def common_kwargs(spec, models, denoiser, seeds: list[int], steps: int | None = None) -> dict:
    """The arguments every task's call shares: the run's encoded prompt (``denoiser.prompt_kwargs``,
    encoded once per run), steps, guidance, one generator per image."""
    kwargs = dict(denoiser.prompt_kwargs)
    kwargs.update(guidance_kwargs(models.family, spec.cfg), num_inference_steps=steps or spec.steps,
                  num_images_per_prompt=len(seeds), output_type="pil",
                  generator=[torch.Generator().manual_seed(s) for s in seeds])
    return kwargs


def accepts(pipe, name: str) -> bool:
    import inspect

    return name in inspect.signature(type(pipe).__call__).parameters


def full_mask(size: tuple[int, int]) -> Image.Image:
    """Everything repainted: how an inpainting model runs txt2img and img2img."""
    return Image.new("L", tuple(size), 255)


def blank_image(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", tuple(size), (127, 127, 127))


def denoise_steps(steps: int, strength: float) -> int:
    """The steps a call with this strength runs (diffusers' ``get_timesteps``)."""
    return min(int(steps * strength), steps)
