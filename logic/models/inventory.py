"""What model files are on this machine, read from headers only (for ``python -m logic models``).

Nothing here loads weights or unpickles anything: a .safetensors file is known by its checked
header (tensor names and shapes), a diffusers folder by its ``model_index.json``; a .ckpt, .pt or
.bin file is listed by name and size alone, since reading it means unpickling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import UserError

SD_FILE_SUFFIXES = (".safetensors", ".ckpt")
UNREAD = "not opened (a pickle-based file; its kind shows when it is used)"


@dataclass(frozen=True)
class Found:
    """One model on disk: its name as it is chosen, what it is, and where it lies."""

    name: str
    kind: str       # the family, format or width, in words
    path: Path
    size: int = 0   # bytes; 0 for folders


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME, XDG)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "huggingface" / "hub"


# --- Stable Diffusion ----------------------------------------------------------------------------


def sd_models() -> list[Found]:
    """Stable Diffusion models: diffusers pipelines in the hub cache, then files and folders in
    assets/models/."""
    return hub_pipelines() + local_sd_models(settings.assets_dir() / "models")


def hub_pipelines(cache: Path | None = None) -> list[Found]:
    """Pipelines in the hub cache (``models--org--name`` folders whose snapshot has a model_index.json)."""
    found = []
    for repo in _repo_folders(cache or hub_cache_dir()):
        snapshot = _snapshot_with(repo, "model_index.json")
        if snapshot is not None:
            found.append(Found(_repo_id(repo), _folder_family(snapshot), snapshot))
    return found


def local_sd_models(folder: Path) -> list[Found]:
    found = []
    for path in _entries(folder):
        if path.is_dir() and (path / "model_index.json").is_file():
            found.append(Found(path.name, _folder_family(path), path))
        elif path.is_file() and path.suffix.lower() in SD_FILE_SUFFIXES:
            found.append(Found(path.name, _file_family(path), path, path.stat().st_size))
    return found


def _folder_family(folder: Path) -> str:
    from .sd.families import family_of_folder
    from .sd.sources import read_sidecar

    try:
        named = read_sidecar(folder).get("family")
        return _family_title(named) if named else family_of_folder(folder).title
    except (UserError, OSError, ValueError) as exc:
        return _first_sentence(exc)


def _file_family(path: Path) -> str:
    from .sd.families import family_of_keys
    from .sd.sources import read_sidecar

    try:
        named = read_sidecar(path).get("family")
        if named:
            return _family_title(named)
        if path.suffix.lower() != ".safetensors":
            return "family not read (.ckpt: convert it with `python -m logic convert` to see it here)"
        return family_of_keys(_tensor_names(path), path.name).title
    except (UserError, OSError, ValueError) as exc:
        return _first_sentence(exc)


def _family_title(name: str) -> str:
    from .sd.families import get_family

    return get_family(str(name)).title + " (family from its sidecar)"


# --- LoRAs, embeddings, VAEs, upscalers ----------------------------------------------------------


def loras() -> list[Found]:
    from ..engines.sd.checks import loras_dir
    from .lora_formats import classify

    found = []
    for path in _files(loras_dir(), (".safetensors",)):
        try:
            header = _header(path)
            kind = f"{classify(dict.fromkeys(_names(header)))} LoRA"
            base = _lora_base(header)
            kind += f" for {base}" if base else ""
        except (UserError, OSError, ValueError) as exc:
            kind = _first_sentence(exc)
        found.append(Found(path.name, kind, path, path.stat().st_size))
    return found


# The text width a LoRA's cross-attention key projection takes says which base model it was made for.
_CONTEXT_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}


def _lora_base(header: dict) -> str | None:
    names = _names(header)
    if any(n.startswith(("lora_te2_", "text_encoder_2.", "te2.")) for n in names):
        return "SDXL"
    for name in names:
        if "attn2" in name and "to_k" in name and any(d in name for d in ("lora_down", "lora_A", "lora.down")):
            shape = header[name].get("shape") or []
            return _CONTEXT_WIDTHS.get(shape[-1]) if shape else None
    return None


def embeddings() -> list[Found]:
    from ..a1111.run_prompts import embeddings_dir
    from .embeddings import EMBEDDING_SUFFIXES, WIDTH_NAMES

    found = []
    for path in _files(embeddings_dir(), EMBEDDING_SUFFIXES):
        if path.suffix.lower() != ".safetensors":
            kind = UNREAD
        else:
            try:
                kind = _embedding_kind(_header(path), WIDTH_NAMES)
            except (UserError, OSError, ValueError) as exc:
                kind = _first_sentence(exc)
        found.append(Found(path.stem, kind, path, path.stat().st_size))
    return found


def _embedding_kind(header: dict, widths: dict) -> str:
    names = _names(header)
    if "clip_l" in names and "clip_g" in names:
        return f"SDXL embedding, {_vectors(header['clip_l'])} vector(s)"
    for name in names:
        shape = header[name].get("shape") or []
        if shape:
            return f"{widths.get(shape[-1], f'width {shape[-1]}')} embedding, {_vectors(header[name])} vector(s)"
    return "no vectors in it"


def _vectors(entry: dict) -> int:
    shape = entry.get("shape") or [1]
    return shape[0] if len(shape) > 1 else 1


def vaes() -> list[Found]:
    from ..a1111.extras import VAE_SUFFIXES, vae_dir

    found = []
    for path in _files(vae_dir(), VAE_SUFFIXES):
        if path.suffix.lower() != ".safetensors":
            kind = UNREAD
        else:
            try:
                kind = _vae_kind(_header(path))
            except (UserError, OSError, ValueError) as exc:
                kind = _first_sentence(exc)
        found.append(Found(path.name, kind, path, path.stat().st_size))
    return found


def _vae_kind(header: dict) -> str:
    """Latent channels from the decoder's first convolution: 4 for SD 1.x/2.x/SDXL, 16 for SD3/Flux."""
    for name in ("decoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight"):
        shape = (header.get(name) or {}).get("shape") or []
        if len(shape) == 4:
            families = {4: "SD 1.x, 2.x, SDXL", 16: "SD3, Flux"}.get(shape[1], "")
            return f"VAE, {shape[1]} latent channels" + (f" ({families})" if families else "")
    return "not a VAE (no decoder.conv_in weight)"


