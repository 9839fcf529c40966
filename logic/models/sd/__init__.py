"""Stable Diffusion loading, one concern per module.

* ``sources``     what ``--model`` names: hub id, diffusers folder, single file; sidecar files
* ``families``    the family registry (``families/*.yaml``): pipelines per task, latents, sizes, detection
* ``memory``      the memory plan (dtype, slicing, tiling, offload) from free VRAM and the family's needs
* ``tokenizers``  CLIP tokenizers written offline from open_clip's BPE vocabulary
* ``single_file`` one original-layout checkpoint -> the family's pipeline, from shipped configs
* ``loading``     ``load_sd``: a source -> ``SdModels`` (the pipeline per task shares the weights)
* ``loras``       LoRA files: lookup, weights, adapters on the cached model
* ``hashes``      file fingerprints (A1111's short SHA-256, a quick folder hash)
* ``safety``      diffusers' safety checker as ``checker(images) -> [bool]``
* ``export``      diffusers -> original key layout (single files for the tests, or to share a model)

``logic.models.diffusion`` re-exports the public names, so callers keep one import.
"""
