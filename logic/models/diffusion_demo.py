"""A tiny random-initialised Stable Diffusion, built deterministically, in the real formats.

The same shapes as diffusers' ``get_dummy_components`` (UNet block_out_channels (32, 64),
cross-attention 32; a CLIP text encoder with hidden size 32 and the real 49,408-token vocabulary),
except that the VAE has four blocks so that, like SD, one latent pixel stands for 8x8 image pixels.
Written as a diffusers folder (``model_index.json`` + components) and, on request, as one
original-layout checkpoint, then loaded through ``logic.models.sd`` like any real model.
Its images are coloured noise: it proves the plumbing, not the art.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .sd.export import pipeline_to_original
from .sd.tokenizers import load_clip_tokenizer

log = logging.getLogger(__name__)

DEMO_SD = "demo"

TINY_UNET = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=32,
                 attention_head_dim=8)
TINY_VAE = dict(block_out_channels=(32, 32, 64, 64), in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=32, sample_size=64)
TINY_TEXT = dict(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
                 num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=49408,
                 max_position_embeddings=77, projection_dim=32)


def build_tiny_pipeline(tokenizer_dir: Path, seed: int = 0):
    """A StableDiffusionPipeline of tiny random components (same seed, same weights)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**TINY_UNET)
        torch.manual_seed(seed)
        vae = AutoencoderKL(**TINY_VAE)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder.eval(),
                                   tokenizer=load_clip_tokenizer(tokenizer_dir), scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_folder(pipe, folder: Path) -> Path:
    """Write ``pipe`` as a diffusers folder (safetensors weights), atomically by renaming."""
    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    pipe.save_pretrained(tmp, safe_serialization=True)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def save_single_file(pipe, path: Path) -> Path:
    """Write ``pipe`` as one checkpoint in the original key layout (.safetensors, or a plain .ckpt)."""
    path = Path(path)
    state = pipeline_to_original(pipe)
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 0}, path)
    return path


def ensure_demo_sd(demo_dir: Path, tokenizer_dir: Path) -> Path:
    """The demo model folder ``<demo_dir>/diffusion``, written on first use."""
    folder = Path(demo_dir) / "diffusion"
    if not (folder / "model_index.json").is_file():
        log.info("Writing the demo Stable Diffusion to %s", folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        save_folder(build_tiny_pipeline(tokenizer_dir), folder)
    return folder
