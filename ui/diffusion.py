"""Sidebar for Stable Diffusion runs: the task (txt2img, img2img, inpaint, hires fix), then its settings."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import fields, reuse
from ui import sd_widgets as w

TITLE = "Stable Diffusion"
TASKS = {"txt2img": "Text to image", "img2img": "Image to image", "inpaint": "Inpaint", "hires": "Hires fix"}


def sidebar(defaults: dict) -> dict | None:
    """The task, then all settings as plain widgets (no form: an edit is kept even when the mode is
    switched before Run); returns params for build_spec when Run is pressed."""
    load_settings_from_image()
    task = st.sidebar.radio("Task", list(TASKS), format_func=TASKS.get, key="sd_task", horizontal=True)
    inpaint_image, mask = _inpaint_inputs() if task == "inpaint" else (None, None)
    loaded_init = reuse.loaded_file("sd_init_image") if task == "img2img" else None
    with st.sidebar.container():
        model, loras = w.model_and_loras("sd_", defaults)
        prompt = st.text_area("Prompt", defaults.get("prompt", ""), key="sd_prompt")
        negative = st.text_area("Negative prompt", defaults.get("negative", ""), key="sd_negative", height=68,
                                help="What the image should not show.")
        sampling = w.sampling("sd_", defaults)
        seed = st.text_input("Seed (empty = random; image i of a batch uses seed + i)", "", key="sd_seed",
                             help="The same seed with the same settings makes the same image.")
        col1, col2 = st.columns(2)
        batch_size = col1.number_input("Batch size", 1, 64, int(defaults.get("batch_size", 1)), key="sd_batch_size",
                                       help="Images made at once: faster per image, needs more memory.")
        batch_count = col2.number_input("Batch count", 1, 64, int(defaults.get("batch_count", 1)), key="sd_batch_count",
                                        help="Batches made one after another.")
        upload, strength, task_params = None, float(defaults.get("strength", 0.75)), {}
        if task == "img2img" and not loaded_init:
            upload = st.file_uploader("Init image", type=["png", "jpg", "jpeg", "webp"], key="sd_init_image",
                                      help="The picture to start from.")
        if task in ("img2img", "inpaint"):
            strength = st.slider("Denoising strength (how much is redrawn)", 0.05, 1.0, strength, 0.05,
                                 key="sd_strength",
                                 help="Low keeps the picture and changes details; 1 redraws it completely.")
        if task == "inpaint":
            task_params = _inpaint_options(defaults)
        if task == "hires":
            task_params = _hires_options(defaults)
        preview_every = st.number_input("Preview every N steps (0 = none)", 0, 1000,
                                        int(defaults.get("preview_every", 1)), key="sd_preview_every",
                                        help="A live picture while it runs (and a video frame); 0 is a little faster.")
        extra = {**w.text_extras("sd_", defaults), **w.memory("sd_", defaults)}
        submitted = st.button("Run", type="primary", width="stretch", key="sd_run")
    if not submitted:
        return None
    init_image = inpaint_image if task == "inpaint" else loaded_init or (w.save_upload(upload) if upload else None)
    return {"task": task, "prompt": prompt, "negative": negative, "model": model, "lora": loras, **sampling,
            "seed": w.parse_seed(seed), "batch_size": int(batch_size), "batch_count": int(batch_count),
            "init_image": init_image, "mask": mask, "strength": float(strength), **task_params,
            "preview_every": int(preview_every), "demo": model == "demo", **extra}


def _inpaint_inputs():
    from ui.inpaint_mask import image_and_mask

    return image_and_mask("sd_")


def _inpaint_options(defaults: dict) -> dict:
    col1, col2 = st.columns(2)
    blur = col1.number_input("Mask blur", 0, 64, int(defaults.get("mask_blur", 4)), key="sd_mask_blur",
                             help="Softens the mask's edge (pixels) so the repainted part blends in.")
    padding = col2.number_input("Padding", 0, 256, int(defaults.get("inpaint_padding", 32)), key="sd_inpaint_padding",
                                help="With 'Only masked': pixels of surroundings around the mask's box, for context.")
    only = st.checkbox("Only masked (redraw the mask's box at full size)", bool(defaults.get("inpaint_only_masked")),
                       key="sd_only_masked")
    return {"mask_blur": int(blur), "inpaint_padding": int(padding), "inpaint_only_masked": bool(only)}


def _hires_options(defaults: dict) -> dict:
    from logic.engines import sd_common
    from logic.models.upscalers import list_upscalers

    choices = list_upscalers(sd_common.upscalers_dir())
    col1, col2 = st.columns(2)
    scale = col1.number_input("Upscale by", 1.05, 4.0, float(defaults.get("hires_scale", 2.0)), 0.05, key="sd_hires_scale",
                              help="Hires fix makes the image at the size above, enlarges it by this, then redraws "
                                   "the details at the new size.")
    steps = col2.number_input("Hires steps (0 = same)", 0, 1000, int(defaults.get("hires_steps", 0)), key="sd_hires_steps",
                              help="Steps of the second, larger pass.")
    upscaler = st.selectbox("Upscaler", choices, key="sd_hires_upscaler",
                            help="Lanczos, or an ESRGAN-style model in assets/upscalers/")
    strength = st.slider("Hires denoising strength", 0.05, 1.0, float(defaults.get("hires_strength", 0.5)), 0.05,
                         key="sd_hires_strength",
                         help="How much the second pass redraws: low keeps the first image, high invents detail.")
    return {"hires_scale": float(scale), "hires_steps": int(steps), "hires_upscaler": upscaler,
            "hires_strength": float(strength)}


# The sidebar's keys for each spec field "load settings from an image" can fill in (ui/fields.py has them all).
FORM_KEYS = {name: fields.FIELDS["diffusion"][name][0]
             for name in ("prompt", "negative", "steps", "cfg", "scheduler", "strength", "clip_skip", "vae")}


def load_settings_from_image() -> None:
    """Drop a PNG (Atelier, A1111, Forge, Civitai): the sidebar below fills in; what was not used is listed.

    Drawn above the settings, so an upload reruns the script and the values are in place before those
    widgets are drawn; each upload is applied once, so later edits are kept.
    """
    from logic.a1111.from_image import settings_from_image
    from logic.errors import UserError

    with st.sidebar.expander("Load settings from an image"):
        upload = st.file_uploader("Image with generation parameters", type=["png", "jpg", "jpeg", "webp"],
                                  key="sd_from_image")
        if upload is None:
            return
        if st.session_state.get("sd_loaded_from") != upload.file_id:
            try:
                image = settings_from_image(upload.getvalue())
            except UserError as exc:
                st.error(str(exc))
                return
            fill_sidebar(image.params)
            st.session_state.sd_loaded_from = upload.file_id
            st.session_state.sd_loaded_report = {"unknown": image.unknown, "notes": image.notes}
        report = st.session_state.get("sd_loaded_report") or {}
        st.caption(f"Settings of {upload.name} are in the settings below.")
        for note in report.get("notes", []):
            st.warning(note)
        if report.get("unknown"):
            st.caption("Not used: " + ", ".join(f"{k}: {v}" for k, v in report["unknown"].items()))


def fill_sidebar(params: dict) -> None:
    """Write loaded values into the sidebar widgets' state (only values the widgets can show)."""
    state = st.session_state
    for field, key in FORM_KEYS.items():
        if params.get(field) is not None and field != "vae":
            state[key] = params[field]
    if "size" in params:
        state["sd_width"], state["sd_height"] = (max(64, int(v)) for v in params["size"])
    if params.get("seed") is not None:
        state["sd_seed"] = str(params["seed"])
    if params.get("model") in w.model_choices(""):
        state["sd_model"] = params["model"]
    if params.get("vae"):
        from logic.a1111.extras import find_vae

        found = find_vae(params["vae"])
        state["sd_vae"] = found.name if found else state.get("sd_vae")
    installed = {Path(name).stem: name for name in w.sd.list_loras(w.sd_common.loras_dir())}
    chosen = {}
    for item in params.get("lora") or []:
        name, _, weight = item.rpartition(":")
        if Path(name).stem in installed:
            chosen[installed[Path(name).stem]] = float(weight)
    if chosen:
        state["sd_loras"] = list(chosen)
        for name, weight in chosen.items():
            state[f"sd_lora_w_{name}"] = weight
