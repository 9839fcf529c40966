"""Cutouts: the crops of the image that CLIP looks at each step.

``random``: Crowson's notebook cutouts, square crops with ``size = rand**cut_pow * (max - min) + min``,
resampled exactly as the notebook's ``resample`` does (a Lanczos-2 antialiasing filter for the
downscale, then bicubic), but for all crops at once: that resampling is linear and separable, so
each crop is ``M_s X Mᵀ_s`` with one matrix ``M_s`` per crop size (cached), and all crops go
through two batched matrix products instead of two convolutions and an interpolation each.
``pooled``: the VQGAN-CLIP generator's "latest" cutouts, the whole image through the mean of an
adaptive average and an adaptive max pool, repeated ``cutn`` times.

Augmentations (kornia, differentiable and batched), chosen as a list of the VQGAN-CLIP
generator's ``-aug`` codes, in the order given. The default is the notebook's stack (flip,
sharpness, affine 30° p=0.8, perspective 0.2, colour jitter 0.01) with the notebook's strengths;
codes the notebook lacks take the generator's. After them, as in both references, Gaussian noise
of a random strength per cutout, then a clamp to [0, 1] that lets gradients through. The colour
jitter keeps kornia's random draws and result but computes it with less work (``hsv_jitter_class``).

Without augmentations, identical cutouts are encoded once and weighted by how often they occur
(e.g. every random crop of an image no larger than CLIP's input is the whole image): the loss and
its gradient are the same, the CLIP work is not repeated.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .synthesis import clamp_with_grad

CUT_METHODS = ("random", "pooled")
NOISE_FACTOR = 0.1


def _augmentation(code: str, cut_size: int) -> torch.nn.Module:
    """One augmentation by its generator code; Hf, Sh, Af, Pe, Ji with the notebook's strengths."""
    import kornia.augmentation as K

    makers = {
        "Hf": lambda: K.RandomHorizontalFlip(p=0.5),
        "Sh": lambda: K.RandomSharpness(0.3, p=0.4),
        "Af": lambda: K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border"),
        "Pe": lambda: K.RandomPerspective(0.2, p=0.4),
        "Ji": lambda: hsv_jitter_class()(hue=0.01, saturation=0.01, p=0.7),
        "Gn": lambda: K.RandomGaussianNoise(mean=0.0, std=1.0, p=0.5),
        "Ro": lambda: K.RandomRotation(degrees=15, p=0.7),
        "Et": lambda: K.RandomElasticTransform(p=0.7),
        "Ts": lambda: K.RandomThinPlateSpline(scale=0.8, same_on_batch=True, p=0.7),
        "Cr": lambda: K.RandomCrop(size=(cut_size, cut_size), pad_if_needed=True, padding_mode="reflect", p=0.5),
        "Er": lambda: K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=True, p=0.7),
        "Re": lambda: K.RandomResizedCrop(size=(cut_size, cut_size), scale=(0.1, 1), ratio=(0.75, 1.333),
                                          cropping_mode="resample", p=0.5),
    }
    return makers[code]()


