"""diffusers' ``StableDiffusionSafetyChecker`` taken out of the pipeline and used as ``checker(images)``."""

from __future__ import annotations


def take_safety_checker(pipe):
    """Move the pipeline's checker into our hook (the pipeline would silently black out images)."""
    checker, extractor = getattr(pipe, "safety_checker", None), getattr(pipe, "feature_extractor", None)
    if checker is not None:
        pipe.safety_checker = None
        pipe.register_to_config(requires_safety_checker=False)
    if checker is None or extractor is None:
        return None
    return DiffusersSafetyChecker(checker, extractor)


class DiffusersSafetyChecker:
    """Adapts diffusers' ``StableDiffusionSafetyChecker`` to ``checker(images) -> list[bool]``."""

    def __init__(self, checker, feature_extractor):
        self.checker, self.feature_extractor = checker, feature_extractor

    def __call__(self, images) -> list[bool]:
        import numpy as np

        device = next(self.checker.parameters()).device
        dtype = next(self.checker.parameters()).dtype
        clip_input = self.feature_extractor(images, return_tensors="pt").pixel_values.to(device, dtype)
        arrays = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
        _, flags = self.checker(images=arrays, clip_input=clip_input)
        return [bool(f) for f in flags]
