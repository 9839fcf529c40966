"""The hashes A1111 and Civitai write and search by, computed once per file version.

* ``Model hash`` (Civitai "AutoV2"): the first 10 hex digits of the file's SHA-256;
* ``Lora hashes`` (A1111's "addnet" hash): SHA-256 of a .safetensors file's data after its JSON
  header, first 12 hex digits (so editing the metadata does not change it); other files: the
  whole file's SHA-256, first 12;
* ``TI hashes``, ``VAE hash``: the file's SHA-256, first 12 / 10 hex digits.

Full digests are kept in ``assets/cache/hashes.json`` keyed by path, size and mtime, so a 7 GB
checkpoint is read once, not per run or per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_BLOCK = 1 << 20


def cache_file() -> Path:
    from .. import settings

    return settings.assets_dir() / "cache" / "hashes.json"


def file_sha256(path: Path) -> str:
    """The full SHA-256 of a file (hex), from the cache when the file has not changed."""
    return _cached(Path(path), "sha256", _sha256_from)


def addnet_hash(path: Path) -> str:
    """A1111's LoRA hash: SHA-256 of the bytes after a safetensors header (the whole file otherwise)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return file_sha256(path)
    return _cached(path, "addnet", _addnet_from)


def model_hash(path: Path) -> str:
    """``Model hash`` as A1111 and Civitai write it (AutoV2): the first 10 hex digits of the SHA-256."""
    return file_sha256(path)[:10]


def lora_hash(path: Path) -> str:
    """``Lora hashes`` value: the first 12 hex digits of the addnet hash."""
    return addnet_hash(path)[:12]


def _sha256_from(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _addnet_from(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + header_length)
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached(path: Path, kind: str, compute) -> str:
    stat = path.stat()
    key = f"{kind}:{path.resolve()}"
    stamp = [stat.st_size, stat.st_mtime_ns]
    return _memo(key, *stamp, compute, path)


@functools.lru_cache(maxsize=256)
def _memo(key: str, size: int, mtime_ns: int, compute, path: Path) -> str:
    """In-process memo in front of the JSON cache (the file is read once per process)."""
    stored = _load_cache().get(key)
    if stored and stored.get("size") == size and stored.get("mtime_ns") == mtime_ns:
        return stored["hash"]
    value = compute(path)
    _store(key, {"size": size, "mtime_ns": mtime_ns, "hash": value})
    return value


def _load_cache() -> dict:
    try:
        return json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _store(key: str, entry: dict) -> None:
    """Write the cache atomically; a read-only assets folder only costs the recomputation next time."""
    with _LOCK:
        data = _load_cache()
        data[key] = entry
        target = cache_file()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
            tmp.write_text(json.dumps(data, indent=0), encoding="utf-8")
            tmp.replace(target)
        except OSError as exc:
            log.info("hash cache not written (%s)", exc)


def hub_revision(repo_id: str) -> str | None:
    """The commit of a hub model in the local cache (what ``from_pretrained`` loaded), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception:  # noqa: BLE001 - no cache entry reads as "unknown"
        return None
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
