"""The Stable Diffusion engines' parts, one concern per module (``logic.engines.sd_common`` gathers them)."""
