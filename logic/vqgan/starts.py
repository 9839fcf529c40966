"""Where the latent starts: random codebook entries (the notebook's default), encoded pixel noise,
an encoded random gradient (both from the VQGAN-CLIP generator's ``--init_noise``), or an init image
resized with Lanczos to the run size and encoded."""

from __future__ import annotations

import torch
from PIL import Image

from ..models.vqgan import Vqgan
from .synthesis import Synthesiser, to_pixels

INIT_NOISES = ("codes", "pixels", "gradient")


def random_codes(vqgan: Vqgan, size: list[int], generator: torch.Generator, device) -> torch.Tensor:
    """Latents made of random codebook entries."""
    h, w = size[1] // vqgan.factor, size[0] // vqgan.factor
    indices = torch.randint(vqgan.n_embed, (h * w,), generator=generator).to(device)
    return vqgan.codebook[indices].view(1, h, w, -1).movedim(-1, 1).clone().float()


def noise_pixels(size: list[int], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(1, 3, size[1], size[0], generator=generator)


def gradient_pixels(size: list[int], generator: torch.Generator) -> torch.Tensor:
    """A linear blend between two random colours, top to bottom."""
    start, end = torch.rand(2, 3, 1, 1, generator=generator)
    ramp = torch.linspace(0, 1, size[1]).view(1, 1, -1, 1)
    return (start + (end - start) * ramp).expand(1, 3, size[1], size[0]).contiguous()


def start_latent(synth: Synthesiser, size: list[int], noise: str, init_image: Image.Image | None,
                 generator: torch.Generator, device) -> torch.Tensor:
    """The first latent of a fresh run (a continued run starts from its parent's instead)."""
    if init_image is not None:
        return synth.encode(to_pixels(init_image, size, device))
    if noise == "pixels":
        return synth.encode(noise_pixels(size, generator).to(device))
    if noise == "gradient":
        return synth.encode(gradient_pixels(size, generator).to(device))
    return random_codes(synth.vqgan, size, generator, device)
