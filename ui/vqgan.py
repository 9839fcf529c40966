"""Sidebar for VQGAN+CLIP runs."""

from __future__ import annotations

import streamlit as st

from logic.models.catalog import vqgan_choices

TITLE = "VQGAN+CLIP"


def sidebar(defaults: dict) -> dict | None:
    """All settings in one form (the script reruns once per submit); returns params on Run."""
    choices = vqgan_choices()
    preferred = defaults.get("vqgan")
    with st.sidebar.form("vqgan_form"):
        model = st.selectbox("Model", choices, index=choices.index(preferred) if preferred in choices else 0,
                             format_func=lambda n: "demo (random weights, for trying things out)" if n == "demo" else n,
                             key="vqgan_model")
        prompt = st.text_area("Prompt", defaults.get("prompt", ""), key="vqgan_prompt",
                              help='"text:weight:stop | text:weight"; negative weights push away')
        col1, col2 = st.columns(2)
        width = col1.number_input("Width", 16, 4096, int(defaults["size"][0]), 16, key="vqgan_width")
        height = col2.number_input("Height", 16, 4096, int(defaults["size"][1]), 16, key="vqgan_height")
        steps = st.number_input("Steps (-1 = until stopped)", -1, 100_000, int(defaults["steps"]), key="vqgan_steps")
        seed = st.text_input("Seed (empty = random)", "" if defaults.get("seed") is None else str(defaults["seed"]),
                             key="vqgan_seed")
        with st.expander("Optimisation"):
            lr = st.number_input("Learning rate", 0.001, 10.0, float(defaults["lr"]), 0.01, format="%.3f", key="vqgan_lr")
            cutn = st.number_input("Cutouts", 1, 256, int(defaults["cutn"]), key="vqgan_cutn")
            cut_pow = st.number_input("Cut power", 0.1, 10.0, float(defaults["cut_pow"]), 0.1, key="vqgan_cut_pow")
            every = st.number_input("Video frame every N steps", 1, 1000, int(defaults["every"]), key="vqgan_every")
        device = st.text_input("Device", "auto", key="vqgan_device", help="auto, cpu, cuda or cuda:N")
        submitted = st.form_submit_button("Run", type="primary", use_container_width=True)
    if not submitted:
        return None
    return {"prompt": prompt, "vqgan": model, "size": [int(width), int(height)], "steps": int(steps),
            "seed": parse_seed(seed), "lr": float(lr), "cutn": int(cutn), "cut_pow": float(cut_pow),
            "every": int(every), "demo": model == "demo", "device": device}


def parse_seed(text: str) -> int | str | None:
    """An int, None for empty; other text is passed on so the engine names the mistake."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text
