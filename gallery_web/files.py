"""Files the gallery serves: only regular files inside the output folder, reached without following
any symlink, sent as inert data (images, video, JSON, plain text; anything else as a download);
and thumbnails it makes into its own cache folder (never into run folders)."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

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


# Served with their own type: kinds a browser shows and never runs. The rest (HTML, SVG, scripts,
# unknown) is sent as a download, so a file put in a run folder cannot act as a page of the gallery.
INERT_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".bmp": "image/bmp", ".mp4": "video/mp4", ".webm": "video/webm",
    ".json": "application/json", ".jsonl": "text/plain", ".txt": "text/plain", ".log": "text/plain",
}
DOWNLOAD_TYPE = "application/octet-stream"


def served_type(path: Path) -> str | None:
    """The content type a run file is served as, or None when it must be a download."""
    return INERT_TYPES.get(Path(path).suffix.lower())


def safe_file(root: Path, *parts: str) -> Path | None:
    """``root/parts`` when it is a regular file inside ``root`` reached through no symlink, else None.

    Every part is checked with lstat, so a link (to a file or a folder, inside the output folder or
    out of it) is never followed.
    """
    if not _safe_parts(parts):
        return None
    path = Path(root)
    segments = [segment for part in parts for segment in part.split("/")]
    for position, segment in enumerate(segments, 1):
        path = path / segment
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        wanted = stat.S_ISREG if position == len(segments) else stat.S_ISDIR
        if not wanted(mode):
            return None  # a symlink is neither
    return path


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
    from PIL import Image  # imported on first use: a warm start needs neither Pillow nor numpy

    from logic import media

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
