"""The artist matcher as one object, and the one call the engines make: ``apply_artist_match``."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError
from ..prompts import parse_prompts
from .cache import EmbeddingCache, resolve_device
from .config import ArtistSettings, artist_settings
from .library import HOW_TO_ADD, Artist, find_artist, scan_library
from .matcher import ArtistIndex, Ranking, normalise
from .rewrite import rewrite_prompt, skip_reason

log = logging.getLogger(__name__)

BANK_FILE = Path(__file__).with_name("data") / "generic_prompts.txt"


def generic_prompts(path: Path = BANK_FILE) -> list[str]:
    """The shipped bank of generic prompts (no artist, style or medium named)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class MatchResult:
    """A ranked match for one prompt, and what was done with it."""

    prompt: str
    rewritten_prompt: str
    matches: list[dict]
    confidence: float
    no_strong_match: bool
    model: str
    method: str
    embedded: list[str] = field(default_factory=list)
    skipped: str | None = None
    chosen_by_user: bool = False
    artist: str | None = None

    def to_json(self) -> dict:
        """The ``match --json`` object."""
        return asdict(self)

    def record(self) -> dict:
        """The ``artist_match`` entry of details.json."""
        best = self.matches[0] if self.matches else {}
        chosen = next((m for m in self.matches if m["artist"] == self.artist), None)
        others = [m for m in self.matches if m["artist"] != (self.artist or best.get("artist"))]
        return {
            "artist": self.artist, "score": (chosen or {}).get("score"),
            "runner_up": others[0]["artist"] if others else None,
            "runner_up_score": others[0]["score"] if others else None,
            "best_match": best.get("artist"), "best_score": best.get("score"), "confidence": round(self.confidence, 4),
            "model": self.model, "method": self.method, "no_strong_match": self.no_strong_match,
            "chosen_by_user": self.chosen_by_user, "skipped": self.skipped,
            "prompt_used": self.rewritten_prompt,
        }


class ArtistMatcher:
    """A library, its cached embeddings under one CLIP, and the debiased index built from them."""

    def __init__(self, settings: ArtistSettings, clip, artists: list[Artist], cache: EmbeddingCache,
                 embedded: list[str]):
        self.settings, self.clip, self.cache, self.embedded = settings, clip, cache, embedded
        embeddings = cache.load(artists)
        self.artists = [a for a in artists if a.name in embeddings]
        self.index = self._build_index(embeddings) if self.artists else None

    @property
    def model(self) -> str:
        tag = self.clip.pretrained
        return f"{self.clip.name}:{Path(tag).name if Path(tag).suffix else tag}"

    def _build_index(self, embeddings: dict[str, torch.Tensor]) -> ArtistIndex:
        names = [a.name for a in self.artists]
        bank = self.cache.text_embeddings(generic_prompts())
        return ArtistIndex(names, [embeddings[n] for n in names], bank, self._text_prototypes(),
                           method=self.settings.method, fusion=self.settings.fusion)

    def _text_prototypes(self) -> torch.Tensor | None:
        templates = self.settings.text_templates
        if not templates or self.settings.fusion <= 0:
            return None
        texts = [t.format(name=a.label) for a in self.artists for t in templates]
        encoded = normalise(self.cache.text_embeddings(texts)).view(len(self.artists), len(templates), -1)
        return normalise(encoded.mean(1))

    # Matching --------------------------------------------------------------------------------
    def require_artists(self) -> None:
        if self.index is None:
            raise UserError(HOW_TO_ADD.format(folder=self.settings.artists_dir))

    def find(self, name: str) -> Artist:
        artist = find_artist(self.artists, name)
        if artist is None:
            known = ", ".join(a.name for a in self.artists[:20])
            raise UserError(f"Unknown artist {name!r}: pick one of {known or 'none (the library is empty)'}.")
        return artist

    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        parts = [p.text for p in parse_prompts(prompt) if p.weight > 0]
        if not parts:
            raise UserError("The prompt is empty: type what the image should show before matching an artist.")
        device = next(self.clip.model.parameters()).device
        return self.clip.encode_text([", ".join(parts)], device)[0].float().cpu()

    def match(self, prompt: str, top: int | None = None, chosen_artist: str | None = None) -> MatchResult:
        """Rank the artists for ``prompt`` and rewrite it (see ``rewrite.skip_reason`` for when not)."""
        # 1. Check inputs
        self.require_artists()
        chosen = self.find(chosen_artist) if chosen_artist else None
        # 2. Encode the prompt and rank
        embedding = self.encode_prompt(prompt)
        ranking = self.index.rank(embedding, top or self.settings.top)
        matches = [{"artist": n, "score": round(s, 4)} for n, s in zip(ranking.names, ranking.scores)]
        if chosen and chosen.name not in ranking.names:
            matches.append({"artist": chosen.name, "score": round(self.index.score_of(embedding, chosen.name), 4)})
        # 3. Decide whether and how to rewrite
        return self._decide(prompt, ranking, matches, chosen)

    def _decide(self, prompt: str, ranking: Ranking, matches: list[dict], chosen: Artist | None) -> MatchResult:
        settings = self.settings
        weak = ranking.confidence < settings.threshold
        names = [n for a in self.artists for n in a.names]
        skipped = None if chosen else skip_reason(prompt, names, settings.dreambooth_tokens)
        if not skipped and weak and not chosen and not settings.rewrite_when_weak:
            skipped = "no strong match"
        artist = chosen.name if chosen else (None if skipped else ranking.best)
        label = chosen.label if chosen else (find_artist(self.artists, artist).label if artist else "")
        rewritten = rewrite_prompt(prompt, label, settings.rewrite_template) if artist else prompt
        return MatchResult(prompt, rewritten, matches, ranking.confidence, weak, self.model, settings.method,
                           list(self.embedded), skipped, chosen is not None, artist)

    def thumbnails(self, name: str, count: int | None = None) -> list[Path]:
        """Up to ``count`` of the artist's reference images, for showing beside a match."""
        artist = find_artist(self.artists, name)
        return list(artist.images[: count or self.settings.thumbnails]) if artist else []


