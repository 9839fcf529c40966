"""Loading Stable Diffusion: a hub id, a local diffusers folder, or one .safetensors/.ckpt file.

Loading only: the engines get a ready ``SdModels`` and never touch files.

* Hub ids load with ``from_pretrained`` (the first use downloads into the usual Hugging Face cache).
* A diffusers folder (``model_index.json`` inside) loads with ``from_pretrained(local_files_only=True)``.
* A single checkpoint file (DreamBooth / community models, original CompVis key layout) is read with
  ``load_checkpoint`` (safetensors, or torch's weights-only unpickler, which refuses a ``.ckpt``
  whose pickle names anything but tensors and plain data), its keys converted with diffusers' own converters, and the weights put into
  components built from local configs (``sd_configs/<base>/``, shipped as data): no network at all.
  The CLIP tokenizer for those configs is written from the BPE vocabulary open_clip ships.
* A sidecar ``<model>.yaml`` (or ``<model>.safetensors.yaml``) beside a model may say::

      token: sks person          # the DreamBooth instance token, shown in the UI
      base: sd15                 # a config name in sd_configs/ or a path to a diffusers folder
      prediction_type: epsilon   # or v_prediction (SD 2.x 768 models)
      description: my dog, 2000 steps
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from ..errors import UserError
from . import hashes, lora_formats
from .checkpoints import check_safetensors_header, load_checkpoint, state_dict_of
from .hub import install_timeouts

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent / "sd_configs"
DEFAULT_BASE = "sd15"
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
LORA_SUFFIXES = (".safetensors",)
HOW_TO_GET = ("run `bash download-weights.sh --sd` on a connected machine, or put a .safetensors file "
              "in assets/models/")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# Where a model comes from --------------------------------------------------------------------------

@dataclass
class ModelSource:
    """A resolved ``--model``: kind is 'hub', 'folder' or 'file'."""

    kind: str
    location: str                 # hub id or absolute path
    name: str                     # what people see
    sidecar: dict = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        return self.sidecar.get("token")


def sidecar_path(model_path: Path) -> Path | None:
    """``<model>.yaml`` or ``<model>.<suffix>.yaml`` beside a model file or folder, if present."""
    model_path = Path(model_path)
    for candidate in (model_path.with_name(model_path.name + ".yaml"),
                      model_path.with_suffix(".yaml") if model_path.suffix else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def read_sidecar(model_path: Path) -> dict:
    """The sidecar settings of a model (empty when there is none)."""
    path = sidecar_path(model_path)
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"The sidecar file {path.name} is not valid YAML ({exc}): fix it or remove it.") from None
    if not isinstance(data, dict):
        raise UserError(f"The sidecar file {path.name} must hold 'key: value' lines (token, base, prediction_type).")
    return data


def resolve_model(name: str, models_dir: Path) -> ModelSource:
    """Find ``name``: a path, a file or folder in ``models_dir``, or a Hugging Face hub id."""
    name = str(name).strip()
    if not name:
        raise UserError(f"No model was given: name a hub id, a folder, or a file in assets/models/; {HOW_TO_GET}.")
    for candidate in _local_candidates(name, models_dir):
        if candidate.is_dir() and (candidate / "model_index.json").is_file():
            return ModelSource("folder", str(candidate.resolve()), candidate.name, read_sidecar(candidate))
        if candidate.is_file() and candidate.suffix.lower() in CHECKPOINT_SUFFIXES:
            return ModelSource("file", str(candidate.resolve()), candidate.name, read_sidecar(candidate))
        if candidate.is_file():
            raise UserError(f"The model file {candidate.name} is not a .safetensors or .ckpt file.")
        if candidate.is_dir():
            raise UserError(f"The folder {candidate} is not a diffusers model (it has no model_index.json).")
    looks_local = name.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in name.rstrip("/").split("/", 1)[-1] \
        or name.startswith((".", "/", "~"))
    if _HUB_ID.match(name) and not looks_local:
        if _hub_offline() and not hub_model_cached(name):
            raise UserError(f"The model {name} is not downloaded and this machine is offline: {HOW_TO_GET}.")
        return ModelSource("hub", name, name)
    raise UserError(f"The model {name} was not found (looked in {models_dir}): {HOW_TO_GET}.")


def _local_candidates(name: str, models_dir: Path) -> list[Path]:
    path = Path(name).expanduser()
    candidates = [path]
    if not path.is_absolute():
        candidates.append(models_dir / name)
        candidates += [models_dir / (name + suffix) for suffix in CHECKPOINT_SUFFIXES]
    return [c for c in candidates if c.exists()]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def hub_model_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str)
    except Exception:  # noqa: BLE001 - a broken cache reads as "not cached"
        return False


def list_local_models(models_dir: Path) -> list[str]:
    """Model files and diffusers folders in ``models_dir`` (for the UI's model list)."""
    if not models_dir.is_dir():
        return []
    found = [p.name for p in sorted(models_dir.iterdir())
             if (p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
             or (p.is_dir() and (p / "model_index.json").is_file())]
    return found


def list_loras(loras_dir: Path) -> list[str]:
    if not loras_dir.is_dir():
        return []
    return [p.name for p in sorted(loras_dir.iterdir()) if p.suffix.lower() in LORA_SUFFIXES]


def parse_lora(text: str, loras_dir: Path) -> tuple[Path, float]:
    """'PATH[:weight]' -> (existing path, weight); a bare name is looked up in assets/loras/."""
    path_text, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head and re.fullmatch(r"-?\d+(\.\d+)?", tail):
        path_text, weight = head, float(tail)
    elif sep and head and _find_lora(head, loras_dir) is not None:
        raise UserError(f"The LoRA weight {tail} is not a number: write the weight after the name, "
                        f"e.g. {Path(head).stem}:0.8.")
    found = _find_lora(path_text, loras_dir)
    if found is None:
        raise UserError(f"The LoRA {path_text} was not found (looked in {loras_dir}): "
                        "put the .safetensors file there.")
    check_safetensors_header(found)
    return found, weight


def _find_lora(path_text: str, loras_dir: Path) -> Path | None:
    for candidate in (Path(path_text).expanduser(), loras_dir / path_text, loras_dir / (path_text + ".safetensors")):
        if candidate.is_file():
            return candidate.resolve()
    return None


def file_sha256(path: Path, length: int = 12) -> str:
    """The start of the file's SHA-256: the short hash A1111 writes as "Lora hashes" (and sites search by)."""
    path = Path(path)
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)[:length]


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def short_hash(path: Path, chunk: int = 1 << 20) -> str:
    """A quick fingerprint of a file or folder: sizes plus the first and last MiB of each weights file."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                 and p.suffix in (".safetensors", ".bin", ".json", ".ckpt"))
    digest = hashlib.sha256()
    for item in files:
        size = item.stat().st_size
        digest.update(f"{item.relative_to(path) if item != path else item.name}:{size}".encode())
        with open(item, "rb") as handle:
            digest.update(handle.read(chunk))
            if size > chunk:
                handle.seek(-chunk, 2)
                digest.update(handle.read(chunk))
    return digest.hexdigest()[:10]


# Memory policy -------------------------------------------------------------------------------------

PRECISIONS = ("auto", "fp16", "bf16", "fp32")
MEMORY_MODES = ("auto", "fast", "balanced", "low")
_GIB = 1024 ** 3


@dataclass(frozen=True)
class MemoryPlan:
    """How to fit the model: dtype name, attention slicing, VAE tiling, model CPU offload."""

    dtype: str = "fp32"
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    reason: str = ""

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.dtype]


def free_vram(device: str) -> int | None:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def memory_plan(device: str, precision: str = "auto", memory: str = "auto", free_bytes: int | None = None) -> MemoryPlan:
    """Pick dtype and memory savers from the free VRAM; ``precision``/``memory`` override the pick.

    fp16 on CUDA (bf16 when asked), fp32 on the CPU. ``fast``: nothing saved (>= 8 GiB free);
    ``balanced``: attention slicing + VAE tiling (4-8 GiB); ``low``: also model CPU offload (< 4 GiB).
    """
    gpu = device.startswith("cuda")
    dtype = precision if precision != "auto" else ("fp16" if gpu else "fp32")
    if not gpu and dtype == "fp16":
        dtype = "fp32"  # half precision convolutions are not implemented (or very slow) on the CPU
    if memory == "auto":
        if not gpu:
            memory, reason = "fast", "CPU: full precision, no slicing (it would only slow the CPU down)"
        else:
            free = free_bytes if free_bytes is not None else (free_vram(device) or 0)
            memory = "fast" if free >= 8 * _GIB else "balanced" if free >= 4 * _GIB else "low"
            reason = f"{free / _GIB:.1f} GiB free on {device}"
    else:
        reason = f"memory mode {memory} chosen by hand"
    return MemoryPlan(dtype=dtype, attention_slicing=memory in ("balanced", "low"),
                      vae_tiling=memory in ("balanced", "low"), cpu_offload=gpu and memory == "low",
                      reason=reason)


# The tokenizer, offline ----------------------------------------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_tokenizer(folder: Path, bpe_path: Path | None = None) -> Path:
    """Write vocab.json + merges.txt for transformers' CLIPTokenizer from open_clip's BPE file.

    The same construction as CLIP's ``SimpleTokenizer``: 256 byte symbols, the same with ``</w>``,
    the first 48,894 merges, then the two special tokens, 49,408 entries in all.
    """
    folder = Path(folder)
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    if bpe_path is None:
        from open_clip.tokenizer import default_bpe

        bpe_path = Path(default_bpe())
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    _write_text_atomic(folder / "vocab.json", json.dumps({tok: i for i, tok in enumerate(vocab_list)}, ensure_ascii=False))
    _write_text_atomic(folder / "tokenizer_config.json", json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}, indent=2))
    _write_text_atomic(folder / "special_tokens_map.json", json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>"}, indent=2))
    return folder


def load_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# Loading -------------------------------------------------------------------------------------------

@dataclass
class SdModels:
    """A loaded Stable Diffusion model: the txt2img pipeline, its img2img twin, and what it is."""

    pipe: Any
    source: ModelSource
    plan: MemoryPlan
    device: str
    model_hash: str | None = None
    loras: list[dict] = field(default_factory=list)   # {name, path, weight, hash}, set per run
    safety_checker: Any = None            # callable(images) -> list[bool], or None
    demo: bool = False
    preview_decoders: dict = field(default_factory=dict)   # folder -> AutoencoderTiny, loaded on first use
    # issue 13 (logic/a1111/extras.py): VAE override and hub revision
    revision: str | None = None           # a hub model's commit
    base_vae: Any = None                  # the model's own VAE while an override is in place
    vae_overrides: dict = field(default_factory=dict)      # VAE file -> AutoencoderKL, loaded on first use
    vae: dict | None = None               # {name, hash, path} of this run's VAE override
    _img2img: Any = None

    @property
    def img2img(self):
        if self._img2img is None:
            from diffusers import StableDiffusionImg2ImgPipeline

            self._img2img = StableDiffusionImg2ImgPipeline(**self.pipe.components)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)


def load_sd(source: ModelSource, device: str, plan: MemoryPlan, tokenizer_cache: Path,
            report: Callable[[str], None] = lambda m: None) -> SdModels:
    """Load a model the way its source asks and place it per ``plan`` (LoRAs come per run: ``set_loras``)."""
    dtype = plan.torch_dtype
    if source.kind == "file":
        report(f"Loading {source.name} (single file)…")
        pipe = load_single_file(Path(source.location), source.sidecar, dtype, tokenizer_cache)
    else:
        report(f"Loading {source.name}…" if source.kind == "folder"
               else f"Loading {source.name} (the first use downloads it, about 4 GB)…")
        pipe = _from_pretrained(source, dtype)
    checker = _take_safety_checker(pipe)
    if source.sidecar.get("prediction_type"):
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                          prediction_type=source.sidecar["prediction_type"])
    report("Placing the model…")
    place_pipeline(pipe, device, plan)
    if checker is not None and not plan.cpu_offload:
        checker.checker.to(device)  # no longer a pipeline component, so pipe.to() does not move it
    pipe.set_progress_bar_config(disable=True)
    # A1111/Civitai's "Model hash" (AutoV2) for files; folders have none; hub models record their commit
    model_hash = hashes.model_hash(Path(source.location)) if source.kind == "file" else None
    revision = hashes.hub_revision(source.location) if source.kind == "hub" else None
    return SdModels(pipe, source, plan, device, model_hash, [], checker, revision=revision)


def _from_pretrained(source: ModelSource, dtype: torch.dtype):
    from diffusers import StableDiffusionPipeline

    # A hub model already in the cache loads from it without asking the hub (no network requests,
    # no waiting out retries offline); a partial cache falls back to downloading the rest.
    if source.kind == "hub" and hub_model_cached(source.location) and not _hub_offline():
        try:
            return StableDiffusionPipeline.from_pretrained(source.location, dtype=dtype, local_files_only=True)
        except (OSError, ValueError):
            log.info("%s is only partly in the cache: downloading the rest", source.name)
    local_only = source.kind == "folder" or _hub_offline()
    install_timeouts()  # no hub request waits forever
    try:
        return StableDiffusionPipeline.from_pretrained(source.location, dtype=dtype, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        if source.kind == "hub":
            raise UserError(f"The model {source.name} could not be downloaded or found in the cache "
                            f"({_first_line(exc)}): {HOW_TO_GET}.") from None
        raise UserError(f"The model folder {source.location} could not be loaded ({_first_line(exc)}): "
                        "is it a complete diffusers folder?") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n")[0][:200]


def _hub_revision(pipe) -> str | None:
    path = getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path")
    return Path(path).name[:10] if path and Path(path).exists() else None


def _take_safety_checker(pipe):
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


def place_pipeline(pipe, device: str, plan: MemoryPlan) -> None:
    """Move to the device and switch on the memory savers the plan asks for."""
    if plan.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
    if plan.vae_tiling:
        pipe.vae.enable_tiling()


def set_loras(models: SdModels, loras: list[tuple[Path, float]]) -> None:
    """Make ``loras`` the model's LoRAs (diffusers/kohya formats), as named adapters with their weights.

    The cached model outlives a run, so the previous run's LoRAs are unloaded first (the adapters
    are removed, not fused: the base weights are never changed, so a plain run after a LoRA run is
    the same as before it).
    """
    wanted = [{"name": Path(p).stem, "path": str(p), "weight": float(w), "hash": hashes.lora_hash(p)} for p, w in loras]
    if wanted == models.loras:
        return
    if models.loras:
        models.pipe.unload_lora_weights()
        models.loras = []
    names = [f"lora{index}" for index in range(len(wanted))]
    for name, lora in zip(names, wanted):
        _load_lora(models.pipe, Path(lora["path"]), name)
    if names:
        models.pipe.set_adapters(names, adapter_weights=[lora["weight"] for lora in wanted])
    models.loras = wanted


def _load_lora(pipe, path: Path, adapter_name: str) -> None:
    # issue 13: the file's format is checked first (LoHa/LoKr/embedding/no LoRA keys: one sentence);
    # the old diffusers attention-processor format is converted to the PEFT keys diffusers reads
    converted, first_key = lora_formats.prepare_lora(path)
    try:
        if converted is not None:
            pipe.load_lora_weights(converted, adapter_name=adapter_name)
        else:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter_name)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        pipe.unload_lora_weights()
        raise UserError(f"The LoRA {path.name} does not fit this model ({_first_line(exc)}): "
                        "use a LoRA trained for the same base model.") from None
    lora_formats.check_applied(pipe, path, adapter_name, first_key)


# Single files --------------------------------------------------------------------------------------

def base_config_dir(base: str | None) -> Path:
    """A shipped config name (``sd15``) or a path to a diffusers folder holding component configs."""
    base = base or DEFAULT_BASE
    shipped = CONFIGS_DIR / base
    if (shipped / "model_index.json").is_file():
        return shipped
    path = Path(base).expanduser()
    if (path / "unet" / "config.json").is_file():
        return path
    known = sorted(p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())
    raise UserError(f"The base config {base!r} is not known: use one of {', '.join(known)} "
                    "or the path of a diffusers folder.")


def load_single_file(path: Path, sidecar: dict, dtype: torch.dtype, tokenizer_cache: Path):
    """Build a pipeline from one original-layout checkpoint and local configs (no network)."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = base_config_dir(sidecar.get("base"))
    state = state_dict_of(load_checkpoint(path))
    unet_config = dict(UNet2DConditionModel.load_config(configs / "unet"))
    vae_config = dict(AutoencoderKL.load_config(configs / "vae"))
    unet_sd, vae_sd, text_sd = convert_original_state(state, unet_config, vae_config)
    del state
    where = f"{path.name} with base {sidecar.get('base') or DEFAULT_BASE}"
    unet = _build_with(lambda: UNet2DConditionModel.from_config(unet_config), unet_sd, f"UNet of {where}")
    vae = _build_with(lambda: AutoencoderKL.from_config(vae_config), vae_sd, f"VAE of {where}")
    text_config = CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json"))
    text_encoder = _build_with(lambda: CLIPTextModel(text_config), text_sd, f"text encoder of {where}")
    tokenizer_dir = configs / "tokenizer" if (configs / "tokenizer" / "vocab.json").is_file() else tokenizer_cache
    tokenizer = load_clip_tokenizer(tokenizer_dir)
    scheduler = PNDMScheduler.from_config(PNDMScheduler.load_config(configs / "scheduler"))
    pipe = StableDiffusionPipeline(vae=_cast(vae, dtype), text_encoder=_cast(text_encoder, dtype),
                                   tokenizer=tokenizer, unet=_cast(unet, dtype), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return pipe


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast only when needed (files often hold fp16 weights; casting fp32 to fp32 is a copy and a warning)."""
    if any(p.dtype != dtype for p in module.parameters()):
        module = module.to(dtype)
    return module


def convert_original_state(state: dict, unet_config: dict, vae_config: dict) -> tuple[dict, dict, dict]:
    """Original (CompVis/A1111) keys -> diffusers keys for UNet, VAE and CLIP text encoder."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)

    if not any(k.startswith("model.diffusion_model.") for k in state):
        raise UserError("This file is not a Stable Diffusion checkpoint (it has no model.diffusion_model weights): "
                        "is it a LoRA or a VAE? LoRAs go in assets/loras/.")
    unet_sd = convert_ldm_unet_checkpoint(state, unet_config)
    vae_sd = convert_ldm_vae_checkpoint(state, vae_config)
    text_sd = convert_ldm_clip_checkpoint(state)
    return unet_sd, vae_sd, text_sd


def _build_with(factory: Callable[[], torch.nn.Module], state: dict, what: str) -> torch.nn.Module:
    """Make the module without initialising weights, then take the checkpoint's tensors as they are."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = factory()
    expected = module.state_dict()
    state = _match_text_prefix(state, expected)
    missing = [k for k, v in expected.items() if k not in state and v.device.type == "meta"]
    if missing:
        raise UserError(f"The {what} is missing {len(missing)} weights (e.g. {missing[0]}): the file does not fit "
                        "that base config; set `base:` in the model's sidecar .yaml file.")
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise UserError(f"The {what} has weights of another shape ({k}: {tuple(state[k].shape)} instead of "
                        f"{tuple(expected[k].shape)}): set the right `base:` in the model's sidecar .yaml file.")
    weights = {k: (state[k] if k in state else v) for k, v in expected.items()}
    module.load_state_dict(weights, strict=True, assign=True)
    return module.eval()


def _match_text_prefix(state: dict, expected: dict) -> dict:
    """CLIP text weights are saved with or without 'text_model.' depending on the library version."""
    prefix = "text_model."
    want = any(k.startswith(prefix) for k in expected)
    have = any(k.startswith(prefix) for k in state)
    if want and not have:
        return {prefix + k: v for k, v in state.items()}
    if have and not want:
        return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return state


# Export (diffusers -> original layout), for tests and for sharing a model as one file ----------------

_UNET_RESNET = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
                ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
_UNET_TOP = [("time_embed.0", "time_embedding.linear_1"), ("time_embed.2", "time_embedding.linear_2"),
             ("input_blocks.0.0", "conv_in"), ("out.0", "conv_norm_out"), ("out.2", "conv_out")]
_VAE_TOP = [("encoder.norm_out", "encoder.conv_norm_out"), ("decoder.norm_out", "decoder.conv_norm_out")]
_VAE_ATTN = [("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")]


def diffusers_to_original(unet_sd: dict, vae_sd: dict, text_sd: dict, unet_config: dict) -> dict:
    """The inverse of ``convert_original_state``: one dict in the original checkpoint key layout."""
    out = {}
    for key, value in unet_sd.items():
        out["model.diffusion_model." + _unet_key_to_original(key, unet_config)] = value
    for key, value in vae_sd.items():
        new, value = _vae_key_to_original(key, value, vae_sd)
        out["first_stage_model." + new] = value
    for key, value in text_sd.items():
        key = key if key.startswith("text_model.") else "text_model." + key  # the layout SD files use
        out["cond_stage_model.transformer." + key] = value
    return out


def _unet_key_to_original(key: str, config: dict) -> str:
    for original, diffusers_name in _UNET_TOP:
        if key.startswith(diffusers_name + "."):
            return original + key[len(diffusers_name):]
    per = config["layers_per_block"]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind, index = int(parts[1]), parts[2], int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "downsamplers":
            return f"input_blocks.{1 + block * (per + 1) + per}.0.op.{rest.split('.', 1)[1]}"
        slot = 0 if kind == "resnets" else 1
        return _resnet_names(f"input_blocks.{1 + block * (per + 1) + index}.{slot}.{rest}", slot == 0)
    if parts[0] == "up_blocks":
        block, kind, index = int(parts[1]), parts[2], int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "upsamplers":
            has_attention = "CrossAttn" in config["up_block_types"][block]
            return f"output_blocks.{block * (per + 1) + per}.{2 if has_attention else 1}.conv.{rest.split('.', 1)[1]}"
        slot = 0 if kind == "resnets" else 1
        return _resnet_names(f"output_blocks.{block * (per + 1) + index}.{slot}.{rest}", slot == 0)
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return _resnet_names(f"middle_block.{2 * index}.{rest}", True)
        return f"middle_block.1.{rest}"
    raise ValueError(f"Unexpected UNet key {key}")


def _resnet_names(key: str, is_resnet: bool) -> str:
    if not is_resnet:
        return key
    for original, diffusers_name in _UNET_RESNET:
        key = key.replace(diffusers_name, original)
    return key


def _vae_key_to_original(key: str, value: torch.Tensor, vae_sd: dict) -> tuple[str, torch.Tensor]:
    for original, diffusers_name in _VAE_TOP:
        if key.startswith(diffusers_name + "."):
            return original + key[len(diffusers_name):], value
    parts = key.split(".")
    side = parts[0]
    if parts[1] in ("down_blocks", "up_blocks"):
        n_up = 1 + max(int(k.split(".")[2]) for k in vae_sd if k.startswith("decoder.up_blocks."))
        block = int(parts[2])
        stage = "down" if parts[1] == "down_blocks" else "up"
        if stage == "up":
            block = n_up - 1 - block
        if parts[3] in ("downsamplers", "upsamplers"):
            return f"{side}.{stage}.{block}.{'downsample' if stage == 'down' else 'upsample'}.{'.'.join(parts[5:])}", value
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{side}.{stage}.{block}.block.{parts[4]}.{rest}", value
    if parts[1] == "mid_block":
        if parts[2] == "resnets":
            rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{int(parts[3]) + 1}.{rest}", value
        rest = ".".join(parts[4:])
        for original, diffusers_name in _VAE_ATTN:
            if rest.startswith(diffusers_name + "."):
                rest = original + rest[len(diffusers_name):]
                break
        if value.ndim == 2:
            value = value[:, :, None, None]  # linear -> 1x1 conv, as the original stores them
        return f"{side}.mid.attn_1.{rest}", value
    return key, value
