"""``python -m logic models``: every kind of model file listed with what it is, read from headers
only (nothing unpickled), and what is missing shown with how to get it."""

from __future__ import annotations

import hashlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from logic import settings
from logic.commands.models import list_models
from logic.models import inventory
from sd_family_helpers import tiny_sdxl
from sd_helpers import _Evil, tiny_lora, tiny_models


MINE = ("vae/tiny-vae.safetensors", "embeddings/ink-style.safetensors", "embeddings/xl-style.safetensors",
        "embeddings/old-style.pt", "upscalers/tiny-x4.safetensors", "upscalers/old-x2.pth",
        "models/damaged.safetensors")


def _listing(capsys) -> str:
    assert list_models(None) == 0
    return capsys.readouterr().out


def _row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(name + " "))


def _hub_snapshot(cache, repo_id: str, folder) -> None:
    """A diffusers folder as huggingface_hub caches it: blobs named by hash, snapshot files linking to them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = repo / "snapshots" / revision / path.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Real-format files of every kind in the session's assets folder, and a hub cache of one pipeline."""
    sd1, sdxl, lora = tiny_models(), tiny_sdxl(), tiny_lora()
    assets = settings.assets_dir()
    for folder in ("embeddings", "vae", "upscalers"):
        (assets / folder).mkdir(exist_ok=True)
    pipe_vae = {k: v.contiguous() for k, v in _tiny_vae_state(sd1["folder"]).items()}
    save_file(pipe_vae, str(assets / "vae" / "tiny-vae.safetensors"))
    save_file({"emb_params": torch.zeros(2, 768)}, str(assets / "embeddings" / "ink-style.safetensors"))
    save_file({"clip_l": torch.zeros(3, 768), "clip_g": torch.zeros(3, 1280)},
              str(assets / "embeddings" / "xl-style.safetensors"))
    marker = tmp_path_factory.mktemp("evil") / "ran"
    with open(assets / "embeddings" / "old-style.pt", "wb") as handle:
        pickle.dump({"string_to_param": _Evil(marker)}, handle)
    save_file({"conv_first.weight": torch.zeros(4, 3, 3, 3), "conv_last.weight": torch.zeros(3, 4, 3, 3)},
              str(assets / "upscalers" / "tiny-x4.safetensors"))
    with open(assets / "upscalers" / "old-x2.pth", "wb") as handle:
        pickle.dump({"params": _Evil(marker)}, handle)
    (assets / "models" / "damaged.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    hub = tmp_path_factory.mktemp("hub")
    _hub_snapshot(hub, "tiny-org/tiny-sd", sd1["folder"])
    yield {"sd1": sd1, "sdxl": sdxl, "lora": lora, "hub": hub, "marker": marker, "assets": assets}
    for name in MINE:  # only these: other tests keep cached files in the same folders
        (assets / name).unlink(missing_ok=True)


def _tiny_vae_state(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))


def test_models_lists_every_kind_with_its_family(installed, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(installed["hub"]))
    text = _listing(capsys)
    assert "Stable Diffusion 1.x" in _row(text, "tiny-org/tiny-sd")
    assert str(installed["hub"]) in _row(text, "tiny-org/tiny-sd")
    assert "Stable Diffusion 1.x" in _row(text, "tiny")
    assert "Stable Diffusion 1.x" in _row(text, "tiny-file.safetensors")
    assert "Stable Diffusion XL" in _row(text, "tiny-sdxl")
    assert "Stable Diffusion XL" in _row(text, "tiny-sdxl-file.safetensors")
    assert "family not read" in _row(text, "tiny-pickle.ckpt") and "python -m logic convert" in text
    assert "unreadable" in _row(text, "damaged.safetensors")
    assert "diffusers LoRA" in _row(text, "tiny-lora.safetensors")
    assert "SD 1.x" in _row(text, "ink-style") and "2 vector(s)" in _row(text, "ink-style")
    assert "SDXL embedding, 3 vector(s)" in _row(text, "xl-style")
    assert "not opened" in _row(text, "old-style")
    assert "VAE, 4 latent channels" in _row(text, "tiny-vae.safetensors")
    assert "upscaler, 2 tensors" in _row(text, "tiny-x4.safetensors")
    assert "not opened" in _row(text, "old-x2.pth") and "always available" in _row(text, "Lanczos")
    assert not installed["marker"].exists() and not installed["sd1"]["marker"].exists()  # nothing unpickled


def test_lora_base_model_from_its_cross_attention_width(tmp_path):
    sd15 = tmp_path / "sd15.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight":
               torch.zeros(4, 768)}, str(sd15))
    xl = tmp_path / "xl.safetensors"
    save_file({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 1280)}, str(xl))
    assert inventory._lora_base(inventory._header(sd15)) == "SD 1.x"
    assert inventory._lora_base(inventory._header(xl)) == "SDXL"


def test_an_empty_machine_shows_how_to_get_each_kind(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ATELIER_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    text = _listing(capsys)
    assert "bash download-weights.sh vqgan_imagenet_f16_16384" in text
    assert "(the default) is missing: get it with `bash download-weights.sh --sd`" in text
    assert "none installed: bash download-weights.sh --sd [HUB_ID]" in text
    assert "none: put LoRA .safetensors files there" in text
    assert "none: put .safetensors/.pt files there" in text
    assert "none: put a VAE .safetensors file there" in text
    assert "none: put ESRGAN-style" in text
    assert "bash download-weights.sh --clip ViT-B-32:openai" in text
