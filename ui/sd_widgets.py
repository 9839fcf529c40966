"""Sidebar widgets both Stable Diffusion modes share (model with its DreamBooth token, sampler, memory)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from logic.engines import sd_common
from logic.models import catalog
from logic.models import diffusion as sd
from ui.common import parse_seed, save_upload  # noqa: F401 - the sidebars call w.parse_seed, w.save_upload


def model_choices(default: str) -> list[str]:
    """The default hub model, local files/folders in assets/models/, and the demo."""
    local = sd.list_local_models(sd_common.models_dir())
    return list(dict.fromkeys([default, *local, sd_common.DEMO_MODEL]))


def model_label(name: str) -> str:
    if name == sd_common.DEMO_MODEL:
        return "demo (tiny random model, for trying things out)"
    token = sd_common.model_token(name) if not sd.hub_model_cached(name) else None
    return f"{name} — token: {token}" if token else name


def model_family(model: str):
    """The model's family when it can be told without loading it (None otherwise)."""
    if model == sd_common.DEMO_MODEL:
        return sd.get_family("sd1")
    try:
        return sd.peek_family(sd.resolve_model(model, sd_common.models_dir()))
    except Exception:  # noqa: BLE001 - a caption only: the run itself says what is wrong
        return None


def model_and_loras(prefix: str, defaults: dict) -> tuple[str, list[str]]:
    choices = model_choices(defaults.get("model") or "")
    installed = catalog.installed_sd_models(defaults.get("model") or "")
    preferred = choices.index(installed[0]) if installed else choices.index(sd_common.DEMO_MODEL)
    model = st.selectbox("Model", choices, index=preferred, format_func=model_label, key=f"{prefix}model",
                         help="Hub id, a diffusers folder or a .safetensors/.ckpt in assets/models/. "
                              "A DreamBooth model's token (from its sidecar .yaml) is shown: put it in the prompt.")
    token = sd_common.model_token(model) if model != sd_common.DEMO_MODEL else None
    if token:
        st.caption(f"Trigger token of {model}: **{token}**")
    family = model_family(model)
    if family is not None:
        st.caption(f"Family: {family.title} (default size {family.default_size[0]}x{family.default_size[1]}"
                   f"{'; no negative prompt' if not family.negative_prompt else ''})")
    loras = sd.list_loras(sd_common.loras_dir())
    chosen = st.multiselect("LoRAs", loras, key=f"{prefix}loras",
                            help="Small add-ons that teach the model a style or subject. "
                                 "Or write <lora:NAME:WEIGHT> in the prompt, as in A1111.") if loras else []
    # one weight per LoRA, drawn as soon as it is picked
    weights = {name: st.slider(f"Weight of {Path(name).stem}", -1.0, 2.0, 0.8, 0.05, key=f"{prefix}lora_w_{name}")
               for name in chosen}
    return model, [f"{name}:{weights[name]:g}" for name in chosen]


def text_extras(prefix: str, defaults: dict) -> dict:
    """Clip skip and the VAE override (A1111's names), in their own expander."""
    from logic.a1111.extras import list_vaes

    with st.expander("Clip skip and VAE"):
        clip_skip = st.number_input("Clip skip", 1, 12, int(defaults.get("clip_skip") or 1), key=f"{prefix}clip_skip",
                                    help="2 takes the text encoder's penultimate layer (many anime models want it).")
        own = "(the model's own)"
        vaes = [own, *list_vaes()]
        vae = st.selectbox("VAE", vaes, key=f"{prefix}vae",
                           help="The part that turns the model's result into pixels (colours, fine detail); "
                                "single-file VAEs from assets/vae/.")
    return {"clip_skip": int(clip_skip), "vae": None if vae == own else vae}


def sampling(prefix: str, defaults: dict) -> dict:
    names = list(sd_common.SCHEDULERS)
    col1, col2 = st.columns(2)
    steps = col1.number_input("Steps", 1, 1000, int(defaults["steps"]), key=f"{prefix}steps",
                              help="Denoising steps: more = more detail and slower; 20 to 30 is usual.")
    cfg = col2.number_input("CFG scale", 0.0, 50.0, float(defaults["cfg"]), 0.5, key=f"{prefix}cfg",
                            help="CFG = classifier-free guidance: how strictly the image follows the prompt. "
                                 "5 to 9 is usual; higher looks harsh.")
    scheduler = st.selectbox("Sampler", names, index=names.index(defaults["scheduler"])
                             if defaults.get("scheduler") in names else 0, key=f"{prefix}scheduler",
                             help="The method that turns noise into the picture step by step. DPM++ 2M Karras "
                                  "is a good default; the 'a' (ancestral) ones change more with the step count.")
    col1, col2 = st.columns(2)
    width = col1.number_input("Width", 64, 2048, int(defaults["size"][0]), 8, key=f"{prefix}width",
                              help="In pixels, a multiple of 8; the model's own size (its family, above) looks best.")
    height = col2.number_input("Height", 64, 2048, int(defaults["size"][1]), 8, key=f"{prefix}height")
    return {"steps": int(steps), "cfg": float(cfg), "scheduler": scheduler, "size": [int(width), int(height)]}


def memory(prefix: str, defaults: dict) -> dict:
    with st.expander("Memory and safety"):
        precision = st.selectbox("Precision", list(sd.PRECISIONS), index=list(sd.PRECISIONS).index(
            defaults.get("precision", "auto")), key=f"{prefix}precision",
            help="auto: fp16 on a GPU, fp32 on the CPU")
        mode = st.selectbox("Memory", list(sd.MEMORY_MODES), index=list(sd.MEMORY_MODES).index(
            defaults.get("memory", "auto")), key=f"{prefix}memory",
            help="auto picks from free VRAM and the model family's needs; balanced = attention slicing + VAE "
                 "tiling; low = also model CPU offload; minimal = sequential offload")
        safety = st.checkbox("Safety checker", bool(defaults.get("safety", True)), key=f"{prefix}safety",
                             help="Flagged images are replaced by a placeholder and a sentence says why.")
        device = st.text_input("Device", "auto", key=f"{prefix}device", help="auto, cpu, cuda or cuda:N")
    return {"precision": precision, "memory": mode, "safety": bool(safety), "device": device}
