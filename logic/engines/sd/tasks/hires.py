"""Hires fix (A1111's): generate at the size asked, upscale (Lanczos or an upscaler model), then
redraw the large image with img2img at ``hires_strength`` so the detail fits the new resolution."""

from __future__ import annotations

from ....errors import UserError
from ....models import upscalers
from ..checks import upscalers_dir
from . import denoise_steps
from . import img2img, txt2img

NAME = "hires"
MAX_HIRES_SIDE = 4096


def check(spec) -> None:
    if isinstance(spec.hires_scale, bool) or not isinstance(spec.hires_scale, (int, float)) \
            or not 1 < spec.hires_scale <= 4:
        raise UserError(f"The hires upscale must be above 1 and at most 4, not {spec.hires_scale}.")
    if isinstance(spec.hires_steps, bool) or not isinstance(spec.hires_steps, int) or not 0 <= spec.hires_steps <= 1000:
        raise UserError(f"Hires steps must be 0 (same as the steps) or a whole number up to 1000, not {spec.hires_steps}.")
    img2img.check_strength(spec.hires_strength, spec.hires_steps or spec.steps, "hires denoising strength")
    upscalers.find_upscaler(spec.hires_upscaler, upscalers_dir())
    if max(hires_size(spec, 8)) > MAX_HIRES_SIDE:
        raise UserError(f"The hires size would be {'x'.join(map(str, hires_size(spec, 8)))}: keep each side "
                        f"at most {MAX_HIRES_SIDE} pixels (lower the size or the upscale).")


def hires_size(spec, multiple: int) -> tuple[int, int]:
    return tuple(max(multiple, int(side * spec.hires_scale) // multiple * multiple) for side in spec.size)


def planned_steps(spec) -> int:
    return spec.steps + spec.batch_size * denoise_steps(spec.hires_steps or spec.steps, spec.hires_strength)


def run(spec, models, denoiser, seeds):
    images = yield from txt2img.run(spec, models, denoiser, seeds)
    upscaler = upscalers.find_upscaler(spec.hires_upscaler, upscalers_dir())
    target = hires_size(spec, models.size_multiple)
    denoiser.note(f"Upscaling to {target[0]}x{target[1]}…")
    large = [upscalers.upscale(image, target, upscaler, models.device) for image in images]
    made = []
    for seed, image in zip(seeds, large):   # one call per image: each keeps its own seed's noise
        made += yield from img2img.redraw(spec, models, denoiser, [seed], image, spec.hires_strength,
                                          spec.hires_steps or spec.steps)
    return made


def parameters(spec) -> dict:
    extras = {"Denoising strength": spec.hires_strength, "Hires upscale": spec.hires_scale}
    if spec.hires_steps:   # A1111 leaves it out when the hires pass takes the same steps
        extras["Hires steps"] = spec.hires_steps
    extras["Hires upscaler"] = spec.hires_upscaler
    return extras
