"""Stable Diffusion loading: the public names of ``logic.models.sd``, in one import.

Each concern lives in its own module of ``logic/models/sd/`` (sources, families, memory, tokenizers,
single_file, loading, loras, hashes, safety, export); this module only gathers their public names
so callers write ``from logic.models import diffusion as sd``.
"""

from __future__ import annotations

from .sd.export import diffusers_to_original, open_clip_to_original, pipeline_to_original  # noqa: F401
from .sd.families import (Family, family_of_folder, family_of_keys, get_family, known_families,  # noqa: F401
                          registry as families)
from .sd.hashes import file_sha256, short_hash  # noqa: F401
from .sd.loading import (SdModels, family_of_pipeline, from_pretrained, load_sd, peek_family,  # noqa: F401
                         weights_variant)
from .sd.loras import LORA_SUFFIXES, list_loras, parse_lora, set_loras  # noqa: F401
from .sd.memory import MEMORY_MODES, PRECISIONS, MemoryPlan, free_vram, memory_plan, place_pipeline  # noqa: F401
from .sd.safety import DiffusersSafetyChecker  # noqa: F401
from .sd.single_file import CONFIGS_DIR, base_folder, load_single_file  # noqa: F401
from .sd.sources import (CHECKPOINT_SUFFIXES, HOW_TO_GET, ModelSource, hub_model_cached,  # noqa: F401
                         list_local_models, read_sidecar, resolve_model, sidecar_path)
from .sd.tokenizers import load_clip_tokenizer, write_clip_tokenizer  # noqa: F401
