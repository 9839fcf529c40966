"""Latents to pixels: the straight-through quantiser and the decoder (one decode per step).

The straight-through estimator (Bengio et al. 2013, as used by VQ-VAE, van den Oord et al. 2017)
forwards the nearest codebook vector and passes gradients to the continuous latent unchanged.
"""

from __future__ import annotations

import torch
from PIL import Image

from ..models.vqgan import Vqgan


class ReplaceGrad(torch.autograd.Function):
    """Forward the first value, backpropagate into the second (straight-through)."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = ReplaceGrad.apply


class ClampWithGrad(torch.autograd.Function):
    """Clamp, but let gradients through where they would move the value back into range."""

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad_in):
        (x,) = ctx.saved_tensors
        return grad_in * (grad_in * (x - x.clamp(ctx.low, ctx.high)) >= 0), None, None


clamp_with_grad = ClampWithGrad.apply


class Quantiser:
    """Nearest-code search with the codebook's squared norms computed once (the fast path)."""

    def __init__(self, codebook: torch.Tensor):
        self.codebook = codebook
        self.code_norms = codebook.pow(2).sum(1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, D, H, W) -> the nearest code vectors, same shape (no gradient)."""
        flat = z.detach().float().movedim(1, -1).reshape(-1, z.shape[1])
        # |z|^2 is the same for every code, so argmin(|c|^2 - 2 z.c) picks the nearest code.
        indices = torch.addmm(self.code_norms, flat, self.codebook.T, alpha=-2).argmin(1)
        return self.codebook[indices].view(z.shape[0], z.shape[2], z.shape[3], -1).movedim(-1, 1)

    def straight_through(self, z: torch.Tensor) -> torch.Tensor:
        return replace_grad(self.nearest(z), z)


class Synthesiser:
    """Latents -> image in [0, 1] through the quantiser and decoder (one decode per step)."""

    def __init__(self, vqgan: Vqgan):
        self.vqgan = vqgan
        self.quantiser = Quantiser(vqgan.codebook)
        self.z_min = vqgan.codebook.min(0).values.view(1, -1, 1, 1)
        self.z_max = vqgan.codebook.max(0).values.view(1, -1, 1, 1)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        decoded = self.vqgan.decode(self.quantiser.straight_through(z))
        return clamp_with_grad(decoded.float().add(1).div(2), 0, 1)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (B, 3, H, W) -> quantised latent codes (no gradient).

        As taming's ``VQModel.encode`` returns them to the references: every vector is a codebook
        entry, so a start from pixels, an animation move and the MSE target are on the codebook."""
        with torch.no_grad():
            return self.quantiser.nearest(self.vqgan.encode_to_latent(pixels.mul(2).sub(1)).float())

    def clamp_(self, z: torch.Tensor) -> None:
        """Keep latents inside the codebook's range, as the notebook does after each step."""
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, self.z_max), self.z_min))


def to_image(pixels: torch.Tensor) -> Image.Image:
    array = pixels[0].detach().float().clamp(0, 1).mul(255).round().byte().movedim(0, -1).cpu().numpy()
    return Image.fromarray(array)


def to_pixels(image: Image.Image, size: list[int], device) -> torch.Tensor:
    """A PIL image resized (Lanczos) to ``size`` = [width, height] as (1, 3, H, W) in [0, 1]."""
    import numpy as np

    image = image.convert("RGB")
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.LANCZOS)
    array = torch.from_numpy(np.asarray(image).copy())
    return array.movedim(-1, 0).unsqueeze(0).float().div(255).to(device)


def fit_area(image: Image.Image, size: list[int]) -> Image.Image:
    """The references' ``resize_image``: scaled (Lanczos) to the area of ``size`` (never larger
    than it is), keeping its aspect ratio, so an image prompt is not stretched to the run's shape."""
    image = image.convert("RGB")
    ratio = image.size[0] / image.size[1]
    area = min(image.size[0] * image.size[1], size[0] * size[1])
    fitted = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
    return image if fitted == image.size else image.resize(fitted, Image.LANCZOS)