def upscalers() -> list[Found]:
    from ..engines.sd.checks import upscalers_dir
    from .upscalers import UPSCALER_SUFFIXES

    found = []
    for path in _files(upscalers_dir(), UPSCALER_SUFFIXES):
        kind = UNREAD
        if path.suffix.lower() == ".safetensors":
            try:
                kind = f"upscaler, {len(_names(_header(path)))} tensors"
            except (UserError, OSError, ValueError) as exc:
                kind = _first_sentence(exc)
        found.append(Found(path.name, kind, path, path.stat().st_size))
    return found


def cached_clip_models(cache: Path | None = None) -> list[str]:
    """open_clip weights in the hub cache (repos holding an open_clip_* weights file)."""
    return [_repo_id(repo) for repo in _repo_folders(cache or hub_cache_dir())
            if _snapshot_with(repo, "open_clip_pytorch_model.bin", "open_clip_model.safetensors")]


# --- reading ---------------------------------------------------------------------------------------


def _header(path: Path) -> dict:
    from .checkpoints import read_safetensors_header

    return read_safetensors_header(path)


def _names(header: dict) -> list[str]:
    return [name for name in header if name != "__metadata__"]


def _tensor_names(path: Path) -> list[str]:
    return _names(_header(path))


def _entries(folder: Path) -> list[Path]:
    """The visible entries of a folder, sorted; none when it is absent. Symlinks count as what they
    point at: people link big model files into assets/ from other drives."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _files(folder: Path, suffixes) -> list[Path]:
    return [p for p in _entries(folder) if p.is_file() and p.suffix.lower() in suffixes]


def _repo_folders(cache: Path) -> list[Path]:
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir() if p.is_dir() and p.name.startswith("models--"))


def _repo_id(repo: Path) -> str:
    return repo.name[len("models--"):].replace("--", "/")


def _snapshot_with(repo: Path, *names: str) -> Path | None:
    """The snapshot the cache's refs/main names (else the newest) holding one of ``names``."""
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    main = repo / "refs" / "main"
    preferred = main.read_text().strip() if main.is_file() else ""
    ordered = sorted(snapshots.iterdir(), key=lambda p: (p.name != preferred, -p.stat().st_mtime))
    return next((s for s in ordered if any((s / n).is_file() for n in names)), None)


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0]
    return ("unreadable: " + text)[:160]


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B" if size else ""
