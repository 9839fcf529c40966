"""Matching a prompt to artists without letting one artist win everything.

The popular recipe (average each artist's CLIP image embeddings, take the cosine with the prompt's
text embedding, pick the maximum) lets a few "hub" artists win most prompts: unnormalised averages
favour artists whose images have large norms or many near-duplicates, every text embedding sits on
one side of the text/image modality gap (Liang et al., "Mind the Gap", NeurIPS 2022), and in high
dimensions some points are nearest neighbours of almost everything (Radovanović et al., "Hubs in
Space", JMLR 2010). The index below removes each cause in turn:

1. every image embedding is L2-normalised before averaging, so each work counts once;
2. both sides are centred: images by the mean reference image (a mean of per-artist means, so large
   reference sets do not dominate), prompts by the mean of a bank of generic prompts shipped as data;
   this removes the modality-gap offset and the shared "any artwork" direction;
3. each artist's scores are calibrated over the generic prompt bank: a z-score against that artist's
   own mean and spread on generic prompts, or CSLS (Conneau et al., "Word Translation Without
   Parallel Data", ICLR 2018), which subtracts each artist's mean similarity to its nearest prompts;
4. optionally, text prototypes ("a painting by {name}", …) are fused in, calibrated the same way.

Confidence is the share of generic prompts whose best score is below this prompt's best score:
0.9 means this prompt points at its artist more clearly than 90 % of generic prompts do at theirs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

CSLS_NEIGHBOURS = 10
_EPS = 1e-8


def normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(_EPS)


@dataclass
class Ranking:
    """Artists ordered best first, with their calibrated scores and the match confidence."""

    names: list[str]
    scores: list[float]
    confidence: float

    @property
    def best(self) -> str | None:
        return self.names[0] if self.names else None


@dataclass
class _Component:
    """One set of prototypes (image or text) with its calibration statistics over the prompt bank."""

    prototypes: torch.Tensor  # (K, D), normalised
    weight: float
    mean: torch.Tensor | None = None  # (K,) z-score statistics
    std: torch.Tensor | None = None
    hubness: torch.Tensor | None = None  # (K,) CSLS r_T


class ArtistIndex:
    """Prototypes for K artists, built once; ``rank`` then costs one (D x K) product per prompt."""

    def __init__(self, names: list[str], images: list[torch.Tensor], bank: torch.Tensor,
                 text_prototypes: torch.Tensor | None = None, method: str = "zscore", fusion: float = 0.0):
        if not names:
            raise ValueError("an artist index needs at least one artist")
        self.names, self.method = list(names), method
        # 1. Image prototypes: normalise each work, centre by the mean reference image, average.
        normed = [normalise(x.float()) for x in images]
        per_artist_means = torch.stack([x.mean(0) for x in normed])
        self.image_centre = per_artist_means.mean(0)
        self.naive_prototypes = normalise(torch.stack([x.float().mean(0) for x in images]))
        image_protos = normalise(torch.stack([normalise(x - self.image_centre).mean(0) for x in normed]))
        # 2. Prompt side: centre by the mean generic prompt.
        self.text_centre = normalise(bank.float()).mean(0)
        self.components = [_Component(image_protos, 1.0 - fusion if text_prototypes is not None else 1.0)]
        if text_prototypes is not None and fusion > 0:
            text_protos = normalise(text_prototypes.float())
            text_protos = normalise(text_protos - text_protos.mean(0))
            self.components.append(_Component(text_protos, fusion))
        # 3. Calibrate each component over the bank, then record the bank's best scores for confidence.
        self._calibrate(self._centre_prompts(bank))
        self.bank_scores = self.score_prompts(bank)
        self.bank_best = self.bank_scores.max(dim=1).values.sort().values

    # Scoring ---------------------------------------------------------------------------------
    def _centre_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        return normalise(normalise(prompts.float()) - self.text_centre)

    def _calibrate(self, bank: torch.Tensor) -> None:
        for part in self.components:
            cos = bank @ part.prototypes.T  # (P, K)
            part.mean, part.std = cos.mean(0), cos.std(0).clamp_min(1e-4)
            part.hubness = cos.topk(min(CSLS_NEIGHBOURS, cos.shape[0]), dim=0).values.mean(0)

    def score_prompts(self, prompts: torch.Tensor) -> torch.Tensor:
        """(n, D) raw text embeddings -> (n, K) scores under this index's method."""
        if self.method == "naive":
            return normalise(prompts.float()) @ self.naive_prototypes.T
        centred = self._centre_prompts(prompts)
        return sum(part.weight * self._calibrated(centred @ part.prototypes.T, part) for part in self.components)

    def _calibrated(self, cos: torch.Tensor, part: _Component) -> torch.Tensor:
        if self.method == "zscore":
            return (cos - part.mean) / part.std
        if self.method == "csls":
            query_hubness = cos.topk(min(CSLS_NEIGHBOURS, cos.shape[1]), dim=1).values.mean(1, keepdim=True)
            return 2 * cos - part.hubness - query_hubness
        return cos  # "centred": centring only

    def score_images(self, images: torch.Tensor) -> torch.Tensor:
        """(n, D) raw image embeddings (held-out works) -> (n, K) cosine to the image prototypes."""
        if self.method == "naive":
            return normalise(images.float()) @ self.naive_prototypes.T
        centred = normalise(normalise(images.float()) - self.image_centre)
        return centred @ self.components[0].prototypes.T

    # Ranking ---------------------------------------------------------------------------------
    def rank(self, prompt: torch.Tensor, top: int = 5) -> Ranking:
        """Top ``top`` artists for one raw text embedding (D,)."""
        scores = self.score_prompts(prompt.reshape(1, -1))[0]
        values, order = scores.topk(min(top, len(self.names)))
        return Ranking([self.names[i] for i in order.tolist()], values.tolist(), self.confidence(float(values[0])))

    def score_of(self, prompt: torch.Tensor, name: str) -> float:
        return float(self.score_prompts(prompt.reshape(1, -1))[0, self.names.index(name)])

    def confidence(self, best: float) -> float:
        """Share of generic prompts whose best score is below ``best`` (ties count half)."""
        below = torch.searchsorted(self.bank_best, torch.tensor([best]), right=False)
        not_above = torch.searchsorted(self.bank_best, torch.tensor([best]), right=True)
        return float((below + not_above).item() / (2 * len(self.bank_best)))

    def win_shares(self, scores: torch.Tensor | None = None) -> dict[str, float]:
        """Share of prompts each artist wins (top-1), largest first; defaults to the generic bank."""
        scores = self.bank_scores if scores is None else scores
        counts = torch.bincount(scores.argmax(dim=1), minlength=len(self.names)).float() / scores.shape[0]
        order = counts.argsort(descending=True).tolist()
        return {self.names[i]: float(counts[i]) for i in order if counts[i] > 0}
