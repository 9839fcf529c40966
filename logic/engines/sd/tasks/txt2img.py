"""Text to image: the family's txt2img pipeline (an inpainting model repaints a blank image entirely)."""

from __future__ import annotations

from . import blank_image, common_kwargs, full_mask

NAME = "txt2img"


def check(spec) -> None:
    return None


def planned_steps(spec) -> int:
    return spec.steps


def run(spec, models, denoiser, seeds, size=None):
    size = tuple(size or spec.size)
    if models.inpaint_model:
        pipe = models.pipeline("inpaint")
        kwargs = common_kwargs(spec, models, denoiser, seeds)
        kwargs.update(image=blank_image(size), mask_image=full_mask(size), strength=1.0,
                      width=size[0], height=size[1])
    else:
        pipe = models.pipeline("txt2img")
        kwargs = common_kwargs(spec, models, denoiser, seeds)
        kwargs.update(width=size[0], height=size[1])
    return (yield from denoiser.call(pipe, kwargs, size, spec.steps))


def parameters(spec) -> dict:
    return {}
