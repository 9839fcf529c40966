"""What a LoRA file is, before diffusers is asked to load it.

Loaded: diffusers/PEFT (``unet.….lora_A.weight``), kohya/A1111 (``lora_unet_…``, ``lora_te_…``,
``lora_te1_``/``lora_te2_`` for SDXL, with ``.alpha``; diffusers converts them), and the old diffusers
attention-processor format (``….processor.to_q_lora.down.weight``, written by train_dreambooth_lora
in diffusers <= 0.20), converted here to PEFT keys (it has no alpha: scale 1, as it was trained).

Named in one sentence instead: LyCORIS LoHa (``hada_w1_a``) and LoKr (``lokr_w1``) files, a
textual-inversion embedding given as a LoRA, and a file whose keys name no layer of the model.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError

SUPPORTED = ("supported are LoRA files in the diffusers/PEFT, kohya/A1111 (lora_unet_/lora_te_) and old "
             "diffusers attention-processor formats")
_OLD_PROCESSOR = re.compile(r"^(?:(unet|text_encoder)\.)?(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")


def read_tensors(path: Path) -> dict:
    from .checkpoints import load_checkpoint

    path = Path(path)
    try:
        return dict(load_checkpoint(path))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one sentence
        raise UserError(f"The LoRA {path.name} could not be read ({str(exc).splitlines()[0][:120]}).") from None


def prepare_lora(path: Path) -> tuple[dict | None, str]:
    """(converted tensors, or None when diffusers reads the file as it is; the file's first key).

    Read as it is, diffusers also sees the file's metadata (PEFT's alpha and rank), so only the old
    format, which has none, is handed over converted. Unusable files are one sentence.
    """
    path = Path(path)
    state = read_tensors(path)
    first_key = next(iter(state), "none")
    kind = classify(state)
    if kind == "loha":
        raise UserError(f"{path.name} is a LyCORIS LoHa file, which Atelier cannot load: {SUPPORTED}.")
    if kind == "lokr":
        raise UserError(f"{path.name} is a LyCORIS LoKr file, which Atelier cannot load: {SUPPORTED}.")
    if kind == "embedding":
        raise UserError(f"{path.name} is a textual-inversion embedding, not a LoRA: put it in assets/embeddings/ "
                        f"and write {path.stem} in the prompt.")
    if kind == "unknown":
        raise UserError(f"{path.name} holds no LoRA weights Atelier recognises (first key: {first_key}): {SUPPORTED}.")
    return (convert_old_processor_format(state) if kind == "old-diffusers" else None), first_key


def classify(state: dict) -> str:
    keys = list(state)
    if any("hada_w1_a" in k or "hada_w2_a" in k for k in keys):
        return "loha"
    if any("lokr_w1" in k or "lokr_w2" in k for k in keys):
        return "lokr"
    if any(_OLD_PROCESSOR.match(k) for k in keys):
        return "old-diffusers"
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k or ".lora.down." in k or ".lora_linear_layer." in k for k in keys):
        return "diffusers"
    from .embeddings import looks_like_embedding

    if looks_like_embedding(state):
        return "embedding"
    return "unknown"


def convert_old_processor_format(state: dict) -> dict:
    """``X.processor.to_q_lora.down.weight`` -> ``unet.X.to_q.lora_A.weight`` (up -> lora_B; to_out -> to_out.0)."""
    converted = {}
    for key, value in state.items():
        match = _OLD_PROCESSOR.match(key)
        if not match:
            continue
        component, module, projection, direction = match.groups()
        projection = "to_out.0" if projection == "to_out" else projection
        side = "lora_A" if direction == "down" else "lora_B"
        converted[f"{component or 'unet'}.{module}.{projection}.{side}.weight"] = value
    return converted


def check_applied(pipe, path: Path, adapter_name: str, example: str) -> None:
    """A LoRA whose keys matched no layer loads as nothing in diffusers (a warning at most): say so."""
    try:
        adapters = {name for names in pipe.get_list_adapters().values() for name in names}
    except Exception:  # noqa: BLE001 - an older pipeline without the listing: nothing to check
        return
    if adapter_name not in adapters:
        pipe.unload_lora_weights()
        raise UserError(f"The LoRA {Path(path).name} names no layer of this model (e.g. {example}): it was made "
                        f"for another kind of model, or {SUPPORTED}.")
