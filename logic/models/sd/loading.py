"""``load_sd``: a resolved source -> ``SdModels``, the family's pipeline placed per the memory plan.

The engines get a ready ``SdModels`` and never touch files. ``SdModels.pipeline(task)`` gives the
family's pipeline for a task made with ``from_pipe`` from the loaded one: the same modules (and
LoRA adapters), no second copy of the weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ...errors import UserError
from ..hub import install_timeouts
from .families import Family, family_of_folder, get_family, registry
from .. import hashes
from .memory import MemoryPlan, place_pipeline
from .safety import take_safety_checker
from .single_file import load_single_file
from .sources import HOW_TO_GET, ModelSource, first_line, hub_model_cached, hub_offline

log = logging.getLogger(__name__)


@dataclass
class SdModels:
    """A loaded model: its family, the pipeline it was loaded as, and one pipeline per task made from it."""

    pipe: Any
    source: ModelSource
    plan: MemoryPlan
    device: str
    model_hash: str | None = None
    loras: list[dict] = field(default_factory=list)   # {name, path, weight, hash}, set per run
    safety_checker: Any = None            # callable(images) -> list[bool], or None
    demo: bool = False
    preview_decoders: dict = field(default_factory=dict)   # folder -> AutoencoderTiny, loaded on first use
    family: Family | None = None
    pipes: dict = field(default_factory=dict)               # task -> pipeline sharing ``pipe``'s modules
    # A1111 extras (logic/a1111/extras.py): VAE override and hub revision
    revision: str | None = None           # a hub model's commit
    base_vae: Any = None                  # the model's own VAE while an override is in place
    vae_overrides: dict = field(default_factory=dict)      # VAE file -> AutoencoderKL, loaded on first use
    vae: dict | None = None               # {name, hash, path} of this run's VAE override

    def __post_init__(self):
        if self.family is None:
            self.family = family_of_pipeline(self.pipe)

    @property
    def inpaint_model(self) -> bool:
        """An inpainting UNet (9 input channels: latents, mask, masked image) rather than an ordinary one."""
        denoiser = getattr(self.pipe, "unet", None)
        return denoiser is not None and denoiser.config.in_channels == 9

    def pipeline(self, task: str):
        """The family's pipeline for ``task`` on the loaded modules (``from_pipe``: no weights copied)."""
        if task not in self.pipes:
            cls = self.family.pipeline_class(task)
            if isinstance(self.pipe, cls):
                made = self.pipe
            else:
                made = cls.from_pipe(self.pipe)
                if self.plan.cpu_offload or self.plan.sequential_offload:
                    place_pipeline(made, self.device, self.plan)  # offload hooks belong to a pipeline
            made.set_progress_bar_config(disable=True)
            self.pipes[task] = made
        return self.pipes[task]

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def size_multiple(self) -> int:
        """Sides must be multiples of this: the VAE's factor, times 2 for packed (Flux) latents."""
        return max(self.family.multiple, self.vae_scale_factor * (2 if self.family.packed_latents else 1))


def family_of_pipeline(pipe) -> Family:
    """The family of an already-built pipeline (its class, and SD 2.x's OpenCLIP text encoder)."""
    name = type(pipe).__name__
    encoder = getattr(pipe, "text_encoder", None)
    act = getattr(getattr(encoder, "config", None), "hidden_act", None)
    for family in registry().values():
        rule = family.detect
        if name in rule.get("pipeline_classes", []) and (not rule.get("text_encoder_act") or act in (None, rule["text_encoder_act"])):
            return family
    return get_family(name)  # raises the sentence listing the families


def load_sd(source: ModelSource, device: str, plan_for: Callable[[Family | None], MemoryPlan] | MemoryPlan,
            tokenizer_cache: Path,
            report: Callable[[str], None] = lambda m: None) -> SdModels:
    """Load a model the way its source asks and place it per the family's memory plan.

    ``plan_for(family)`` picks the plan once the family is known (before any weights load for a folder
    or a hub id already detected; a single file's family is known once its keys are read).
    """
    if isinstance(plan_for, MemoryPlan):
        fixed = plan_for
        plan_for = lambda family: fixed  # noqa: E731 - a plan chosen by the caller
    if source.kind == "file":
        report(f"Loading {source.name} (single file)…")
        pipe, family, plan = _load_file(source, plan_for, tokenizer_cache)
    else:
        family = detect_source_family(source)
        plan = plan_for(family) if family is not None else plan_for(None)
        report(f"Loading {source.name}…" if source.kind == "folder"
               else f"Loading {source.name} (the first use downloads it)…")
        pipe = from_pretrained(source, plan.torch_dtype)
        family = family or family_of_pipeline(pipe)
    checker = take_safety_checker(pipe)
    if source.sidecar.get("prediction_type") and source.kind != "file":
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                          prediction_type=source.sidecar["prediction_type"])
    report("Placing the model…")
    place_pipeline(pipe, device, plan)
    if checker is not None and not (plan.cpu_offload or plan.sequential_offload):
        checker.checker.to(device)  # no longer a pipeline component, so pipe.to() does not move it
    pipe.set_progress_bar_config(disable=True)
    # A1111/Civitai's "Model hash" (AutoV2) for files; folders have none; hub models record their commit
    model_hash = hashes.model_hash(Path(source.location)) if source.kind == "file" else None
    revision = hashes.hub_revision(source.location) if source.kind == "hub" else None
    return SdModels(pipe, source, plan, device, model_hash, [], checker, family=family, revision=revision)


