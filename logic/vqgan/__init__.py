"""Building blocks of the VQGAN+CLIP engine (``logic.engines.vqgan_clip``), one concern per module.

synthesis     latents -> pixels: straight-through quantiser (fast nearest-code search), decoder, clamps
cutouts       random / pooled cutouts in one batched resample, optional kornia augmentations
losses        CLIP prompt loss (spherical distance), total variation, MSE toward the start latent
starts        where the latent starts: random codes, pixel noise, a gradient, an init image
schedule      prompt stages ("story") that change every N steps
animation     zoom / rotate / translate between video frames
optimisers    the optimiser registry
continuation  the state kept for "continue this run" and the checks on a continue target
"""
