"""Model families as data: one YAML file per family in ``families/``, scanned into a registry.

A family says which diffusers pipeline serves each task, the latent layout (channels, packing, the
latent -> RGB preview factors), size rules and the default size, what guidance it takes (negative
prompt, CFG or an embedded guidance input), its dtype and VRAM needs, which prompt-encoding
function it uses, how to recognise it (a folder's ``model_index.json`` or a checkpoint's keys) and
how to build it from one original-layout file. Adding a family is one YAML file (plus at most one
prompt-encoding function); ``ATELIER_SD_FAMILIES`` may name an extra folder of them.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ...errors import UserError

FAMILIES_DIR = Path(__file__).resolve().parent / "families"
TASKS = ("txt2img", "img2img", "inpaint")


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    pipelines: dict                      # task -> diffusers pipeline class name
    latent_channels: int
    size: dict                           # {multiple, default}
    negative_prompt: bool
    guidance: str                        # cfg | embedded | none
    encoder: str
    dtype: str
    vram_gib: dict
    preview: dict
    detect: dict
    single_file: dict
    order: int = 50
    packed_latents: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def multiple(self) -> int:
        return int(self.size.get("multiple", 8))

    @property
    def default_size(self) -> list[int]:
        return list(self.size.get("default", [512, 512]))

    def pipeline_class(self, task: str):
        import diffusers

        if task not in self.pipelines:
            raise UserError(f"The {self.title} family has no {task} pipeline. It has: {', '.join(self.pipelines)}.")
        return getattr(diffusers, self.pipelines[task])


def _family_dirs() -> list[Path]:
    extra = os.environ.get("ATELIER_SD_FAMILIES")
    return [FAMILIES_DIR] + ([Path(extra)] if extra else [])


@functools.lru_cache(maxsize=4)
def _load_registry(dirs: tuple[str, ...]) -> dict[str, Family]:
    known = {f.name for f in Family.__dataclass_fields__.values()}
    registry = {}
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            fields = {k: v for k, v in data.items() if k in known}
            fields["extra"] = {k: v for k, v in data.items() if k not in known}
            registry[data["name"]] = Family(**fields)
    return dict(sorted(registry.items(), key=lambda item: item[1].order))


def registry() -> dict[str, Family]:
    return _load_registry(tuple(str(d) for d in _family_dirs()))


def known_families() -> str:
    return ", ".join(f"{f.name} ({f.title})" for f in registry().values())


def get_family(name: str) -> Family:
    try:
        return registry()[name]
    except KeyError:
        raise UserError(f"Unknown model family {name!r}. Available: {known_families()}.") from None


# Detection -----------------------------------------------------------------------------------------

def family_of_folder(folder: Path, index: dict | None = None) -> Family:
    """A diffusers folder's family from its ``model_index.json`` pipeline class (and text encoder)."""
    folder = Path(folder)
    index = index if index is not None else json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    class_name = index.get("_class_name", "?")
    act = _text_encoder_act(folder)
    for family in registry().values():
        rule = family.detect
        if class_name not in rule.get("pipeline_classes", []):
            continue
        if rule.get("text_encoder_act") and act is not None and act != rule["text_encoder_act"]:
            continue
        return family
    raise UserError(f"The model folder {folder.name} holds a {class_name}, which Atelier does not run. "
                    f"Supported families: {known_families()}.")


def _text_encoder_act(folder: Path) -> str | None:
    config = folder / "text_encoder" / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    return data.get("hidden_act") or data.get("text_config", {}).get("hidden_act") or "quick_gelu"


def family_of_keys(keys, name: str) -> Family:
    """A single file's family from its tensor names (the first family, in ``order``, whose keys it has)."""
    keys = list(keys)
    for family in registry().values():
        prefixes = family.detect.get("keys", [])
        if any(k.startswith(p) for p in prefixes for k in keys):
            return family
    raise UserError(f"The file {name} is not a model Atelier can run (found {_what_it_holds(keys)}). "
                    f"Supported families: {known_families()}; LoRAs go in assets/loras/.")


def _what_it_holds(keys: list[str]) -> str:
    """A few words on an unknown file: helps tell a LoRA, a VAE or another architecture apart."""
    if any("lora" in k for k in keys[:200]):
        return "LoRA weights"
    if keys and all(k.startswith(("encoder.", "decoder.", "quant_conv", "post_quant_conv")) for k in keys):
        return "a VAE on its own"
    tops = sorted({k.split(".")[0] for k in keys})[:4]
    return f"{len(keys)} tensors under {', '.join(tops) or 'nothing'}"