# Building ------------------------------------------------------------------------------------
def resolve_clip_source(settings: ArtistSettings) -> tuple[str, Path | None]:
    """(model name, weights file) for the settings; the demo CLIP with ``demo``."""
    if settings.demo:
        from ..models.demo import ensure_demo_clip
        from ..settings import demo_dir

        return ensure_demo_clip(demo_dir())
    return settings.clip, settings.clip_weights


def clip_fits(clip, name: str, weights: Path | None) -> bool:
    """Whether an already-loaded ClipModel is the one the settings ask for."""
    from ..models.clip import split_clip_name

    model, tag = split_clip_name(name) if not weights else (name.partition(":")[0], str(weights))
    return clip.name == model and str(clip.pretrained) == str(tag)


def load_matcher(settings: ArtistSettings | None = None, clip_model=None,
                 progress: Callable[[dict], None] | None = None) -> ArtistMatcher:
    """Scan the library, embed what changed, and build the index.

    ``clip_model`` is used when it is the model the settings name, so an engine that already holds
    that CLIP does not load it twice; otherwise the settings' CLIP is loaded here.
    """
    from ..models.clip import load_clip

    settings = (settings or artist_settings()).check()
    if settings.demo and settings.folder is None:
        from .demo import ensure_demo_artists

        ensure_demo_artists(settings.artists_dir)
    name, weights = resolve_clip_source(settings)
    if clip_model is None or not clip_fits(clip_model, name, weights):
        clip_model = load_clip(name, weights, resolve_device(settings.device))
    artists = scan_library(settings.artists_dir)
    device = next(clip_model.model.parameters()).device
    cache = EmbeddingCache(settings.cache_root, clip_model, device, settings.batch_size)
    report = cache.update(artists, progress or _log_progress)
    for path in report.skipped_files:
        log.warning("Could not read %s: it was left out of its artist's references.", path)
    return ArtistMatcher(settings, clip_model, artists, cache, report.embedded)


def _log_progress(event: dict) -> None:
    log.info("Embedding %s: %d/%d images", event["artist"], event["done"], event["total"])


def apply_artist_match(prompt: str, settings: ArtistSettings | None = None, clip_model=None,
                       chosen_artist: str | None = None) -> tuple[str, dict]:
    """The engines' one call: the prompt to run and the details.json ``artist_match`` record.

    The prompt is returned unchanged (the record says why in ``skipped``) when it already names an
    artist or carries a DreamBooth token, or when no match is strong enough; ``chosen_artist``
    (picked by the user) always wins. Raises UserError when the library is empty.
    """
    matcher = load_matcher(settings, clip_model)
    result = matcher.match(prompt, chosen_artist=chosen_artist)
    if result.skipped:
        log.info("Artist match not applied: %s.", result.skipped)
    return result.rewritten_prompt, result.record()
