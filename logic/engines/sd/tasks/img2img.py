"""Image to image: the init image, fitted to the run's size, redrawn at ``strength`` (SDEdit, Meng et al. 2021)."""

from __future__ import annotations

from PIL import Image

from ....errors import UserError
from ....media import open_user_image
from . import accepts, common_kwargs, denoise_steps, full_mask

NAME = "img2img"


def check(spec) -> None:
    if not spec.init_image:
        raise UserError("Image to image needs an init image: give the picture to start from.")
    open_user_image(spec.init_image, "init image")
    check_strength(spec.strength, spec.steps, "strength")


def check_strength(strength, steps: int, what: str) -> None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise UserError(f"The {what} must be above 0 and at most 1 (how much of the image is redrawn), "
                        f"not {strength}.")
    if int(steps * strength) < 1:
        raise UserError(f"With {what} {strength} and {steps} steps no denoising step would run: "
                        f"raise the {what} or the steps.")


def planned_steps(spec) -> int:
    return denoise_steps(spec.steps, spec.strength)


def init_image(spec, size=None) -> Image.Image:
    """The init image (already kept in inputs/), fitted to the run's size."""
    return open_user_image(spec.init_image, "init image").resize(tuple(size or spec.size), Image.LANCZOS)


def redraw(spec, models, denoiser, seeds, image: Image.Image, strength: float, steps: int):
    """One img2img call on ``image`` at its own size (the hires pass uses it too)."""
    size = image.size
    task = "inpaint" if models.inpaint_model else "img2img"
    pipe = models.pipeline(task)
    kwargs = common_kwargs(spec, models, denoiser, seeds, steps)
    kwargs.update(image=image, strength=float(strength))
    if task == "inpaint":
        kwargs.update(mask_image=full_mask(size), width=size[0], height=size[1])
    elif accepts(pipe, "width"):   # Flux's img2img asks for the size; SD's reads it from the image
        kwargs.update(width=size[0], height=size[1])
    return (yield from denoiser.call(pipe, kwargs, size, denoise_steps(steps, strength)))


def run(spec, models, denoiser, seeds):
    return (yield from redraw(spec, models, denoiser, seeds, init_image(spec), spec.strength, spec.steps))


def parameters(spec) -> dict:
    return {"Denoising strength": spec.strength}
