"""What the Stable Diffusion engines (``diffusion``, ``walk``) share, gathered from ``logic/engines/sd/``.

One concern per module there: ``schedulers`` (A1111 sampler names -> diffusers), ``checks`` (inputs),
``models`` (loading under one cache key, LoRAs, the record), ``encoding`` (prompt -> embeddings, per
family), ``stream`` (a pipeline call as step events), ``previews`` (latents -> preview images),
``safety`` (placeholders for flagged images, grids) and ``tasks/`` (txt2img, img2img, inpaint, hires).
"""

from __future__ import annotations

from .sd.checks import (DEMO_MODEL, MAX_SEED, MAX_SIDE, MIN_SIDE, check_clip_skip_and_vae, check_common,  # noqa: F401
                        check_fraction,
                        check_model, check_seed, check_size, loras_dir, model_token, models_dir, tokenizer_cache,
                        upscalers_dir)
from .sd.encoding import encode_prompt, encode_run, mix, uses_cfg  # noqa: F401
from .sd.models import (describe_model, family_parameters, guidance_parameters, load_models,  # noqa: F401
                        lora_parameters, model_key, prepare, use_loras, use_scheduler)
from .sd.previews import (LATENT_RGB, LINEAR_PREVIEW, TINY_DECODER_PREVIEW, find_preview_decoder,  # noqa: F401
                          latents_to_preview, preview_decoder, preview_method, unpack_latents)
from .sd.safety import SAFETY_SENTENCE, apply_safety, make_grid, placeholder_image, safety_status  # noqa: F401
from .sd.schedulers import SCHEDULERS, make_scheduler, resolve_scheduler, sampler_for  # noqa: F401
from .sd.stream import StepEvent, stream_pipeline  # noqa: F401
