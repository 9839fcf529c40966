"""Cutouts: the crops of the image that CLIP looks at each step.

``random``: Crowson's notebook cutouts, square crops with ``size = rand**cut_pow * (max - min) + min``,
resampled for all crops at once by one ``roi_align`` call (it averages an adaptive number of samples
per output pixel, like the notebook's area pooling, instead of one resample per crop).
``pooled``: the VQGAN-CLIP generator's "latest" cutouts, the whole image through the mean of an
adaptive average and an adaptive max pool, repeated ``cutn`` times.

Augmentations (kornia, differentiable and batched): flips, affine, perspective, colour jitter, and
noise of a random strength per cutout, as in the generator.

Without augmentations, identical cutouts are encoded once and weighted by how often they occur
(e.g. every random crop of an image no larger than CLIP's input is the whole image): the loss and
its gradient are the same, the CLIP work is not repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CUT_METHODS = ("random", "pooled")
NOISE_FACTOR = 0.1


@dataclass
class Cutouts:
    """Cutouts to encode and each one's share of the ``cutn`` (None: all equal)."""

    pixels: torch.Tensor
    weights: torch.Tensor | None = None


def random_boxes(width: int, height: int, cut_size: int, cutn: int, cut_pow: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(cutn, 4) boxes x0, y0, x1, y1 in pixels, sized as in the notebook."""
    max_size, min_size = min(width, height), min(width, height, cut_size)
    rand = torch.rand(cutn, 3, generator=generator)
    sizes = (rand[:, 0] ** cut_pow * (max_size - min_size) + min_size).floor()
    x0 = (rand[:, 1] * (width - sizes + 1)).floor().clamp(max=width - sizes)
    y0 = (rand[:, 2] * (height - sizes + 1)).floor().clamp(max=height - sizes)
    return torch.stack([x0, y0, x0 + sizes, y0 + sizes], 1)


def resample_boxes(image: torch.Tensor, boxes: torch.Tensor, cut_size: int) -> torch.Tensor:
    """Every box of ``image`` (1, C, H, W) resampled to cut_size² in one batched call."""
    from torchvision.ops import roi_align

    max_side = max(1.0, float((boxes[:, 2] - boxes[:, 0]).max()))
    ratio = max(1, math.ceil(max_side / cut_size))
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1).to(image)
    return roi_align(image, rois, (cut_size, cut_size), sampling_ratio=ratio, aligned=True)


def make_cutouts(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``cutn`` random crops resampled to ``cut_size`` (all of them, duplicates included)."""
    _, _, height, width = image.shape
    return resample_boxes(image, random_boxes(width, height, cut_size, cutn, cut_pow, generator), cut_size)


def pooled_cutout(image: torch.Tensor, cut_size: int) -> torch.Tensor:
    return (F.adaptive_avg_pool2d(image, cut_size) + F.adaptive_max_pool2d(image, cut_size)) / 2


def build_augmenter() -> torch.nn.Module:
    """The generator's augmentation stack, from kornia (batched, differentiable)."""
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomAffine(degrees=15, translate=0.1, p=0.7, padding_mode="border"),
        K.RandomPerspective(0.7, p=0.7),
        K.ColorJitter(hue=0.1, saturation=0.1, p=0.7),
        data_keys=["input"],
    )


def add_noise(batch: torch.Tensor) -> torch.Tensor:
    """Gaussian noise with a random strength in [0, NOISE_FACTOR) per cutout."""
    strength = batch.new_empty(batch.shape[0], 1, 1, 1).uniform_(0, NOISE_FACTOR)
    return batch + strength * torch.randn_like(batch)


class Cutter:
    """Turns the decoded image into the cutouts CLIP encodes this step."""

    def __init__(self, cut_size: int, cutn: int, cut_pow: float, method: str = "random",
                 augment: bool = True, generator: torch.Generator | None = None):
        self.cut_size, self.cutn, self.cut_pow, self.method = cut_size, cutn, cut_pow, method
        self.generator = generator
        self.augmenter = build_augmenter() if augment else None

    def __call__(self, image: torch.Tensor) -> Cutouts:
        if self.augmenter is not None:
            return Cutouts(add_noise(self.augmenter(self._all(image))))
        if self.method == "pooled":
            return Cutouts(pooled_cutout(image, self.cut_size))  # cutn identical crops: encode one
        return self._unique_random(image)

    def _all(self, image: torch.Tensor) -> torch.Tensor:
        if self.method == "pooled":
            return pooled_cutout(image, self.cut_size).expand(self.cutn, -1, -1, -1)
        return make_cutouts(image, self.cut_size, self.cutn, self.cut_pow, self.generator)

    def _unique_random(self, image: torch.Tensor) -> Cutouts:
        _, _, height, width = image.shape
        boxes = random_boxes(width, height, self.cut_size, self.cutn, self.cut_pow, self.generator)
        unique, counts = torch.unique(boxes, dim=0, return_counts=True)
        pixels = resample_boxes(image, unique, self.cut_size)
        if len(unique) == len(boxes):
            return Cutouts(pixels)
        return Cutouts(pixels, (counts.float() / len(boxes)).to(image.device))
