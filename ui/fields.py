"""Which sidebar widget shows which request parameter: one table per mode, the only place that says so.

Each table maps a request parameter (as in details.json's ``request``) to its widget key and a
converter from the parameter's value to what the widget holds (a seed is text, a prompt list is
lines, ...). Loading a run, "Reuse this seed" and the kept settings all go through these tables.
Uploads are not here: a file uploader cannot be set from code; files come back as loaded files
(``ui.reuse``), listed in ``FILES``.
"""

from __future__ import annotations


def text(value) -> str:
    return "" if value is None else str(value)


def seed(value) -> str:
    return "" if value is None or isinstance(value, bool) else str(value)


def comma_list(value) -> str:
    """Noise prompts: ["42:0.5"] or [{"seed": 42, "weight": 0.5}] -> "42:0.5"."""
    items = [f"{v['seed']}:{v.get('weight', 1)}" if isinstance(v, dict) else str(v) for v in value or []]
    return ", ".join(items)


def lines(value) -> str:
    return "\n".join(str(v) for v in value or [])


def spaced(value) -> str:
    return " ".join(str(v) for v in value or []) if isinstance(value, list) else seed(value)


def vae(value) -> str:
    return value or OWN_VAE


OWN_VAE = "(the model's own)"  # the VAE selectbox's first choice (ui/sd_widgets.text_extras)
SIZE = "size"  # maps to a (width key, height key) pair


def _sd_common(prefix: str) -> dict:
    """The fields both Stable Diffusion sidebars draw (ui/sd_widgets.py), under their prefix."""
    return {
        "model": (f"{prefix}model", str), "steps": (f"{prefix}steps", int), "cfg": (f"{prefix}cfg", float),
        "scheduler": (f"{prefix}scheduler", str), SIZE: ((f"{prefix}width", f"{prefix}height"), int),
        "negative": (f"{prefix}negative", text), "clip_skip": (f"{prefix}clip_skip", int),
        "vae": (f"{prefix}vae", vae), "precision": (f"{prefix}precision", str),
        "memory": (f"{prefix}memory", str), "safety": (f"{prefix}safety", bool),
    }


FIELDS: dict[str, dict] = {
    "vqgan": {
        "vqgan": ("vqgan_model", str), "prompt": ("vqgan_prompt", text), "story_every": ("vqgan_story_every", int),
        SIZE: (("vqgan_width", "vqgan_height"), int), "steps": ("vqgan_steps", int), "seed": ("vqgan_seed", seed),
        "noise_prompts": ("vqgan_noise_prompts", comma_list), "init_noise": ("vqgan_init_noise", str),
        "optimiser": ("vqgan_optimiser", str), "lr": ("vqgan_lr", float), "tv_weight": ("vqgan_tv_weight", float),
        "mse_weight": ("vqgan_mse_weight", float), "mse_decay": ("vqgan_mse_decay", float),
        "mse_decay_every": ("vqgan_mse_decay_every", int), "precision": ("vqgan_precision", str),
        "cut_method": ("vqgan_cut_method", str), "cutn": ("vqgan_cutn", int), "cut_pow": ("vqgan_cut_pow", float),
        "augment": ("vqgan_augment", bool), "augments": ("vqgan_augments", list),
        "animate_every": ("vqgan_animate_every", int), "zoom": ("vqgan_zoom", float),
        "rotate": ("vqgan_rotate", float), "translate_x": ("vqgan_translate_x", float),
        "translate_y": ("vqgan_translate_y", float), "every": ("vqgan_every", int), "fps": ("vqgan_fps", float),
        "gif": ("vqgan_gif", bool), "match_artist": ("vqgan_match_artist", bool),
    },
    "diffusion": {
        **_sd_common("sd_"), "task": ("sd_task", str), "prompt": ("sd_prompt", text), "seed": ("sd_seed", seed),
        "batch_size": ("sd_batch_size", int), "batch_count": ("sd_batch_count", int),
        "strength": ("sd_strength", float), "mask_blur": ("sd_mask_blur", int),
        "inpaint_padding": ("sd_inpaint_padding", int), "inpaint_only_masked": ("sd_only_masked", bool),
        "hires_scale": ("sd_hires_scale", float), "hires_steps": ("sd_hires_steps", int),
        "hires_upscaler": ("sd_hires_upscaler", str), "hires_strength": ("sd_hires_strength", float),
        "preview_every": ("sd_preview_every", int), "match_artist": ("diffusion_match_artist", bool),
    },
    "walk": {
        **_sd_common("walk_"), "prompts": ("walk_prompts", lines), "seeds": ("walk_seeds", spaced),
        "frames": ("walk_frames", int), "fps": ("walk_fps", int), "easing": ("walk_easing", str),
        "gif": ("walk_gif", bool), "match_artist": ("walk_match_artist", bool),
    },
    "upscale": {"scale": ("up_scale", float), "upscaler": ("up_upscaler", str)},
}

