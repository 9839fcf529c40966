"""The one settings object for artist matching, filled from the ``artists:`` section of defaults.yaml."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..settings import assets_dir, defaults, demo_dir

METHODS = ("zscore", "csls", "centred", "naive")


@dataclass(frozen=True)
class ArtistSettings:
    """Where the artists are, which CLIP embeds them, and how matches are scored and used."""

    folder: Path | None = None
    clip: str = "ViT-B-32:openai"
    clip_weights: Path | None = None
    top: int = 5
    method: str = "zscore"
    threshold: float = 0.25
    fusion: float = 0.25
    text_templates: tuple[str, ...] = ("a painting by {name}",)
    rewrite_template: str = "{prompt}, in the style of {artist}"
    rewrite_when_weak: bool = False
    dreambooth_tokens: tuple[str, ...] = ("sks",)
    batch_size: int = 16
    thumbnails: int = 3
    device: str = "auto"
    cache_dir: Path | None = None
    demo: bool = False

    @property
    def artists_dir(self) -> Path:
        if self.folder:
            return Path(self.folder)
        return demo_dir() / "artists" if self.demo else assets_dir() / "artists"

    @property
    def cache_root(self) -> Path:
        """Embedding caches live beside the library (``.cache`` is skipped when scanning)."""
        return Path(self.cache_dir) if self.cache_dir else self.artists_dir / ".cache"

    def replace(self, **changes) -> "ArtistSettings":
        return dataclasses.replace(self, **changes)

    def check(self) -> "ArtistSettings":
        """Refuse values that would give silent nonsense, naming what is allowed."""
        if self.method not in METHODS:
            raise UserError(f"Unknown matching method {self.method!r}: use one of {', '.join(METHODS)}.")
        if not 0.0 <= self.fusion <= 1.0:
            raise UserError(f"The text fusion weight {self.fusion} is outside 0..1: pick a value between 0 and 1.")
        if self.top < 1:
            raise UserError(f"Showing the top {self.top} artists shows nothing: ask for 1 or more.")
        if "{prompt}" not in self.rewrite_template or "{artist}" not in self.rewrite_template:
            raise UserError("The rewrite template needs both {prompt} and {artist}: fix artists.rewrite_template.")
        return self


def artist_settings(**overrides) -> ArtistSettings:
    """Defaults from defaults.yaml, with ``overrides`` (None values are ignored) on top."""
    values = {k: v for k, v in defaults("artists").items() if k in _FIELDS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("text_templates", "dreambooth_tokens"):
        values[name] = tuple(values.get(name) or ())
    for name in ("folder", "clip_weights", "cache_dir"):
        if values.get(name):
            values[name] = Path(values[name]).expanduser()
    return ArtistSettings(**values).check()


_FIELDS = {f.name for f in dataclasses.fields(ArtistSettings)}
