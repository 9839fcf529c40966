"""``python -m logic models``: what is installed, what is missing, and how to get it."""

from __future__ import annotations

from ..models.catalog import has_real_vqgan, setup_hint, vqgan_entries
from ..settings import assets_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list installed and missing models")
    parser.set_defaults(handler=list_models)


def list_models(args) -> int:
    print(f"Assets folder: {assets_dir()}")
    print("VQGAN models:")
    for entry in vqgan_entries():
        where = f"installed  {entry.path}" if entry.installed else f"missing    get it: {entry.how_to_get}"
        print(f"  {entry.name:28s} {where}")
    print("  demo                         always available (small random models, --demo)")
    print("CLIP: downloads on first use into the usual cache (~/.cache/huggingface); "
          "pre-fetch with `bash download-weights.sh --clip ViT-B-32:openai`.")
    if not has_real_vqgan():
        print(setup_hint())
    return 0