# Widgets with no request parameter of their own, kept with their mode all the same.
WIDGET_ONLY = {"vqgan": ["vqgan_image_prompt_weights", "vqgan_device"], "diffusion": ["sd_device", "sd_loras"],
               "walk": ["walk_device", "walk_loras"], "upscale": ["up_run"]}
# Keys made per choice (one LoRA weight slider per chosen LoRA).
WIDGET_PREFIXES = {"diffusion": ["sd_lora_w_"], "walk": ["walk_lora_w_"]}
# Request parameters that name files, and the uploader each replaces (shown as a loaded file).
FILES = {"vqgan": {"init_image": "vqgan_init_image", "image_prompts": "vqgan_image_prompts"},
         "diffusion": {"init_image": "sd_init_image", "mask": "sd_mask_upload"},
         "upscale": {"image": "up_image"}}
LORA_KEYS = {"diffusion": "sd_", "walk": "walk_"}


def widget_values(mode: str, request: dict) -> dict:
    """Widget key -> value for the parameters of ``request`` this mode's sidebar shows."""
    values = {}
    for param, (key, convert) in FIELDS[mode].items():
        if param not in request:
            continue
        value = request[param]
        if param == SIZE:
            if isinstance(value, (list, tuple)) and len(value) == 2:
                values.update(zip(key, (int(v) for v in value)))
            continue
        try:
            values[key] = convert(value) if value is not None or convert in (text, seed) else None
        except (TypeError, ValueError):
            continue  # a value this widget cannot show: the widget keeps its own
        if values[key] is None:
            del values[key]
    if mode in LORA_KEYS:
        values.update(lora_values(LORA_KEYS[mode], request.get("lora") or []))
    return values


def lora_values(prefix: str, loras: list) -> dict:
    """["name.safetensors:0.8"] -> the LoRA multiselect and one weight slider per LoRA."""
    chosen = {}
    for item in loras:
        name, _, weight = str(item).rpartition(":")
        try:
            chosen[name or weight] = float(weight) if name else 0.8
        except ValueError:
            continue
    values = {f"{prefix}loras": list(chosen)}
    values.update({f"{prefix}lora_w_{name}": weight for name, weight in chosen.items()})
    return values


def seed_key(mode: str) -> str | None:
    """The widget that holds a single seed (a walk's seeds field takes one seed for all)."""
    table = FIELDS.get(mode, {})
    return (table.get("seed") or table.get("seeds") or (None,))[0]


def file_keys(mode: str, request: dict) -> dict:
    """Request parameter -> the uploader a loaded file stands in for (an inpaint's image has its own)."""
    keys = dict(FILES.get(mode, {}))
    if mode == "diffusion" and request.get("task") == "inpaint":
        keys["init_image"] = "sd_inpaint_image"
    return keys


def mode_keys(mode: str, keys) -> list[str]:
    """Those of ``keys`` that are widgets of ``mode``'s sidebar."""
    own = set(WIDGET_ONLY.get(mode, []))
    for key, _ in FIELDS[mode].values():
        own.update(key if isinstance(key, tuple) else [key])
    prefixes = tuple(WIDGET_PREFIXES.get(mode, []))
    return [k for k in keys if isinstance(k, str) and (k in own or (prefixes and k.startswith(prefixes)))]


_TYPES = {int: int, float: (int, float), bool: bool, list: list}


def valid(key: str, value) -> bool:
    """Whether a kept value (from the settings file, which anyone may edit) fits its widget."""
    for mode, table in FIELDS.items():
        for param, (keys, convert) in table.items():
            if key == keys or (isinstance(keys, tuple) and key in keys):
                kind = _TYPES.get(convert, str)
                if kind is int and isinstance(value, bool):
                    return False
                if convert is list:
                    return isinstance(value, list) and all(isinstance(v, str) for v in value)
                return isinstance(value, kind) and (not isinstance(value, float) or value == value)
    if key.endswith("_loras"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if "_lora_w_" in key:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)
