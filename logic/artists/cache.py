"""Embeddings only when needed: a per-model cache of CLIP image embeddings for each artist.

Layout under the cache root (``<artists>/.cache`` by default)::

    <model>-<key>/manifest.json            model, pretrained tag, preprocessing, and per artist:
                                           image-set hash, file, image count, skipped files
    <model>-<key>/<artist-key>.safetensors the artist's raw (unnormalised) image embeddings, fp16
    <model>-<key>/texts.safetensors        text embeddings (prompt bank, text prototypes) by text hash

The key covers the CLIP model, its pretrained tag (or weights file), the input size/normalisation
and the preprocessing recipe, so a change of any of them starts a fresh cache. Within one cache an
artist is re-embedded only when its image-set hash changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..media import open_user_image
from ..errors import UserError
from .library import Artist

log = logging.getLogger(__name__)

PREPROCESS = "rgb-shorter-side-bicubic-centre-crop-v1"
MANIFEST = "manifest.json"
TEXTS = "texts.safetensors"
Progress = Callable[[dict], None]


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop: CLIP's own recipe. [0, 1], CHW."""
    image = image.convert("RGB")
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def cache_key(clip) -> str:
    """What makes two embeddings comparable: model, weights, input size, normalisation, preprocessing."""
    weights = Path(clip.pretrained)
    stamp = f"{weights.stat().st_size}" if weights.is_file() else ""
    parts = [clip.name, clip.pretrained, stamp, str(clip.image_size), repr(clip.mean), repr(clip.std), PREPROCESS]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def resolve_device(name: str | None) -> torch.device:
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class EmbedReport:
    """What one call to ``EmbeddingCache.update`` did."""

    embedded: list[str]
    skipped_files: list[str]
    removed: list[str]


class EmbeddingCache:
    """The embeddings of one library under one CLIP model (see the module docstring)."""

    def __init__(self, root: Path, clip, device: torch.device | str = "cpu", batch_size: int = 16):
        self.clip, self.device, self.batch_size = clip, torch.device(device), max(1, batch_size)
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in clip.name)
        self.folder = Path(root) / f"{slug}-{cache_key(clip)}"
        self.manifest = self._read_manifest()

    # 1. The manifest --------------------------------------------------------------------------
    def _read_manifest(self) -> dict:
        path = self.folder / MANIFEST
        fresh = {"model": self.clip.name, "pretrained": self.clip.pretrained, "image_size": self.clip.image_size,
                 "preprocess": PREPROCESS, "artists": {}}
        if not path.is_file():
            return fresh
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("The embedding manifest %s is unreadable: every artist will be re-embedded.", path)
            return fresh
        return data if isinstance(data.get("artists"), dict) else fresh

    def _write_manifest(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.folder / MANIFEST, lambda p: p.write_text(json.dumps(self.manifest, indent=1),
                                                                     encoding="utf-8"))

    def is_current(self, artist: Artist) -> bool:
        entry = self.manifest["artists"].get(artist.name)
        return bool(entry) and entry.get("hash") == artist.image_set_hash() \
            and (self.folder / entry.get("file", "")).is_file()

    def stale(self, artists: list[Artist]) -> list[Artist]:
        return [a for a in artists if not self.is_current(a)]

    # 2. Updating ------------------------------------------------------------------------------
    def update(self, artists: list[Artist], progress: Progress | None = None) -> EmbedReport:
        """Embed the artists whose image sets changed; forget artists no longer in the library."""
        removed = self._forget_missing({a.name for a in artists})
        todo = self.stale(artists)
        total = sum(len(a.images) for a in todo)
        report, done = EmbedReport([], [], removed), 0
        for number, artist in enumerate(todo, 1):
            skipped = self._embed_artist(artist, progress, done, total, (number, len(todo)))
            done += len(artist.images)
            report.embedded.append(artist.name)
            report.skipped_files.extend(skipped)
        if removed and not todo:
            self._write_manifest()
        return report

    def _forget_missing(self, names: set[str]) -> list[str]:
        gone = [n for n in self.manifest["artists"] if n not in names]
        for name in gone:
            entry = self.manifest["artists"].pop(name)
            (self.folder / entry.get("file", "")).unlink(missing_ok=True)
        return gone

    def _embed_artist(self, artist: Artist, progress, done: int, total: int, position) -> list[str]:
        log.info("Embedding %s (%d images)", artist.name, len(artist.images))
        vectors, skipped = [], []
        for start in range(0, len(artist.images), self.batch_size):
            batch = artist.images[start:start + self.batch_size]
            pixels, bad = self._load_batch(batch)
            skipped += bad
            if pixels is not None:
                vectors.append(self._encode(pixels))
            if progress:
                progress({"artist": artist.name, "artist_number": position[0], "artists": position[1],
                          "done": done + start + len(batch), "total": total})
        embeddings = torch.cat(vectors) if vectors else torch.zeros(0, self._width())
        self._save_artist(artist, embeddings, skipped)
        return skipped

    def _load_batch(self, paths) -> tuple[torch.Tensor | None, list[str]]:
        tensors, bad = [], []
        for path in paths:
            try:
                tensors.append(preprocess(open_user_image(path, "reference image"), self.clip.image_size))
            except UserError as exc:
                log.warning("Skipped %s: %s", path, exc)
                bad.append(str(path))
        return (torch.stack(tensors) if tensors else None), bad

    @torch.inference_mode()
    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels.to(self.device)).float().cpu()

    def _width(self) -> int:
        return int(getattr(self.clip.model, "embed_dim", 0) or self.clip.model.text_projection.shape[-1])

    def _save_artist(self, artist: Artist, embeddings: torch.Tensor, skipped: list[str]) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        file = hashlib.sha1(artist.name.encode()).hexdigest()[:16] + ".safetensors"
        _write_atomic(self.folder / file, lambda p: save_file(
            {"embeddings": embeddings.half().contiguous()}, str(p), metadata={"artist": artist.name}))
        self.manifest["artists"][artist.name] = {
            "hash": artist.image_set_hash(), "file": file, "count": int(embeddings.shape[0]),
            "skipped": [Path(s).name for s in skipped]}
        # Written after every artist, so an interrupted embed keeps what it finished.
        self._write_manifest()

    # 3. Reading -------------------------------------------------------------------------------
    def load(self, artists: list[Artist]) -> dict[str, torch.Tensor]:
        """Raw float32 image embeddings for each current artist that has at least one readable image."""
        from safetensors.torch import load_file

        result = {}
        for artist in artists:
            entry = self.manifest["artists"].get(artist.name)
            if not entry or not entry.get("count"):
                continue
            result[artist.name] = load_file(str(self.folder / entry["file"]))["embeddings"].float()
        return result

    @torch.inference_mode()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Raw text embeddings for ``texts``, encoded once per model and kept in texts.safetensors."""
        from safetensors.torch import load_file, save_file

        path = self.folder / TEXTS
        known = load_file(str(path)) if path.is_file() else {}
        keys = [hashlib.sha1(t.encode()).hexdigest()[:20] for t in texts]
        missing = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in known]
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            encoded = self.clip.encode_text([t for _, t in chunk], self.device).float().cpu()
            known.update({k: v.half().contiguous() for (k, _), v in zip(chunk, encoded)})
        if missing:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, lambda p: save_file(known, str(p)))
        if not texts:
            return torch.zeros(0, self._width())
        return torch.stack([known[k].float() for k in keys])


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    write(tmp)
    tmp.replace(path)
