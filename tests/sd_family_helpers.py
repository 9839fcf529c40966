"""Tiny random models of every Stable Diffusion family, in the real on-disk formats.

Shapes follow diffusers' own pipeline tests (``get_dummy_components``), with a 4-block VAE so that
one latent pixel is 8x8 image pixels as in the real models. Each family is written as a diffusers
folder and, where the family has one, as a single file in the original key layout
(``pipeline_to_original``) with a sidecar naming the folder as its ``base`` (the shipped full-size
configs do not fit tiny weights); the family itself is always detected from the file's keys.
"""

from __future__ import annotations


import torch
import yaml

from logic import settings
from logic.engines import sd_common
from logic.models.diffusion_demo import TINY_TEXT, TINY_UNET, TINY_VAE, build_tiny_pipeline, save_folder, save_single_file
from logic.models.sd.tokenizers import load_clip_tokenizer
from assets_cache import per_assets_dir


def _models_dir():
    folder = settings.assets_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _seeded(seed, factory):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


def _write(pipe, name: str, single: bool = True, sidecar: dict | None = None) -> dict:
    folder = save_folder(pipe, _models_dir() / name)
    out = {"folder": folder}
    if single:
        path = save_single_file(pipe, _models_dir() / f"{name}-file.safetensors")
        (_models_dir() / f"{name}-file.safetensors.yaml").write_text(yaml.safe_dump({"base": str(folder), **(sidecar or {})}))
        out["single"] = path
    return out


@per_assets_dir
def tiny_sd1_inpaint() -> dict:
    """SD 1.x with a 9-channel inpainting UNet (StableDiffusionInpaintPipeline folder + single file)."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    unet = _seeded(1, lambda: UNet2DConditionModel(**{**TINY_UNET, "in_channels": 9}))
    inpaint = StableDiffusionInpaintPipeline(**{**pipe.components, "unet": unet}, requires_safety_checker=False)
    return _write(inpaint, "tiny-inpaint")


@per_assets_dir
def tiny_sd2() -> dict:
    """SD 2.x: OpenCLIP-style text encoder (gelu, padded with '!'), linear projections, v-prediction."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = _seeded(0, lambda: UNet2DConditionModel(**{**TINY_UNET, "use_linear_projection": True,
                                                      "upcast_attention": True, "attention_head_dim": (2, 4)}))
    vae = _seeded(0, lambda: AutoencoderKL(**TINY_VAE))
    text = _seeded(0, lambda: CLIPTextModel(CLIPTextConfig(**{**TINY_TEXT, "hidden_act": "gelu"})).eval())
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, scheduler=scheduler,
                                   tokenizer=load_clip_tokenizer(sd_common.tokenizer_cache(), pad_token="!"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    # A1111's sidecar for a 768-v file is the original LDM config: its parameterization says "v".
    return _write(pipe, "tiny-sd2", sidecar={"model": {"params": {"parameterization": "v"}}})


def sdxl_components(seed: int = 0, in_channels: int = 4) -> dict:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    unet = _seeded(seed, lambda: UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=80, norm_num_groups=32))
    vae = _seeded(seed, lambda: AutoencoderKL(**{**TINY_VAE, "scaling_factor": 0.13025}))
    text = _seeded(seed, lambda: CLIPTextModel(CLIPTextConfig(**TINY_TEXT)).eval())
    text_2 = _seeded(seed + 1, lambda: CLIPTextModelWithProjection(
        CLIPTextConfig(**{**TINY_TEXT, "hidden_act": "gelu", "hidden_size": 48})).eval())
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return dict(unet=unet, vae=vae, text_encoder=text, text_encoder_2=text_2, scheduler=scheduler,
                tokenizer=load_clip_tokenizer(sd_common.tokenizer_cache()),
                tokenizer_2=load_clip_tokenizer(sd_common.tokenizer_cache(), pad_token="!"))


@per_assets_dir
def tiny_sdxl() -> dict:
    """SDXL base: two text encoders (CLIP-L, OpenCLIP bigG with projection), text_time embedding.

    The encoders have different widths (32, 48) as the real ones do (768, 1280): diffusers tells the
    two apart in a single file by width; cross-attention takes both, 80.
    """
    from diffusers import StableDiffusionXLPipeline

    return _write(StableDiffusionXLPipeline(**sdxl_components()), "tiny-sdxl")


@per_assets_dir
def tiny_sdxl_inpaint() -> dict:
    from diffusers import StableDiffusionXLInpaintPipeline

    pipe = StableDiffusionXLInpaintPipeline(**sdxl_components(in_channels=9), requires_aesthetics_score=False)
    return _write(pipe, "tiny-sdxl-inpaint")


@per_assets_dir
def tiny_fp16_variant() -> dict:
    """The tiny SD 1.x folder saved as ``*.fp16.safetensors`` only (as many hub snapshots are)."""
    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    folder = _models_dir() / "tiny-fp16"
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")
    return {"folder": folder}