def shift_hue(rgb: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] with the HSV hue of each image (B, 3, H, W) turned by ``turns`` (fractions of
    a circle): ``kornia.enhance.adjust_hue`` to 2e-6, with half the work (hue in sixths, and back
    through ``c = v - v·s·clamp(min(k, 4 - k), 0, 1)``, where v·s is max - min)."""
    r, g, b = rgb.unbind(-3)
    v, m = rgb.amax(-3), rgb.amin(-3)
    delta = v - m
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    hue = torch.where(v == r, (g - b) / safe, torch.where(v == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue) + 6 * turns.view(-1, 1, 1)
    channels = [v - delta * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
                for k in (torch.remainder(n + hue, 6) for n in (5, 3, 1))]
    return torch.stack(channels, -3)


@functools.cache
def hsv_jitter_class() -> type:
    """kornia's ``ColorJitter`` with its own random draws (which cutouts, factors, order), applied
    as the plain loop its batched dispatcher stands for; adjustments left at their neutral factor
    are skipped and the hue turn is ``shift_hue``. A seed gives kornia's jitter (a test compares)
    for about a third of the CPU time."""
    import kornia.augmentation as K

    class PlainColorJitter(K.ColorJitter):
        def apply_transform(self, input, params, flags, transform=None):
            steps = {0: (self._brightness_fn, "brightness_factor"), 1: (self._contrast_fn, "contrast_factor"),
                     2: (self._saturation_fn, "saturation_factor"), 3: (shift_hue, "hue_factor")}
            neutral = {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0}
            out = input.clamp(0, 1)
            for index in params["order"].tolist():
                function, key = steps[index]
                factor = params[key].to(input)
                if not bool((factor == neutral[index]).all()):
                    out = function(out, factor)
            return out.clamp(0, 1)

    return PlainColorJitter


# code -> what it does, for the sidebar, the CLI help and the error sentence
AUGMENTS = {
    "Hf": "horizontal flip", "Sh": "sharpness", "Af": "affine (rotate 30°, shift)", "Pe": "perspective",
    "Ji": "colour jitter", "Gn": "Gaussian noise", "Ro": "rotation", "Et": "elastic", "Ts": "thin-plate spline",
    "Cr": "random crop", "Er": "random erasing", "Re": "random resized crop",
}
NOTEBOOK_AUGMENTS = ("Hf", "Sh", "Af", "Pe", "Ji")


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


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x != 0, torch.sin(math.pi * x) / (math.pi * x), x.new_ones([]))


def _lanczos(x: torch.Tensor, a: int) -> torch.Tensor:
    out = torch.where((-a < x) & (x < a), _sinc(x) * _sinc(x / a), x.new_zeros([]))
    return out / out.sum()


def _ramp(ratio: float, width: int) -> torch.Tensor:
    n = math.ceil(width / ratio + 1)
    out = torch.arange(n, dtype=torch.float64).float() * ratio
    return torch.cat([-out[1:].flip([0]), out])[1:-1]


def notebook_resample_1d(x: torch.Tensor, size: int) -> torch.Tensor:
    """The notebook's ``resample`` along dim 2 of (N, 1, L, 1): Lanczos-2 antialiasing when
    shrinking (reflected edges), then bicubic with aligned corners."""
    length = x.shape[2]
    if size < length:
        kernel = _lanczos(_ramp(size / length, 2), 2).to(x)
        pad = (kernel.shape[0] - 1) // 2
        x = F.conv2d(F.pad(x, (0, 0, pad, pad), "reflect"), kernel[None, None, :, None])
    return F.interpolate(x, (size, 1), mode="bicubic", align_corners=True)


@functools.lru_cache(maxsize=64)
def resample_matrix(length: int, size: int, device: str = "cpu") -> torch.Tensor:
    """(size, length): the notebook's resampling of a ``length`` signal to ``size`` samples, as a
    matrix (the resample applied to every unit vector), built on ``device``. Cached: a run meets
    the same crop sizes again and again (at most 64 kept, a few MB each)."""
    eye = torch.eye(length, device=device).view(length, 1, length, 1)
    return notebook_resample_1d(eye, size).view(length, size).T.contiguous()


def resample_boxes(image: torch.Tensor, boxes: torch.Tensor, cut_size: int) -> torch.Tensor:
    """Every square box of ``image`` (1, C, H, W) resampled to cut_size² as the notebook does, at once.

    Crops are gathered into a (n, C, S, S) batch (S: the largest side; smaller crops leave zeros
    that their matrix's zero columns ignore) and resampled by ``M X Mᵀ``."""
    sizes = (boxes[:, 2] - boxes[:, 0]).long().tolist()
    side = max(sizes)
    device = image.device
    matrices = torch.stack([F.pad(resample_matrix(size, cut_size, str(device)), (0, side - size))
                            for size in sizes]).to(image.dtype)
    steps = torch.arange(side)
    rows = (boxes[:, 1].long()[:, None] + steps).clamp(max=image.shape[2] - 1).to(device)
    cols = (boxes[:, 0].long()[:, None] + steps).clamp(max=image.shape[3] - 1).to(device)
    crops = image[0][:, rows[:, :, None], cols[:, None, :]].movedim(0, 1)  # (n, C, S, S)
    return matrices[:, None] @ crops @ matrices[:, None].transpose(-1, -2)


def make_cutouts(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``cutn`` random crops resampled to ``cut_size`` (all of them, duplicates included: each is
    augmented on its own). A box drawn twice is resampled once (an image no larger than CLIP's
    input is cut whole every time)."""
    _, _, height, width = image.shape
    boxes = random_boxes(width, height, cut_size, cutn, cut_pow, generator)
    unique, inverse = torch.unique(boxes, dim=0, return_inverse=True)
    if len(unique) == len(boxes):
        return resample_boxes(image, boxes, cut_size)
    return resample_boxes(image, unique, cut_size)[inverse.to(image.device)]


def pooled_cutout(image: torch.Tensor, cut_size: int) -> torch.Tensor:
    return (F.adaptive_avg_pool2d(image, cut_size) + F.adaptive_max_pool2d(image, cut_size)) / 2


def build_augmenter(codes, cut_size: int) -> torch.nn.Module:
    """The augmentations named by ``codes``, in that order (the generator's "pick your own")."""
    return torch.nn.Sequential(*(_augmentation(code, cut_size) for code in codes))


def add_noise(batch: torch.Tensor) -> torch.Tensor:
    """Gaussian noise with a random strength in [0, NOISE_FACTOR) per cutout."""
    strength = batch.new_empty(batch.shape[0], 1, 1, 1).uniform_(0, NOISE_FACTOR)
    return batch + strength * torch.randn_like(batch)


def check_augments(codes) -> list[str]:
    """The codes as given, or ValueError naming the unknown one and the known ones."""
    codes = [str(c).strip() for c in (codes or [])]
    for code in codes:
        if code not in AUGMENTS:
            raise ValueError(f"Unknown augmentation {code!r}. Known: "
                             + ", ".join(f"{k} ({v})" for k, v in AUGMENTS.items()) + ".")
    return codes


class Cutter:
    """Turns the decoded image into the cutouts CLIP encodes this step."""

    def __init__(self, cut_size: int, cutn: int, cut_pow: float, method: str = "random",
                 augment: bool = True, generator: torch.Generator | None = None,
                 augments=NOTEBOOK_AUGMENTS):
        self.cut_size, self.cutn, self.cut_pow, self.method = cut_size, cutn, cut_pow, method
        self.generator = generator
        self.augmenter = build_augmenter(augments, cut_size) if augment else None

    def __call__(self, image: torch.Tensor) -> Cutouts:
        if self.augmenter is not None:
            batch = add_noise(self.augmenter(self._all(image)))
            return Cutouts(clamp_with_grad(batch, 0, 1))
        if self.method == "pooled":
            return Cutouts(pooled_cutout(image, self.cut_size))  # cutn identical crops: encode one
        cutouts = self._unique_random(image)
        # Bicubic and Lanczos overshoot: the notebook clamps its cutouts, so does this.
        return Cutouts(clamp_with_grad(cutouts.pixels, 0, 1), cutouts.weights)

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
