"""AUTOMATIC1111 compatibility: prompt syntax, chunked weighted encoding, extras and PNG metadata.

People paste prompts and settings from A1111, Forge and Civitai; this package makes them mean here
what they mean there. Each module takes the pipeline's parts as arguments, so it works for every
CLIP-conditioned family (SD 1.x, SD 2.x, SDXL) however the pipeline was loaded.
"""

from .metadata import read_parameters  # noqa: E402,F401 - the one reader of images' parameters (API png-info too)
