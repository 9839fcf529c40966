"""Demo models: small random-initialised VQGAN and CLIP, so every flow works with no downloads.

They are built deterministically (fixed seed) on first use, written in the real on-disk formats
(a taming yaml + a Lightning-layout .ckpt; an open_clip JSON config + safetensors) and then loaded
through the same loading code as real weights. Their images are coloured noise that the loss
still shapes: they prove the plumbing, not the art.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import yaml

from .vqgan import VqganFiles, build_vqgan

log = logging.getLogger(__name__)

DEMO_VQGAN = "demo"
DEMO_CLIP = "demo-clip"

DEMO_VQGAN_CONFIG = {
    "model": {
        "target": "taming.models.vqgan.VQModel",
        "params": {
            "embed_dim": 32, "n_embed": 256,
            "ddconfig": {"double_z": False, "z_channels": 32, "resolution": 64, "in_channels": 3,
                         "out_ch": 3, "ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1,
                         "attn_resolutions": [], "dropout": 0.0},
            "lossconfig": {"target": "torch.nn.Identity"},
        },
    }
}

DEMO_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def ensure_demo_vqgan(folder: Path) -> VqganFiles:
    """Write the demo VQGAN pair into ``folder`` unless it is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    config, weights = folder / f"{DEMO_VQGAN}.yaml", folder / f"{DEMO_VQGAN}.ckpt"
    if not (config.is_file() and weights.is_file()):
        log.info("Writing the demo VQGAN to %s", folder)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model, _ = build_vqgan(DEMO_VQGAN_CONFIG)
            # Spread the codebook so random codes decode to varied colours rather than grey.
            model.quantize.embedding.weight.data.uniform_(-1.0, 1.0)
        _write_atomic(weights, lambda p: torch.save(
            {"state_dict": model.state_dict(), "epoch": 0, "global_step": 0}, p))
        _write_atomic(config, lambda p: p.write_text(yaml.safe_dump(DEMO_VQGAN_CONFIG)))
    return VqganFiles(DEMO_VQGAN, config, weights)


def ensure_demo_clip(folder: Path) -> tuple[str, Path]:
    """Write the demo CLIP config and weights; returns (model name, weights path)."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config, weights = folder / f"{DEMO_CLIP}.json", folder / f"{DEMO_CLIP}.safetensors"
    if not config.is_file():
        _write_atomic(config, lambda p: p.write_text(json.dumps(DEMO_CLIP_CONFIG, indent=2)))
    open_clip.add_model_config(config)
    if not weights.is_file():
        log.info("Writing the demo CLIP to %s", folder)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            logging.disable(logging.WARNING)  # open_clip warns that the model is random: that is the point
            try:
                model = open_clip.create_model(DEMO_CLIP, pretrained=None)
            finally:
                logging.disable(logging.NOTSET)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        _write_atomic(weights, lambda p: save_file(state, str(p)))
    return DEMO_CLIP, weights


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    tmp.replace(path)
