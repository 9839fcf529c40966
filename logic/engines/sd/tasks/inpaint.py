"""Inpainting: repaint the white part of a mask, as A1111 does it.

* Works with inpainting models (9-channel UNet: latents + mask + masked image) and with ordinary
  ones (diffusers' inpaint pipeline then keeps the unmasked latents at each step).
* ``mask_blur``: the mask is blurred (Gaussian, that radius in pixels) so the seam fades.
* ``inpaint_only_masked`` ("Only masked" in A1111): only the mask's bounding box, grown by
  ``inpaint_padding`` pixels and to the run's aspect ratio, is cut out, inpainted at the run's size
  and pasted back, so a small region gets the model's full resolution.
* The result keeps the original pixels outside the (blurred) mask exactly.
"""

from __future__ import annotations

from PIL import Image, ImageFilter

from ....errors import UserError
from ....media import open_user_image
from . import common_kwargs, denoise_steps
from .img2img import check_strength

NAME = "inpaint"


def check(spec) -> None:
    if not spec.init_image or not spec.mask:
        raise UserError("Inpainting needs an image and a mask (white = repaint): give both.")
    image = open_user_image(spec.init_image, "init image")
    mask = open_user_image(spec.mask, "mask")
    if mask_of(mask, image.size).getbbox() is None:
        raise UserError("The mask is all black, so nothing would be repainted: paint the area to change in white.")
    check_strength(spec.strength, spec.steps, "denoising strength")
    for name in ("mask_blur", "inpaint_padding"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 256:
            raise UserError(f"The {name.replace('_', ' ')} must be a whole number of pixels from 0 to 256, not {value}.")


def planned_steps(spec) -> int:
    return denoise_steps(spec.steps, spec.strength)


def mask_of(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A mask image as 'L' (white = repaint) at ``size``; transparency counts as unpainted."""
    if mask.mode in ("RGBA", "LA"):
        alpha = mask.getchannel("A")
        mask = Image.composite(mask.convert("L"), Image.new("L", mask.size, 0), alpha)
    mask = mask.convert("L")
    return mask if mask.size == tuple(size) else mask.resize(tuple(size), Image.NEAREST)


def blurred(mask: Image.Image, radius: int) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int]:
    """The mask's bounding box grown by ``padding`` pixels, inside the image."""
    left, top, right, bottom = mask.getbbox()
    width, height = mask.size
    return max(left - padding, 0), max(top - padding, 0), min(right + padding, width), min(bottom + padding, height)


def fit_ratio(region, ratio: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Grow ``region`` (never shrink it) to width/height = ``ratio``, shifted to stay in the image."""
    left, top, right, bottom = region
    width, height = right - left, bottom - top
    if width / height < ratio:
        width = min(round(height * ratio), size[0])
    else:
        height = min(round(width / ratio), size[1])
    cx, cy = (left + right) / 2, (top + bottom) / 2
    left = int(min(max(cx - width / 2, 0), size[0] - width))
    top = int(min(max(cy - height / 2, 0), size[1] - height))
    return left, top, left + width, top + height


def run(spec, models, denoiser, seeds):
    original = open_user_image(spec.init_image, "init image").convert("RGB")
    if not spec.inpaint_only_masked:
        original = original.resize(tuple(spec.size), Image.LANCZOS)
    mask = blurred(mask_of(open_user_image(spec.mask, "mask"), original.size), spec.mask_blur)
    region = (0, 0, *original.size)
    if spec.inpaint_only_masked:
        region = fit_ratio(crop_region(mask_of(open_user_image(spec.mask, "mask"), original.size),
                                       spec.inpaint_padding), spec.size[0] / spec.size[1], original.size)
    size = tuple(spec.size)
    image = original.crop(region).resize(size, Image.LANCZOS)
    pipe = models.pipeline("inpaint")
    kwargs = common_kwargs(spec, models, denoiser, seeds)
    kwargs.update(image=image, mask_image=mask.crop(region).resize(size, Image.LANCZOS),
                  strength=float(spec.strength), width=size[0], height=size[1])
    images = yield from denoiser.call(pipe, kwargs, size, planned_steps(spec))
    return [paste_back(original, made, mask, region) for made in images]


def paste_back(original: Image.Image, made: Image.Image, mask: Image.Image, region) -> Image.Image:
    """The new pixels where the mask is white, the original's elsewhere (blended along the blur)."""
    width, height = region[2] - region[0], region[3] - region[1]
    layer = original.copy()
    layer.paste(made.resize((width, height), Image.LANCZOS), region[:2])
    return Image.composite(layer, original, mask)


def parameters(spec) -> dict:
    extras = {"Denoising strength": spec.strength, "Mask blur": spec.mask_blur}
    if spec.inpaint_only_masked:
        extras.update({"Inpaint area": "Only masked", "Masked area padding": spec.inpaint_padding})
    return extras