def tiny_t5(seed: int = 0, d_model: int = 32):
    """A tiny T5 encoder and a real ``T5Tokenizer`` (Unigram, tokenizer.json) built from a small vocabulary
    offline; the pieces cover lowercase words letter by letter, so any prompt tokenizes."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    words = ["a", "red", "fox", "blue", "bird", "in", "the", "snow", "lighthouse", "storm"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(chr(c), -3.0) for c in range(97, 123)] + [("▁" + w, -1.0) for w in words]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    encoder = _seeded(seed, lambda: T5EncoderModel(T5Config(d_model=d_model, d_ff=37, d_kv=8, num_layers=1, num_heads=4,
                                                            vocab_size=len(tokenizer), relative_attention_num_buckets=8)))
    return encoder.eval(), tokenizer


def _flow_vae(seed: int, shift: float, scale: float):
    from diffusers import AutoencoderKL

    return _seeded(seed, lambda: AutoencoderKL(**{**TINY_VAE, "latent_channels": 16, "shift_factor": shift,
                                                  "scaling_factor": scale, "use_quant_conv": False,
                                                  "use_post_quant_conv": False}))


def _save_tensors(state: dict, path, sidecar: dict | None = None):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(path))
    if sidecar is not None:
        path.with_name(path.name + ".yaml").write_text(yaml.safe_dump(sidecar))
    return path


@per_assets_dir
def tiny_sd3() -> dict:
    """SD 3.5 medium-like: an MMDiT-X (a second attention in block 0, RMS q/k norms) on 16-channel latents,
    CLIP-L (identity projection, as diffusers takes a file's) + CLIP-G (wider, as the real 768 / 1280: diffusers
    tells a file's two apart by width) and T5. Written as a folder and as Stability's single files: with
    the three encoders (``single``) and without any (``bare``), each with a sidecar naming the folder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from logic.models.sd.export import sd3_pipeline_to_original

    transformer = _seeded(0, lambda: SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=96, pooled_projection_dim=80,
        dual_attention_layers=(0,), qk_norm="rms_norm"))
    text = _seeded(0, lambda: CLIPTextModelWithProjection(CLIPTextConfig(**TINY_TEXT)).eval())
    with torch.no_grad():
        text.text_projection.weight.copy_(torch.eye(32))
    text_2 = _seeded(1, lambda: CLIPTextModelWithProjection(
        CLIPTextConfig(**{**TINY_TEXT, "hidden_act": "gelu", "hidden_size": 48, "projection_dim": 48})).eval())
    t5, t5_tokenizer = tiny_t5(d_model=96)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, vae=_flow_vae(0, 0.0609, 1.5305), text_encoder=text, text_encoder_2=text_2,
        text_encoder_3=t5, tokenizer=load_clip_tokenizer(sd_common.tokenizer_cache()),
        tokenizer_2=load_clip_tokenizer(sd_common.tokenizer_cache(), pad_token="!"), tokenizer_3=t5_tokenizer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    out = _write(pipe, "tiny-sd3", single=False)
    sidecar = {"base": str(out["folder"])}
    out["single"] = _save_tensors(sd3_pipeline_to_original(pipe), _models_dir() / "tiny-sd3-file.safetensors", sidecar)
    out["bare"] = _save_tensors(sd3_pipeline_to_original(pipe, encoders=False),
                                _models_dir() / "tiny-sd3-bare.safetensors", sidecar)
    return out


@per_assets_dir
def tiny_flux() -> dict:
    """FLUX.1-dev-like: two double- and two single-stream blocks, packed 16-channel latents, embedded guidance.

    Its transformer is also written alone, as a file in BFL's layout (``single``, as BFL and ComfyUI
    ship them) and in diffusers' (``single_diffusers``), each with a sidecar naming the folder as base."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from logic.models.sd import bfl

    transformer = _seeded(0, lambda: FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=[4, 4, 8]))
    text = _seeded(0, lambda: CLIPTextModel(CLIPTextConfig(**TINY_TEXT)).eval())
    t5, t5_tokenizer = tiny_t5()
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    pipe = FluxPipeline(transformer=transformer, vae=_flow_vae(0, 0.1159, 0.3611), text_encoder=text,
                        text_encoder_2=t5, tokenizer=load_clip_tokenizer(sd_common.tokenizer_cache()),
                        tokenizer_2=t5_tokenizer, scheduler=scheduler)
    out = _write(pipe, "tiny-flux", single=False)
    sidecar = {"base": str(out["folder"])}
    weights = transformer.state_dict()
    out["single"] = _save_tensors(bfl.to_bfl(weights), _models_dir() / "tiny-flux-transformer.safetensors", sidecar)
    out["single_diffusers"] = _save_tensors(weights, _models_dir() / "tiny-flux-diffusers.safetensors", sidecar)
    return out
