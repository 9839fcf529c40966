"""Files the gallery serves: only regular files inside the output folder, and thumbnails it makes
into its own cache folder (never into run folders)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from PIL import Image

from logic import media

log = logging.getLogger(__name__)


def _safe_parts(parts: tuple[str, ...]) -> bool:
    """Refuse absolute paths, '..', hidden names, backslashes and NULs in any part."""
    for part in parts:
        if not part or part.startswith("/") or "\\" in part or "\x00" in part:
            return False
        for segment in part.split("/"):
            if segment in ("", ".", "..") or segment.startswith("."):
                return False
    return True


def safe_file(root: Path, *parts: str) -> Path | None:
    """The real path of ``root/parts`` when it is a regular file inside ``root``, else None.

    Symlinks are resolved first, so a link pointing outside the output folder is refused too.
    """
    if not _safe_parts(parts):
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *parts))
    if os.path.commonpath([real, real_root]) != real_root or real == real_root:
        return None
    return Path(real) if os.path.isfile(real) else None


def cached_thumbnail(output_dir: Path, cache_dir: Path, name: str, image: str, size: int) -> Path | None:
    """A thumbnail of ``<output_dir>/<name>/<image>`` made once into ``cache_dir/thumbs``."""
    source = safe_file(output_dir, name, image)
    if source is None:
        return None
    stat = source.stat()
    key = hashlib.sha1(f"{name}/{image}/{stat.st_mtime_ns}/{stat.st_size}/{size}".encode()).hexdigest()
    target = Path(cache_dir) / "thumbs" / key[:2] / f"{key}.jpg"
    if target.is_file():
        return target
    return _make_thumbnail(source, target, size)


def _make_thumbnail(source: Path, target: Path, size: int) -> Path | None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.jpg")  # suffix picks the format
    try:
        with Image.open(source) as image:
            if image.width * image.height > media.MAX_IMAGE_PIXELS:
                log.warning("Not making a thumbnail of %s: %dx%d is too large", source, *image.size)
                return None
            image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale: much faster
            media.save_thumbnail(image, tmp, size)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.warning("Could not make a thumbnail of %s: %s", source, exc)
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, target)
    return target
