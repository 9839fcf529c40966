"""What ``--model`` names: a Hugging Face hub id, a local diffusers folder, or one checkpoint file.

A sidecar ``<model>.yaml`` (or ``<model>.safetensors.yaml``) beside a model may say::

    token: sks person          # the DreamBooth instance token, shown in the UI
    family: sdxl               # force a family (else detected from the file's keys)
    base: sd15                 # a shipped config name, or a diffusers folder (Flux: the base folder)
    prediction_type: epsilon   # or v_prediction (SD 2.x 768 models)
    description: my dog, 2000 steps

A1111's sidecar, the original LDM config (``model: params: parameterization: "v"``), is read too:
its parameterization becomes ``prediction_type``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ...errors import UserError

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
HOW_TO_GET = ("run `bash download-weights.sh --sd` on a connected machine, or put a .safetensors file "
              "in assets/models/")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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
    return _from_ldm_config(data)


def _from_ldm_config(data: dict) -> dict:
    """An A1111-style sidecar is the original LDM config: keep what it says about the prediction type."""
    params = (data.get("model") or {}).get("params") if isinstance(data.get("model"), dict) else None
    if not isinstance(params, dict):
        return data
    settings = {k: v for k, v in data.items() if k != "model"}
    if params.get("parameterization") == "v":
        settings.setdefault("prediction_type", "v_prediction")
    elif "parameterization" in params or "unet_config" in params:
        settings.setdefault("prediction_type", "epsilon")
    return settings


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
        if hub_offline() and not hub_model_cached(name):
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


def hub_offline() -> bool:
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
    return [p.name for p in sorted(models_dir.iterdir())
            if (p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)
            or (p.is_dir() and (p / "model_index.json").is_file())]


def first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n")[0][:200]
