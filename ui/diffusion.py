"""Sidebar for Stable Diffusion runs (txt2img, img2img, batches, custom checkpoints, LoRAs)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from logic import runs
from ui import sd_widgets as w

TITLE = "Stable Diffusion"


def sidebar(defaults: dict) -> dict | None:
    """All settings in one form; returns params for build_spec when Run is pressed."""
    with st.sidebar.form("sd_form"):
        model, loras = w.model_and_loras("sd_", defaults)
        prompt = st.text_area("Prompt", defaults.get("prompt", ""), key="sd_prompt")
        negative = st.text_area("Negative prompt", defaults.get("negative", ""), key="sd_negative", height=68)
        sampling = w.sampling("sd_", defaults)
        seed = st.text_input("Seed (empty = random; image i of a batch uses seed + i)", "", key="sd_seed")
        col1, col2 = st.columns(2)
        batch_size = col1.number_input("Batch size", 1, 64, int(defaults.get("batch_size", 1)), key="sd_batch_size")
        batch_count = col2.number_input("Batch count", 1, 64, int(defaults.get("batch_count", 1)), key="sd_batch_count")
        with st.expander("Image to image"):
            upload = st.file_uploader("Init image", type=["png", "jpg", "jpeg", "webp"], key="sd_init_image")
            strength = st.slider("Strength (how much is redrawn)", 0.05, 1.0, float(defaults.get("strength", 0.75)),
                                 0.05, key="sd_strength")
        preview_every = st.number_input("Preview every N steps (0 = none)", 0, 1000,
                                        int(defaults.get("preview_every", 1)), key="sd_preview_every")
        extra = w.memory("sd_", defaults)
        submitted = st.form_submit_button("Run", type="primary", width="stretch")
    if not submitted:
        return None
    return {"prompt": prompt, "negative": negative, "model": model, "lora": loras, **sampling,
            "seed": w.parse_seed(seed), "batch_size": int(batch_size), "batch_count": int(batch_count),
            "init_image": w.save_upload(upload) if upload is not None else None, "strength": float(strength),
            "preview_every": int(preview_every), "demo": model == "demo", **extra}


def result_actions(run_dir, details: dict) -> dict | None:
    """Show every image of a batch with its seed; a button reruns one image alone with its seed."""
    records = details.get("images") or []
    if details.get("safety"):
        st.warning(details["safety"])
    if len(records) <= 1:
        return None
    columns = st.columns(min(4, len(records)))
    for index, record in enumerate(records):
        path = Path(run_dir) / record["file"]
        if path.is_file():
            column = columns[index % len(columns)]
            column.image(str(path), caption=f"seed {record['seed']}")
            if column.button("Again, alone", key=f"sd_again_{details.get('run_id')}_{index}"):
                params = runs.rerun_request(runs.Run(Path(run_dir), details))
                params.update(seed=record["seed"], batch_size=1, batch_count=1)
                return params
    return None
