"""One original-layout checkpoint (CompVis / A1111 / Stability / BFL key names) -> a family's pipeline.

No network: the file is read with ``load_checkpoint`` (safetensors with its header checked, or
torch's weights-only unpickler, which refuses a pickle naming anything but tensors and plain data),
its family detected from its keys (or named by the
sidecar's ``family:``), and each component the family file lists is made from the file with
diffusers' own converters (``from_single_file`` on the tensors already loaded, so diffusers never
opens the file itself) and the configs shipped in ``sd_configs/<folder>/``; a Flux transformer in
BFL's layout by ``bfl`` (diffusers' converter assumes the full-size width). Components a file does
not hold (Flux's VAE and text encoders, for one) come from a base folder named in the sidecar;
optional ones (SD 3.5's T5, whose tokenizer is not shipped) are left out without one.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import UserError
from ..checkpoints import load_checkpoint, state_dict_of
from . import bfl
from .families import Family, family_of_keys, get_family, known_families
from .sources import first_line
from .tokenizers import load_clip_tokenizer

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "sd_configs"
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


def shipped_configs() -> list[str]:
    return sorted(p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())


def base_folder(base: str | None) -> Path | None:
    """The sidecar's ``base:``: a shipped config name or a diffusers folder; None when unset."""
    if not base:
        return None
    shipped = CONFIGS_DIR / str(base)
    if (shipped / "model_index.json").is_file():
        return shipped
    path = Path(str(base)).expanduser()
    if (path / "model_index.json").is_file():
        return path.resolve()
    raise UserError(f"The base {base!r} is not known: use one of {', '.join(shipped_configs())} "
                    "or the path of a diffusers folder.")


def unet_in_channels(state: dict) -> int | None:
    weight = state.get(UNET_IN)
    return int(weight.shape[1]) if weight is not None else None


def detect_file_family(state: dict, sidecar: dict, name: str) -> Family:
    if sidecar.get("family"):
        return get_family(str(sidecar["family"]))
    return family_of_keys(state.keys(), name)


def config_folder(family: Family, state: dict, sidecar: dict, name: str) -> Path:
    """The configs the file's components are built from: the sidecar's base, else the family's rule
    (the first whose ``unet_in_channels`` / ``has_key`` fit the file)."""
    chosen = base_folder(sidecar.get("base"))
    if chosen is not None:
        return chosen
    channels = unet_in_channels(state)
    for rule in family.single_file.get("configs", []):
        if "unet_in_channels" in rule and rule["unet_in_channels"] != channels:
            continue
        if "has_key" in rule and not any(rule["has_key"] in k for k in state):
            continue
        if rule["folder"] == "base":
            raise UserError(f"{name} is a {family.title} file; its tokenizers and the parts it leaves out come "
                            f"from a diffusers folder of that family: write `base: <folder>` in {name}.yaml.")
        return CONFIGS_DIR / rule["folder"]
    raise UserError(f"No shipped config fits {name} ({family.title}); set `base:` in its sidecar .yaml file.")


@dataclass
class Conversion:
    """One file being turned into a pipeline: its tensors and where the rest comes from."""

    state: dict
    family: Family
    configs: Path                  # the component configs (a shipped folder or the base)
    base: Path | None              # the sidecar's base folder: weights and tokenizers the file lacks
    dtype: torch.dtype
    tokenizer_cache: Path
    file_name: str

    @property
    def where(self) -> str:
        return f"{self.file_name} ({self.family.title}, configs {self.configs.name})"


def load_single_file(path: Path, sidecar: dict, dtype: torch.dtype, tokenizer_cache: Path):
    """Build the family's pipeline from one checkpoint; returns (pipeline, family)."""
    path = Path(path)
    state = state_dict_of(load_checkpoint(path))
    family = detect_file_family(state, sidecar, path.name)
    job = Conversion(state, family, config_folder(family, state, sidecar, path.name),
                     base_folder(sidecar.get("base")), dtype, tokenizer_cache, path.name)
    specs = family.single_file["components"]
    _check_sources(specs, job)
    components = {}
    for name, spec in specs.items():
        if spec.get("needs") and not _available(specs[spec["needs"]], spec["needs"], job):
            log.warning("%s: no %s for its %s (not shipped; a base folder of the family has it), so it runs "
                        "without that encoder", job.where, spec["needs"], name)
            components[name] = None
            continue
        components[name] = _component(name, spec, job)
    del state, job.state
    task = "inpaint" if getattr(components.get("unet"), "config", {}).get("in_channels") == 9 else "txt2img"
    pipe = _assemble(family.pipeline_class(task), components)
    _check_complete(pipe, f"{path.name} ({family.title})")
    if sidecar.get("prediction_type"):
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                          prediction_type=sidecar["prediction_type"])
    return pipe, family


def _check_sources(specs: dict, job: Conversion) -> None:
    """Before converting anything: every part the pipeline needs is in the file or the base folder."""
    for name, spec in specs.items():
        if not spec.get("optional") and not _available(spec, name, job):
            _from_base(name, job)   # says which base folder to add


def _holds(spec: dict, state: dict) -> bool:
    return bool(spec.get("keys")) and any(k.startswith(tuple(spec["keys"])) for k in state)