def _load_file(source: ModelSource, plan_for, tokenizer_cache: Path):
    # The dtype is needed while the file is converted; the family only after its keys are read,
    # so the plan is made from the sidecar's family when it names one and checked afterwards.
    named = get_family(source.sidecar["family"]) if source.sidecar.get("family") else None
    plan = plan_for(named)
    pipe, family = load_single_file(Path(source.location), source.sidecar, plan.torch_dtype, tokenizer_cache)
    if named is None:
        family_plan = plan_for(family)
        if family_plan.torch_dtype != plan.torch_dtype:
            pipe.to(dtype=family_plan.torch_dtype)
        plan = family_plan
    return pipe, family, plan


def detect_source_family(source: ModelSource) -> Family | None:
    """A folder's (or cached hub model's) family from its model_index.json, before loading weights."""
    if source.sidecar.get("family"):
        return get_family(source.sidecar["family"])
    folder = Path(source.location) if source.kind == "folder" else _cached_hub_folder(source.location)
    if folder is None or not (folder / "model_index.json").is_file():
        return None
    return family_of_folder(folder)


def _cached_hub_folder(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "model_index.json")
        return Path(found).parent if isinstance(found, str) else None
    except Exception:  # noqa: BLE001 - a broken cache reads as "not cached"
        return None


def weights_variant(folder: Path) -> str | None:
    """``fp16`` when a folder holds only ``*.fp16.safetensors`` weights (as many hub snapshots do)."""
    folder = Path(folder)
    weights = [p.name for p in folder.glob("*/*") if p.suffix in (".safetensors", ".bin")]
    plain = [n for n in weights if ".fp16." not in n]
    return "fp16" if weights and not plain else None


def from_pretrained(source: ModelSource, dtype: torch.dtype):
    """``DiffusionPipeline.from_pretrained``: the class named in model_index.json, so every family loads
    as its own pipeline (an SDXL folder as StableDiffusionXLPipeline, with its pooled embeddings)."""
    from diffusers import DiffusionPipeline

    options = {"dtype": dtype}
    folder = Path(source.location) if source.kind == "folder" else _cached_hub_folder(source.location)
    if folder is not None and weights_variant(folder):
        options["variant"] = weights_variant(folder)
    # A hub model already in the cache loads from it without asking the hub (no network requests,
    # no waiting out retries offline); a partial cache falls back to downloading the rest.
    if source.kind == "hub" and hub_model_cached(source.location) and not hub_offline():
        try:
            return DiffusionPipeline.from_pretrained(source.location, local_files_only=True, **options)
        except (OSError, ValueError):
            log.info("%s is only partly in the cache: downloading the rest", source.name)
    local_only = source.kind == "folder" or hub_offline()
    install_timeouts()  # no hub request waits forever
    try:
        return DiffusionPipeline.from_pretrained(source.location, local_files_only=local_only, **options)
    except (OSError, ValueError) as exc:
        if source.kind == "hub" and "variant" not in options and "fp16" in str(exc):
            # a repository that only has *.fp16.safetensors (diffusers names the variant in its error)
            try:
                return DiffusionPipeline.from_pretrained(source.location, local_files_only=local_only,
                                                         variant="fp16", dtype=dtype)
            except (OSError, ValueError):
                pass
        if source.kind == "hub":
            raise UserError(f"The model {source.name} could not be downloaded or found in the cache "
                            f"({first_line(exc)}): {HOW_TO_GET}.") from None
        raise UserError(f"The model folder {source.location} could not be loaded ({first_line(exc)}): "
                        "is it a complete diffusers folder?") from None


def _hub_revision(pipe) -> str | None:
    path = getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path")
    return Path(path).name[:10] if path and Path(path).exists() else None


def read_model_index(folder: Path) -> dict:
    return json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))


def peek_family(source: ModelSource) -> Family | None:
    """The family without loading weights (for the UI): a folder's model_index.json, a .safetensors
    file's key names (its header only); None where that needs more (a hub id not cached, a .ckpt)."""
    try:
        if source.kind != "file":
            return detect_source_family(source)
        if source.sidecar.get("family"):
            return get_family(source.sidecar["family"])
        if not source.location.lower().endswith(".safetensors"):
            return None
        from safetensors import safe_open

        from .families import family_of_keys

        with safe_open(source.location, framework="pt") as handle:
            return family_of_keys(handle.keys(), source.name)
    except (UserError, OSError, ValueError):
        return None
