"""``python -m logic models``: what is installed, what is missing, and how to get it.

Every model file is known by its header alone (see ``logic.models.inventory``): listing is quick
and opens nothing that could run code.
"""

from __future__ import annotations

from ..models import inventory
from ..models.catalog import has_real_vqgan, setup_hint, vqgan_entries
from ..settings import assets_dir, defaults

SD_HOW_TO_GET = ("bash download-weights.sh --sd [HUB_ID] (a hub model into the cache), or put a "
                 ".safetensors/.ckpt file or a diffusers folder in assets/models/")


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list installed and missing models")
    parser.set_defaults(handler=list_models)


def list_models(args) -> int:
    print(f"Assets folder: {assets_dir()}")
    print(f"Hugging Face cache: {inventory.hub_cache_dir()}")
    _print_vqgan_and_clip()
    _print_sd_models()
    _print_extras()
    return 0


def _print_vqgan_and_clip() -> None:
    print("VQGAN models:")
    for entry in vqgan_entries():
        where = f"installed  {entry.path}" if entry.installed else f"missing    get it: {entry.how_to_get}"
        print(f"  {entry.name:28s} {where}")
    print("  demo                         always available (small random models, --demo)")
    cached = inventory.cached_clip_models()
    print("CLIP: " + (f"in the cache: {', '.join(cached)}; others download" if cached else "downloads")
          + " on first use into the cache; pre-fetch with `bash download-weights.sh --clip ViT-B-32:openai`.")
    if not has_real_vqgan():
        print(setup_hint())


def _print_sd_models() -> None:
    found = inventory.sd_models()
    print("Stable Diffusion models:")
    _print_rows(found)
    default = defaults("diffusion").get("model") or ""
    names = {f.name for f in found}
    if default and default not in names:
        print(f"  {default} (the default) is missing: get it with `bash download-weights.sh --sd` "
              "(about 4 GB), or choose another with --model.")
    if not found:
        print(f"  none installed: {SD_HOW_TO_GET}; the demo model (--demo) always works.")


def _print_extras() -> None:
    sections = [
        ("LoRAs", "assets/loras", inventory.loras(),
         "put LoRA .safetensors files there (download-weights.sh does not fetch LoRAs); use with --lora NAME:WEIGHT"),
        ("Textual-inversion embeddings", "assets/embeddings", inventory.embeddings(),
         "put .safetensors/.pt files there and write the file name in a prompt"),
        ("VAEs", "assets/vae", inventory.vaes(),
         "put a VAE .safetensors file there to replace a model's own (--vae NAME)"),
        ("Upscalers", "assets/upscalers", inventory.upscalers(),
         "put ESRGAN-style .pth/.safetensors files there; Lanczos needs none"),
    ]
    for title, folder, found, how in sections:
        print(f"{title} ({folder}/):")
        _print_rows(found)
        if title == "Upscalers":
            print(f"  {'Lanczos':28s} always available (no file)")
        if not found:
            print(f"  none: {how}.")


def _print_rows(found: list[inventory.Found]) -> None:
    for item in found:
        size = inventory.human_size(item.size)
        print(f"  {item.name:28s} {item.kind}" + (f", {size}" if size else "") + f"  {item.path}")
