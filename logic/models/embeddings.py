"""Textual-inversion embeddings (Gal et al. 2022) from assets/embeddings/, used by writing their file name.

Formats read, all without running any pickled code (``torch.load(weights_only=True)`` or safetensors):

* A1111 ``.pt``: ``{"string_to_param": {"*": tensor (n, width)}, "name": ..., ...}``;
* ``.safetensors`` with ``emb_params`` (n, width) (A1111/kohya), or ``clip_l`` + ``clip_g`` (SDXL);
* diffusers ``learned_embeds.bin``/``.safetensors``: ``{"<token>": tensor (width,) or (n, width)}``.

The vectors are kept per width: 768 is SD 1.x and SDXL's CLIP-L, 1024 SD 2.x, 1280 SDXL's CLIP-G;
the encoder picks the ones that fit each text encoder.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from .hashes import file_sha256

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".pt", ".safetensors", ".bin")
WIDTH_NAMES = {768: "SD 1.x (or SDXL's CLIP-L)", 1024: "SD 2.x", 1280: "SDXL's CLIP-G"}


@dataclass
class Embedding:
    name: str                                   # the file stem: the word written in the prompt
    path: Path
    vectors: dict[int, torch.Tensor] = field(default_factory=dict)   # width -> (n, width)

    @property
    def length(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    @property
    def hash(self) -> str:
        """A1111's "TI hashes" value: the first 12 hex digits of the file's SHA-256."""
        return file_sha256(self.path)[:12]

    def for_width(self, width: int) -> torch.Tensor:
        if width not in self.vectors:
            made_for = " and ".join(WIDTH_NAMES.get(w, f"{w}-wide") for w in self.vectors)
            raise UserError(f"The embedding {self.name} was made for {made_for}, not for this model's "
                            f"{WIDTH_NAMES.get(width, f'{width}-wide')} text encoder: use one trained for this base model.")
        return self.vectors[width]


def list_embeddings(folder: Path) -> list[Path]:
    if not Path(folder).is_dir():
        return []
    return [p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in EMBEDDING_SUFFIXES and p.is_file()]


def embeddings_in(texts: list[str], folder: Path) -> dict[str, Embedding]:
    """The embeddings whose file names appear as words in any of ``texts``, loaded (name -> Embedding)."""
    joined = "\n".join(t or "" for t in texts)
    found = {}
    for path in list_embeddings(folder):
        if re.search(rf"(?<![\w-]){re.escape(path.stem)}(?![\w-])", joined):
            found[path.stem] = load_embedding(path)
    return found


def load_embedding(path: Path) -> Embedding:
    """One embedding file, read safely, as vectors per width; anything else is one sentence."""
    path = Path(path)
    data = _read_tensors(path)
    vectors = _vectors_of(data)
    if not vectors:
        raise UserError(f"The file {path.name} in the embeddings folder is not a textual-inversion embedding "
                        "(no string_to_param, emb_params or clip_l/clip_g tensors): supported are A1111 .pt, "
                        ".safetensors and diffusers learned_embeds files.")
    length = next(iter(vectors.values())).shape[0]
    if length > 75:
        raise UserError(f"The embedding {path.name} has {length} vectors, more than the 75 a prompt chunk holds.")
    return Embedding(path.stem, path, vectors)


def _read_tensors(path: Path) -> dict:
    # The one safe loader every checkpoint goes through: weights_only with the project's allow-list,
    # TorchScript and tar archives refused, safetensors headers checked before reading.
    from .checkpoints import load_checkpoint

    try:
        return load_checkpoint(path)
    except UserError as exc:
        raise UserError(f"The embedding {path.name} could not be read safely: {exc}") from None


def _vectors_of(data) -> dict[int, torch.Tensor]:
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("string_to_param"), dict) and data["string_to_param"]:
        tensors = [next(iter(data["string_to_param"].values()))]
    elif "emb_params" in data:
        tensors = [data["emb_params"]]
    elif "clip_l" in data or "clip_g" in data:
        tensors = [data[k] for k in ("clip_l", "clip_g") if k in data]
    elif len(data) == 1 and "." not in next(iter(data)) and torch.is_tensor(next(iter(data.values()))):
        tensors = [next(iter(data.values()))]      # diffusers: {"<token>": vectors} (a name, not a layer)
    else:
        return {}
    vectors = {}
    for tensor in tensors:
        if not torch.is_tensor(tensor):
            return {}
        tensor = tensor.detach().float().reshape(-1, tensor.shape[-1])
        vectors[int(tensor.shape[-1])] = tensor
    return vectors


def looks_like_embedding(state: dict) -> bool:
    """True when tensors read from a file are an embedding (the LoRA loader's "this is not a LoRA" check)."""
    return bool(_vectors_of(state)) and not any(".lora" in k or "lora_" in k for k in state)
