"""Previews from the latents while a run denoises: a tiny decoder (TAESD) when installed, else the
family's fixed latent -> RGB linear map (no VAE decode per step)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from ...errors import UserError
from ...models import diffusion as sd
from .checks import models_dir

# SD 1.x factors (ComfyUI's previewer), used when no family is given.
LATENT_RGB = torch.tensor([[0.3512, 0.2297, 0.3227],
                           [0.3250, 0.4974, 0.2350],
                           [-0.2829, 0.1762, 0.2721],
                           [-0.2120, -0.2616, -0.7177]])


def preview_factors(family, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The family's (channels x 3) factors and RGB bias; a latent of another width gets a neutral map."""
    if family is not None and family.preview.get("factors"):
        factors = torch.tensor(family.preview["factors"], dtype=torch.float32)
        bias = torch.tensor(family.preview.get("bias", [0.0, 0.0, 0.0]), dtype=torch.float32)
    else:
        factors, bias = LATENT_RGB, torch.zeros(3)
    if factors.shape[0] != channels:   # e.g. a tiny test model: the mean of the channels, grey
        factors, bias = torch.full((channels, 3), 1.0 / channels), torch.zeros(3)
    return factors, bias


def unpack_latents(latents: torch.Tensor, size: tuple[int, int], vae_factor: int = 8) -> torch.Tensor:
    """Flux's packed (1, h/2 * w/2, 4C) latents -> (1, C, h, w) (the inverse of its 2x2 patching)."""
    height, width = size[1] // vae_factor, size[0] // vae_factor
    batch, _, packed = latents.shape
    channels = packed // 4
    latents = latents.view(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, channels, height, width)


LINEAR_PREVIEW = "linear"
TINY_DECODER_PREVIEW = "tiny decoder"


def latents_to_preview(latents: torch.Tensor, size: tuple[int, int], decoder=None, family=None) -> Image.Image:
    """(1, C, h, w) latents -> an RGB image of ``size``: the tiny decoder's image when one is given,
    else the family's linear map (cheap, rough, good enough to watch). Packed latents (Flux's
    (1, h/2 * w/2, 4C)) are unpacked first."""
    if family is not None and family.packed_latents and latents.ndim == 3:
        latents = unpack_latents(latents, size)
    if decoder is not None and decoder.config.latent_channels == latents.shape[1]:
        return _decode_preview(latents, size, decoder)
    factors, bias = preview_factors(family, latents.shape[1])
    rgb = torch.einsum("chw,cr->rhw", latents[0].float().cpu(), factors) + bias[:, None, None]
    array = ((rgb + 1) / 2).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array).resize(size, Image.BILINEAR)


def _decode_preview(latents: torch.Tensor, size: tuple[int, int], decoder) -> Image.Image:
    """TAESD (Bohan Ollin Boer, 2023): a distilled VAE decoder that reads the UNet's scaled latents as they are."""
    parameter = next(decoder.parameters())
    with torch.no_grad():
        rgb = decoder.decode(latents.to(parameter.device, parameter.dtype)).sample[0]
    array = ((rgb.float().cpu() + 1) / 2).clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(array)
    return image if image.size == tuple(size) else image.resize(size, Image.BILINEAR)


def find_preview_decoder(setting: str | None) -> Path | None:
    """The tiny decoder folder a setting names (a path, or a folder in assets/models/), when it is there.

    Not there -> None (previews use the linear map). There but not an AutoencoderTiny -> one sentence.
    """
    if not setting:
        return None
    for folder in (Path(str(setting)).expanduser(), models_dir() / str(setting)):
        if folder.is_dir():
            break
    else:
        return None
    config = folder / "config.json"
    class_name = json.loads(config.read_text(encoding="utf-8")).get("_class_name") if config.is_file() else None
    if class_name != "AutoencoderTiny":
        raise UserError(f"The preview decoder folder {folder} does not hold a diffusers AutoencoderTiny "
                        "(TAESD, e.g. madebyollin/taesd): put one there or set diffusion.preview_decoder to null.")
    return folder.resolve()


def preview_decoder(models: sd.SdModels, folder: Path | None):
    """The AutoencoderTiny in ``folder`` on the model's device and dtype, loaded once per model."""
    if folder is None:
        return None
    key = str(folder)
    if key not in models.preview_decoders:
        from diffusers import AutoencoderTiny

        decoder = AutoencoderTiny.from_pretrained(key, torch_dtype=models.plan.torch_dtype, local_files_only=True)
        models.preview_decoders[key] = decoder.to(models.device).eval()
    return models.preview_decoders[key]


def preview_method(spec, folder: Path | None) -> dict:
    """What details.json says about the previews."""
    if spec.preview_every == 0:
        return {"method": "none"}
    if folder is None:
        return {"method": LINEAR_PREVIEW, "decoder": None}
    return {"method": TINY_DECODER_PREVIEW, "decoder": str(folder)}
