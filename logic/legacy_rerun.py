"""A VQGAN+CLIP request from a folder of the original vqgan-clip-app, for ``python -m logic rerun``.

Its details.json records the prompt, size, steps, seed, VQGAN and loss weights; what it did not
record was fixed in its code in every version (github.com/tnwei/vqgan-clip-app, logic.py): CLIP
ViT-B/32, Adam with step size 0.05, 64 cutouts with cut_pow 1, the notebook's augmentations only
when ``use_cutout_augmentations`` is recorded. Atelier's VQGAN+CLIP follows its losses (docs/vqgan.md),
so the same settings make a like image, not the same pixels (the random streams differ). Between
2021-10-16 and 2021-10-24 it applied a TV loss without recording its weight: those runs are made
again without one.

Runs it cannot be made from are refused with the reason: no VQGAN recorded (before 2021-09-05), a
continued run (its parent's latent was not kept), scrolling/zooming (its transforms have no exact
counterpart here), or an input image it said it used but did not keep.
"""

from __future__ import annotations

from pathlib import Path

from .runs import RunRecord

FIXED = {"clip": "ViT-B-32:openai", "lr": 0.05, "optimiser": "Adam", "cutn": 64, "cut_pow": 1.0,
         "cut_method": "random"}
MAX_SEED = 2**32 - 1  # larger seeds (torch.seed() gave 64-bit ones) are left to chance
TRANSFORM_KEYS = ("translation_x", "translation_y", "rotation_angle", "zoom_factor", "transform_interval")


def refusal(record: RunRecord) -> str | None:
    """Why this original-app VQGAN run cannot be made again here (a sentence), or None."""
    raw, name = record.params, record.name
    if not isinstance(raw.get("vqgan_ckpt"), str) or not raw["vqgan_ckpt"]:
        return f"{name} was made by an early vqgan-clip-app, which did not record its VQGAN model."
    if raw.get("continue_prev_run") is True:
        return (f"{name} continued a previous run of the original vqgan-clip-app, whose latent was not "
                "kept, so it cannot be made again.")
    if any(key in raw for key in TRANSFORM_KEYS):
        return f"{name} used the vqgan-clip-app's scrolling and zooming, which has no exact counterpart here."
    if not record.prompt.strip():
        return f"{name} has no text prompt to make it again from."
    if raw.get("init_image") is True and _init_image(record) is None:
        return f"{name} started from an image that the vqgan-clip-app of its day did not keep."
    if raw.get("image_prompts") is True and not _image_prompts(record):
        return f"{name} used image prompts that the vqgan-clip-app of its day did not keep."
    if not _size(raw):
        return f"{name} did not record its size (Xdim, ydim)."
    return None


def request(record: RunRecord) -> dict:
    """The VQGAN+CLIP request that makes the run again (``refusal`` must be None)."""
    raw = record.params
    params = {"prompt": record.prompt, "vqgan": raw["vqgan_ckpt"], "size": _size(raw),
              "steps": _steps(raw), **FIXED, "augment": raw.get("use_cutout_augmentations") is True}
    if isinstance(record.seed, int) and 0 <= record.seed <= MAX_SEED:
        params["seed"] = record.seed
    for theirs, ours in (("mse_weight", "mse_weight"), ("mse_weight_decay", "mse_decay"),
                         ("mse_weight_decay_steps", "mse_decay_every"), ("tv_loss_weight", "tv_weight")):
        if _number(raw.get(theirs)):
            params[ours] = raw[theirs]
    if _init_image(record):
        params["init_image"] = str(_init_image(record))
    if _image_prompts(record):
        params["image_prompts"] = [{"path": str(path)} for path in _image_prompts(record)]
    return params


def _size(raw: dict) -> list[int] | None:
    size = [raw.get("Xdim"), raw.get("ydim")]
    return size if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size) else None


def _steps(raw: dict) -> int:
    """The steps it planned; for a run until stopped (-1) or one without a plan, the steps it made."""
    planned, made = raw.get("planned_num_steps"), raw.get("num_steps")
    if _whole(planned) and planned > 0:
        return planned
    return made if _whole(made) and made > 0 else 300


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _init_image(record: RunRecord) -> Path | None:
    return next((record.path / n for n in record.legacy_inputs if n.startswith("init-image")), None)


def _image_prompts(record: RunRecord) -> list[Path]:
    return [record.path / n for n in record.legacy_inputs if n.startswith("image-prompt")]
