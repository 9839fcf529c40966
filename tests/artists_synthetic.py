"""Synthetic CLIP-like embeddings with a planted hub artist, for the matcher tests and benchmarks."""

from __future__ import annotations

import torch


def planted_hub(k: int = 12, dim: int = 64, bank_size: int = 200, seed: int = 0):
    """Image sets of uneven sizes, a modality gap, and one hub artist (index 0) whose works lean
    along the direction every generic prompt shares. Returns (names, images, bank, true_prompts)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    gap_image, gap_text, hub_dir = unit(rand(dim)) * 3, unit(rand(dim)) * 3, unit(rand(dim))
    styles = unit(rand(k, dim))
    names = [f"Artist {i:02d}" for i in range(k)]
    images = []
    for i in range(k):
        n = 120 if i == 0 else int(torch.randint(10, 40, (1,), generator=g))
        works = gap_image + styles[i] + 0.6 * rand(n, dim) / dim ** 0.5 * 4
        if i == 0:
            works = 1.8 * (works + 2.0 * hub_dir)  # large norms and the shared direction
        images.append(works)
    bank = gap_text + 1.0 * hub_dir + rand(bank_size, dim) / dim ** 0.5 * 2.5
    true_prompts = gap_text + 1.0 * hub_dir + 1.6 * styles + rand(k, dim) / dim ** 0.5 * 1.5
    return names, images, bank, true_prompts
