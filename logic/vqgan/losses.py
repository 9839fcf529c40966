"""Losses of VQGAN+CLIP.

``PromptLoss``: the notebook's squared spherical (great-circle) distance between CLIP embeddings,
weighted, floored at ``stop``; one class for text and image prompts.
``tv_loss``: the vqgan-clip-app's total variation of the latent (Rudin, Osher & Fatemi 1992).
``mse_weight_at``: the weight of an MSE pull toward the start latent, reduced step by step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .synthesis import replace_grad


class PromptLoss(torch.nn.Module):
    """Weighted squared spherical distance to one or more target embeddings, floored at ``stop``.

    ``embedding`` is (D,) for a text prompt or (K, D) for an image prompt's K cutouts (every cutout
    of the image is compared with every target, as in the notebook). Negative weights push away;
    the floor stops the pull once the distance falls below ``stop``.
    """

    def __init__(self, embedding: torch.Tensor, weight: float, stop: float, name: str = ""):
        super().__init__()
        target = F.normalize(embedding.detach().float(), dim=-1)
        self.register_buffer("embedding", target.reshape(-1, target.shape[-1]))
        self.weight, self.stop, self.name = float(weight), float(stop), name

    def forward(self, image_embeddings: torch.Tensor, shares: torch.Tensor | None = None) -> torch.Tensor:
        normed = F.normalize(image_embeddings.float(), dim=-1)
        dists = (normed[:, None] - self.embedding[None]).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
        dists = dists * math.copysign(1.0, self.weight)
        floored = replace_grad(dists, torch.maximum(dists, torch.full_like(dists, self.stop)))
        per_cutout = floored.mean(1)
        mean = per_cutout.mean() if shares is None else (per_cutout * shares).sum()
        return abs(self.weight) * mean


def tv_loss(z: torch.Tensor) -> torch.Tensor:
    """The vqgan-clip-app's TV regulariser, on the latent (not the pixels).

    Per latent position, ``sqrt(mean over channels of (dx² + dy² + 1e-8))`` with replicated edges,
    averaged over positions: an L1-like total variation (Rudin, Osher & Fatemi 1992) of the code
    map, so the weight means what ``tv_loss_weight`` meant there (default 1e-3)."""
    padded = F.pad(z, (0, 1, 0, 1), "replicate")
    x_diff = padded[..., :-1, 1:] - padded[..., :-1, :-1]
    y_diff = padded[..., 1:, :-1] - padded[..., :-1, :-1]
    return (x_diff.pow(2) + y_diff.pow(2) + 1e-8).mean(dim=1).sqrt().mean()


def mse_weight_at(step: int, weight: float, decay: float, every: int) -> float:
    """``weight`` minus ``decay`` for every ``every`` steps done, never below 0; every=0: no decay."""
    if every <= 0 or decay <= 0:
        return weight
    return max(0.0, weight - decay * (step // every))


def mse_loss(z: torch.Tensor, z_start: torch.Tensor, weight: float) -> torch.Tensor:
    """The original app's MSE regularisation: weight/2 * mean squared latent change."""
    return F.mse_loss(z, z_start) * (weight / 2)