def _base_holds(base: Path | None, name: str) -> bool:
    """The base folder has this component's weights or tokenizer files (a config-only folder has not)."""
    folder = base / name if base is not None else None
    return folder is not None and folder.is_dir() and any(
        p.name not in ("config.json", "scheduler_config.json") for p in folder.iterdir())


def _available(spec: dict, name: str, job: Conversion) -> bool:
    return spec["kind"] not in ("base", "model", "clip", "t5") or _holds(spec, job.state) or _base_holds(job.base, name)


def _component(name: str, spec: dict, job: Conversion):
    kind = spec["kind"]
    if kind in ("model", "clip", "t5") and not _holds(spec, job.state) or kind == "base":
        if spec.get("optional") and not _base_holds(job.base, name):
            return None
        return _from_base(name, job)
    if kind == "clip_tokenizer":
        return _tokenizer(name, spec, job.configs, job.tokenizer_cache)
    if kind == "scheduler":
        return _scheduler(job.configs)
    try:
        return _convert(name, spec, job)
    except (ValueError, KeyError, RuntimeError, IndexError, AttributeError) as exc:
        raise UserError(f"The {name} of {job.where} does not fit its config ({first_line(exc)}): set `family:` or "
                        "`base:` in the model's sidecar .yaml file.") from None


def _convert(name: str, spec: dict, job: Conversion):
    from diffusers.loaders import single_file_utils as sfu

    kind, class_name, configs = spec["kind"], spec["class"], job.configs
    if kind == "model":
        import diffusers

        cls = getattr(diffusers, class_name)
        if class_name == "FluxTransformer2DModel" and bfl.is_bfl_flux(job.state):
            return _flux_from_bfl(cls, job)
        return cls.from_single_file(job.state, config=str(configs), subfolder=name, local_files_only=True,
                                    torch_dtype=job.dtype)
    import transformers

    cls = getattr(transformers, class_name)
    make = sfu.create_diffusers_clip_model_from_ldm if kind == "clip" else sfu.create_diffusers_t5_model_from_checkpoint
    model = make(cls, job.state, subfolder=name, config=str(configs), torch_dtype=job.dtype, local_files_only=True)
    # built from a config, so in training mode: T5's dropout (0.1 in T5-XXL's config) would be live
    return model.eval()


def _flux_from_bfl(cls, job: Conversion):
    """A transformer in BFL's layout, converted by its own shapes; the base's config supplies what the
    tensors cannot say (the rotary axes, the patch size)."""
    from accelerate import init_empty_weights

    weights, dims = bfl.to_diffusers(job.state)
    config_path = job.configs / "transformer" / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config.update(dims)
    rope = config.get("axes_dims_rope", [16, 56, 56])
    if sum(rope) != dims["attention_head_dim"]:
        raise UserError(f"{job.where}: its heads are {dims['attention_head_dim']} wide but the base's rotary axes "
                        f"{rope} add up to {sum(rope)}: use a base folder of the same Flux model.")
    with init_empty_weights():
        model = cls.from_config(config)
    model.load_state_dict(weights, strict=True, assign=True)
    return model.to(job.dtype).eval()


def _tokenizer(name: str, spec: dict, configs: Path, tokenizer_cache: Path):
    from transformers import CLIPTokenizer

    shipped = configs / name
    if (shipped / "vocab.json").is_file():
        return CLIPTokenizer.from_pretrained(str(shipped), local_files_only=True)
    return load_clip_tokenizer(tokenizer_cache, pad_token=spec.get("pad", "<|endoftext|>"))


def _scheduler(configs: Path):
    import diffusers

    data = json.loads((configs / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    cls = getattr(diffusers, data.get("_class_name", "PNDMScheduler"))
    return cls.from_config(data)


def _from_base(name: str, job: Conversion):
    """A component the file does not hold, from the base folder's own weights."""
    base, dtype = job.base, job.dtype
    if not _base_holds(base, name):
        raise UserError(f"{job.file_name} holds no {name} ({job.family.title}): it comes from a diffusers folder of "
                        f"that family, so write `base: <folder>` in {job.file_name}.yaml.")
    index = json.loads((base / "model_index.json").read_text(encoding="utf-8"))
    library, class_name = index[name]
    cls = getattr(importlib.import_module(library), class_name)
    kwargs = {"local_files_only": True}
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        kwargs["torch_dtype"] = dtype
    return cls.from_pretrained(str(base), subfolder=name, **kwargs)


def _assemble(cls, components: dict):
    """The pipeline from its components; optional ones (safety checker, image encoder) left empty."""
    parameters = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in components.items() if k in parameters}
    for name, parameter in parameters.items():
        if name not in kwargs and name != "self" and parameter.default is inspect.Parameter.empty:
            kwargs[name] = None
    if "requires_safety_checker" in parameters:
        kwargs["requires_safety_checker"] = False
    return cls(**kwargs)


def _check_complete(pipe, where: str) -> None:
    """Weights the file lacked stay on the meta device: name them rather than fail mid-run."""
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        missing = [n for n, p in module.named_parameters() if p.device.type == "meta"]
        if missing:
            raise UserError(f"The {name} of {where} is missing {len(missing)} weights (e.g. {missing[0]}): the file "
                            f"does not fit that config; set `family:` or `base:` in the model's sidecar .yaml file. "
                            f"Families: {known_families()}.")
