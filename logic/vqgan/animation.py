"""Scroll / zoom / rotate animation, as in the VQGAN-CLIP generator's zoom videos.

Every ``animate_every`` steps the current image is moved (kornia affine warp, reflected borders),
encoded back into the latent, and the optimiser's moments are reset because they belong to the
old layout. Each move makes one video frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Motion:
    zoom: float = 1.0          # scale per frame (>1 zooms in)
    rotate: float = 0.0        # degrees per frame, counter-clockwise
    translate_x: float = 0.0   # pixels per frame
    translate_y: float = 0.0

    @property
    def still(self) -> bool:
        return self.zoom == 1.0 and not (self.rotate or self.translate_x or self.translate_y)


def move_pixels(pixels: torch.Tensor, motion: Motion) -> torch.Tensor:
    """Apply one frame's motion to (B, C, H, W) pixels."""
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine

    batch, _, height, width = pixels.shape
    matrix = get_affine_matrix2d(
        translations=torch.tensor([[motion.translate_x, motion.translate_y]], dtype=pixels.dtype),
        center=torch.tensor([[(width - 1) / 2, (height - 1) / 2]], dtype=pixels.dtype),
        scale=torch.full((1, 2), float(motion.zoom), dtype=pixels.dtype),
        angle=torch.tensor([float(motion.rotate)], dtype=pixels.dtype),
    ).to(pixels.device)
    return warp_affine(pixels, matrix[:, :2].expand(batch, -1, -1), (height, width),
                       padding_mode="reflection", align_corners=True)
