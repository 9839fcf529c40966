"""The artist library as data: ``<artists>/<Artist Name>/`` holds reference images and an optional
``artist.yaml`` (display name, aliases, years, source, licence). Adding an artist is dropping in a
folder; no code per artist."""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
META_FILE = "artist.yaml"
HOW_TO_ADD = ("No artists yet: make one folder per artist in {folder} (the folder name is the artist's name) "
              "and drop a few of their works into it as PNG or JPEG files, or run "
              "`python scripts/fetch_artists.py` on a connected machine for public-domain starters.")


@dataclass(frozen=True)
class Artist:
    """One artist: the folder name is the key; display name and aliases come from artist.yaml."""

    name: str
    folder: Path
    images: tuple[Path, ...]
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    years: str = ""
    source: str = ""
    licence: str = ""

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a prompt might use for this artist."""
        return tuple(dict.fromkeys(n for n in (self.name, self.display_name, *self.aliases) if n))

    def image_set_hash(self) -> str:
        """A fingerprint of the image set: file names, sizes and modification times.

        Stat-based rather than content-based so that a library of thousands of works is checked in
        milliseconds; any add, remove, replace or edit changes it.
        """
        digest = hashlib.sha256()
        for path in self.images:
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


def scan_library(folder: Path) -> list[Artist]:
    """Every artist folder under ``folder`` (hidden folders skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    artists = [read_artist(sub) for sub in sorted(folder.iterdir()) if _is_artist_folder(sub)]
    return [a for a in artists if a is not None]


def _is_artist_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith((".", "_"))


def read_artist(folder: Path) -> Artist | None:
    """One artist folder; None (with a warning) when it holds no images."""
    images = tuple(sorted(p for p in folder.iterdir()
                          if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")))
    if not images:
        log.warning("The artist folder %s has no images (PNG, JPEG, WebP): it is skipped.", folder)
        return None
    meta = read_meta(folder / META_FILE)
    return Artist(name=folder.name, folder=folder, images=images,
                  display_name=str(meta.get("display_name") or meta.get("name") or ""),
                  aliases=tuple(str(a) for a in meta.get("aliases") or ()),
                  years=str(meta.get("years") or ""), source=str(meta.get("source") or ""),
                  licence=str(meta.get("licence") or meta.get("license") or ""))


def read_meta(path: Path) -> dict:
    """artist.yaml as a dict; a broken file is reported and ignored rather than hiding the artist."""
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        log.warning("%s is not valid YAML (%s): its details are ignored.", path, exc.__class__.__name__)
        return {}
    if not isinstance(data, dict):
        log.warning("%s should be a mapping of display_name, aliases, years, source, licence: ignored.", path)
        return {}
    return data


def folder_name(name: str) -> str:
    """A safe folder name for an artist: letters, digits, spaces, dots, hyphens and apostrophes.

    Accents are kept (folders are Unicode) but path separators and control characters are not.
    """
    name = unicodedata.normalize("NFC", name)
    name = re.sub(r"[^\w .'\-]", " ", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name or "Unknown artist"


def find_artist(artists: list[Artist], name: str) -> Artist | None:
    """The artist whose folder name, display name or alias equals ``name`` (case-insensitive)."""
    wanted = name.strip().casefold()
    for artist in artists:
        if any(n.casefold() == wanted for n in artist.names):
            return artist
    return None
