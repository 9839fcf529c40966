"""LoRA files: lookup by name or path with an optional weight, and adapters on the cached model."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import UserError
from ..checkpoints import check_safetensors_header
from .. import hashes, lora_formats
from .sources import first_line

LORA_SUFFIXES = (".safetensors",)


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


def set_loras(models, loras: list[tuple[Path, float]]) -> None:
    """Make ``loras`` the model's LoRAs (diffusers/kohya formats), as named adapters with their weights.

    The cached model outlives a run, so the previous run's LoRAs are unloaded first (the adapters
    are removed, not fused: the base weights are never changed, so a plain run after a LoRA run is
    the same as before it). Every task pipeline shares these modules, so one call serves them all.
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
    # The file's format is checked first (LoHa/LoKr/embedding/no LoRA keys: one sentence); the old
    # diffusers attention-processor format is converted to the PEFT keys diffusers reads (logic/models/lora_formats)
    converted, first_key = lora_formats.prepare_lora(path)
    try:
        if converted is not None:
            pipe.load_lora_weights(converted, adapter_name=adapter_name)
        else:
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter_name)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        pipe.unload_lora_weights()
        raise UserError(f"The LoRA {path.name} does not fit this model ({first_line(exc)}): "
                        "use a LoRA trained for the same base model.") from None
    lora_formats.check_applied(pipe, path, adapter_name, first_key)
