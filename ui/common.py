"""Widget helpers shared by the mode sidebars."""

from __future__ import annotations

import hashlib
from pathlib import Path

UPLOADS = ".uploads"   # inside output/: kept, so reruns find the files (dot folders are not runs)


def parse_seed(text: str) -> int | str | None:
    """An int, None for empty; other text is passed on so the engine names the mistake."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def save_upload(upload) -> str:
    """Keep an uploaded file under output/.uploads/, named by its content, and return its path.

    The name the person gave is remembered for this session, so an error about the file names it
    rather than the hashed copy (``ui.reuse.plain_names``)."""
    from logic import settings
    from ui import reuse

    data = upload.getvalue()
    folder = settings.output_dir() / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}{Path(upload.name).suffix.lower() or '.png'}"
    if not path.is_file():
        path.write_bytes(data)
    reuse.note_file_name(path, upload.name)
    return str(path)
