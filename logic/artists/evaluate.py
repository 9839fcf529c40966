"""Evaluation: does the matcher find the right artist, and does any artist win too often?

Two kinds of labelled data, either or both:
- a folder of held-out works laid out like the library (``<dir>/<Artist Name>/*.png``), scored
  image-to-prototype;
- a file of prompt -> artist pairs (lines ``prompt<TAB>artist`` or ``prompt -> artist``, or a
  JSON/YAML list of {prompt, artist}), scored text-to-artist.
For each, top-1, top-5 and mean reciprocal rank, plus the largest single-artist win share over the
generic prompt bank, for the naive recipe ("before") and the configured method ("after").
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
import yaml

from ..errors import UserError
from .cache import EmbeddingCache
from .library import find_artist, scan_library
from .matcher import ArtistIndex

log = logging.getLogger(__name__)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Prompt -> artist pairs from a TSV/arrow text file or a JSON/YAML list."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The pairs file {path} does not exist: give a file of prompt -> artist lines.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".json", ".yaml", ".yml"}:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        if isinstance(data, dict):
            data = [{"prompt": k, "artist": v} for k, v in data.items()]
        return [(str(d["prompt"]), str(d["artist"])) for d in data or []]
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for separator in ("\t", "->", "→"):
            if separator in line:
                prompt, _, artist = line.rpartition(separator)
                pairs.append((prompt.strip(), artist.strip()))
                break
        else:
            raise UserError(f"Line {number} of {path} has no tab or '->' between prompt and artist: fix it.")
    return pairs


def ranking_metrics(scores: torch.Tensor, truth: torch.Tensor) -> dict:
    """top-1, top-5 and mean reciprocal rank for (n, K) scores and (n,) true artist indices."""
    if len(truth) == 0:
        return {"n": 0, "top1": None, "top5": None, "mrr": None}
    true_scores = scores.gather(1, truth.view(-1, 1))
    ranks = (scores > true_scores).sum(1) + 1
    return {"n": int(len(truth)), "top1": float((ranks == 1).float().mean()),
            "top5": float((ranks <= 5).float().mean()), "mrr": float((1.0 / ranks.float()).mean())}


def _labels(names: list[str], artists, wanted: list[str], what: str) -> list[int]:
    indices = []
    for name in wanted:
        artist = find_artist(artists, name)
        if artist is None or artist.name not in names:
            raise UserError(f"The {what} names {name!r}, which is not an embedded artist in the library: "
                            "fix the name or add the artist.")
        indices.append(names.index(artist.name))
    return indices


def evaluate(matcher, heldout: Path | None = None, pairs: Path | None = None) -> dict:
    """Metrics before (naive) and after (the configured method) debiasing."""
    matcher.require_artists()
    before = _rebuild(matcher, "naive")
    after = matcher.index
    report = {"model": matcher.model, "method": matcher.settings.method, "artists": len(after.names),
              "bank_prompts": int(after.bank_scores.shape[0])}
    for label, index in (("before", before), ("after", after)):
        shares = index.win_shares()
        top_artist = next(iter(shares))
        report[label] = {"max_win_share": shares[top_artist], "max_win_artist": top_artist,
                         "uniform_share": 1.0 / len(index.names)}
    if pairs:
        _add(report, "prompts", *_prompt_scores(matcher, (before, after), read_pairs(pairs)))
    if heldout:
        _add(report, "heldout", *_image_scores(matcher, (before, after), Path(heldout)))
    return report


def _add(report: dict, key: str, truth: torch.Tensor, scores: list[torch.Tensor]) -> None:
    for label, s in zip(("before", "after"), scores):
        report[label][key] = ranking_metrics(s, truth)


def _rebuild(matcher, method: str) -> ArtistIndex:
    embeddings = matcher.cache.load(matcher.artists)
    names = matcher.index.names
    from .service import generic_prompts

    return ArtistIndex(names, [embeddings[n] for n in names], matcher.cache.text_embeddings(generic_prompts()),
                       method=method)


def _prompt_scores(matcher, indices, pairs):
    if not pairs:
        raise UserError("The pairs file has no prompt -> artist pairs: add some lines.")
    truth = torch.tensor(_labels(indices[1].names, matcher.artists, [a for _, a in pairs], "pairs file"))
    embeddings = torch.stack([matcher.encode_prompt(p) for p, _ in pairs])
    return truth, [index.score_prompts(embeddings) for index in indices]


def _image_scores(matcher, indices, folder: Path):
    works = scan_library(folder)
    if not works:
        raise UserError(f"The held-out folder {folder} has no artist folders with images: lay it out like "
                        "assets/artists (one folder per artist).")
    truth = _labels(indices[1].names, matcher.artists, [w.name for w in works], "held-out folder")
    # Held-out embeddings are cached beside the library's, not inside the user's held-out folder.
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]
    cache = EmbeddingCache(matcher.settings.cache_root / f"heldout-{tag}", matcher.clip, matcher.cache.device, matcher.settings.batch_size)
    cache.update(works)
    embedded = cache.load(works)
    rows = [(embedded[w.name], t) for w, t in zip(works, truth) if w.name in embedded]
    embeddings = torch.cat([e for e, _ in rows])
    labels = torch.cat([torch.full((len(e),), t) for e, t in rows])
    return labels, [index.score_images(embeddings) for index in indices]
