"""Tiny Stable Diffusion models for the tests, built once per session in the real on-disk formats.

``tiny_models()`` writes into assets/models/ (the session's temporary assets folder):
  tiny/                    a diffusers folder (model_index.json + safetensors components)
  tiny-file.safetensors    the same weights in the original single-file key layout, with a sidecar
  tiny-pickle.ckpt         the same weights as a plain pickled state_dict
  evil.ckpt                a pickle that calls os.system when unpickled
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from logic import jobs, settings
from logic.engines import sd_common
from logic.models.diffusion_demo import build_tiny_pipeline, save_folder, save_single_file
from assets_cache import per_assets_dir

CACHE = jobs.ModelCache()
TOKEN = "sks dog"


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@per_assets_dir
def tiny_models() -> dict:
    models = settings.assets_dir() / "models"
    models.mkdir(parents=True, exist_ok=True)
    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    folder = save_folder(pipe, models / "tiny")
    single = save_single_file(pipe, models / "tiny-file.safetensors")
    (models / "tiny-file.safetensors.yaml").write_text(yaml.safe_dump({"token": TOKEN, "base": str(folder)}))
    ckpt = save_single_file(pipe, models / "tiny-pickle.ckpt")
    (models / "tiny-pickle.yaml").write_text(yaml.safe_dump({"base": str(folder)}))
    marker = models.parent / "evil-ran"
    evil = models / "evil.ckpt"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": {"x": _Evil(marker)}}, handle)
    return {"folder": folder, "single": single, "ckpt": ckpt, "evil": evil, "marker": marker}


BASE = dict(prompt="a red fox", model="tiny", steps=2, size=[32, 32], cfg=5.0, scheduler="Euler",
            preview_every=1, negative="blurry")


def run_engine(mode: str, output_dir: Path, **params):
    """Submit and execute a run in this process (the CLI's path without the printing)."""
    tiny_models()
    engine, spec, run = jobs.submit_run(mode, params, output_dir)
    state = jobs.execute_run(engine, spec, run, device="cpu", cache=CACHE)
    return run, state


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


@per_assets_dir
def tiny_lora() -> Path:
    """A LoRA for the tiny UNet's attention projections (random, non-zero lora_B), in diffusers' format.

    Written with ``save_lora_weights``, the format ``load_lora_weights`` reads; seeded, so always the same.
    """
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    tiny_models()
    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                         target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    folder = sd_common.loras_dir()
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                                              weight_name="tiny-lora.safetensors")
    return folder / "tiny-lora.safetensors"


def tiny_taesd(name: str = "tiny-taesd") -> Path:
    """A tiny random AutoencoderTiny (TAESD layout: 3 upsamplings, 8x) as a diffusers folder in assets/models/."""
    import torch
    from diffusers import AutoencoderTiny

    folder = settings.assets_dir() / "models" / name
    if not (folder / "config.json").is_file():
        with torch.random.fork_rng():
            torch.manual_seed(2)
            decoder = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                                      num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
        decoder.save_pretrained(folder)
    return folder


def previews(spec_params: dict) -> list:
    """The preview images a run yields, straight from the engine (models from the shared cache)."""
    import threading

    from logic.engines import diffusion
    from logic.engines.base import Progress, RunContext

    tiny_models()
    spec = diffusion.build_spec(spec_params)
    models, _ = CACHE.get(diffusion.model_key(spec, "cpu"), lambda: diffusion.load_models(spec, "cpu"))
    spec = diffusion.prepare(spec, models)
    import tempfile

    ctx = RunContext(Path(tempfile.mkdtemp()), "cpu", threading.Event())
    events = list(diffusion.generate(spec, models, ctx))
    return [e.image for e in events if isinstance(e, Progress) and e.image is not None][:-1]  # last: the result


@per_assets_dir
def tiny_safe_model() -> Path:
    """The tiny model with a real (tiny) ``StableDiffusionSafetyChecker`` + CLIPImageProcessor, as a
    diffusers folder ``assets/models/tiny-safe``; its concept thresholds are far below any cosine
    similarity, so it flags every image."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    tiny_models()
    config = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, projection_dim=16),
                        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16),
                        projection_dim=16)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-10.0)   # cosine scores are >= -1: every image is flagged
        checker.special_care_embeds_weights.fill_(-10.0)
    pipe = build_tiny_pipeline(sd_common.tokenizer_cache(), seed=0)
    pipe.register_modules(safety_checker=checker, feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                                     crop_size=32))
    pipe.register_to_config(requires_safety_checker=True)
    return save_folder(pipe, settings.assets_dir() / "models" / "tiny-safe")
