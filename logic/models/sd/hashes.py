"""File fingerprints: A1111's short SHA-256 (what sites search by) and a quick hash of a folder."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_sha256(path: Path, length: int = 12) -> str:
    """The start of the file's SHA-256: the short hash A1111 writes as "Lora hashes" (and sites search by)."""
    path = Path(path)
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)[:length]


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short_hash(path: Path, chunk: int = 1 << 20) -> str:
    """A quick fingerprint of a file or folder: sizes plus the first and last MiB of each weights file."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                 and p.suffix in (".safetensors", ".bin", ".json", ".ckpt"))
    digest = hashlib.sha256()
    for item in files:
        size = item.stat().st_size
        digest.update(f"{item.relative_to(path) if item != path else item.name}:{size}".encode())
        with open(item, "rb") as handle:
            digest.update(handle.read(chunk))
            if size > chunk:
                handle.seek(-chunk, 2)
                digest.update(handle.read(chunk))
    return digest.hexdigest()[:10]
